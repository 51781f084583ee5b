"""Bridges run apart: `conclave serve --roles xmpp,focus` and two
`conclave bridge` processes, which log in as XEP-0114 components, publish
their stats in the brewery room and take colibri2 from the focus. aiortc
participants really send and receive media through them."""

import asyncio
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from clients import IqError, login, run
from harness import _die_with_parent, conclave_bin, free_ports, unique
from meeting import Participant
from test_meetings import until

pytestmark = pytest.mark.conclave_only

NS_COLIBRI = "http://jitsi.org/protocol/colibri"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


class BridgeProcess:
    """One `conclave bridge`, logged in as the component `domain`."""

    def __init__(self, server, domain, secret, capacity_pps):
        self.server = server
        self.domain = domain
        self.http_port, self.udp_port = free_ports(2)
        self.log = server.tmp / f"{domain}.log"
        env = server.env()
        env.update(
            {
                "CONCLAVE_BRIDGE__DOMAIN": domain,
                "CONCLAVE_BRIDGE__SECRET": secret,
                "CONCLAVE_BRIDGE__SERVER": f"127.0.0.1:{server.component_port}",
                "CONCLAVE_BRIDGE__HTTP_PORT": str(self.http_port),
                "CONCLAVE_BRIDGE__STATS_INTERVAL_SECS": "1",
                "CONCLAVE_MEETINGS__UDP_PORT": str(self.udp_port),
                "CONCLAVE_MEETINGS__CAPACITY_PACKETS_PER_SECOND": str(capacity_pps),
            }
        )
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(conclave_bin()), "bridge", "--focus", f"focus.{server.domain}"],
            cwd=server.tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=_die_with_parent,
        )

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as r:
            return r.status, r.read().decode()

    def metric(self, name):
        _, body = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def log_text(self):
        return self.log.read_text(errors="replace")


class Deployment:
    """The split: a focus-only server and two bridges, and an observer in
    the brewery room that records each bridge's latest stats."""

    def __init__(self, server_factory, overrides=None):
        secrets = {"jvb1.localhost": "s3cret-one", "jvb2.localhost": "s3cret-two"}
        self.server = server_factory(start=False, name="focus", components=secrets)
        self.server.overrides.update(overrides or {})
        self.server.serve_args = ["--roles", "xmpp,focus"]
        self.server.start()
        self.bridges = {d: BridgeProcess(self.server, d, s, 3000) for d, s in secrets.items()}
        self.brewery = f"jvbbrewery@conference.{self.server.domain}"
        self.stats = {}  # component domain -> {name: value}, None once gone

    def by_port(self, port):
        return next(b for b in self.bridges.values() if b.udp_port == port)

    async def observe(self):
        self.observer = await login(self.server, self.server.guest_domain, "")

        def on_presence(p):
            if p["from"].bare != self.brewery:
                return
            item = p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
            jid = item.get("jid") if item is not None else None
            if jid not in self.bridges:
                return
            if p["type"] == "unavailable":
                self.stats[jid] = None
                return
            s = p.xml.find(f"{{{NS_COLIBRI}}}stats")
            if s is not None:
                self.stats[jid] = {x.get("name"): x.get("value") for x in s}

        self.observer.add_event_handler("presence", on_presence)
        self.observer.send_raw(f"<presence to='{self.brewery}/{unique('observer')}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")

    def stress(self, domain):
        return float((self.stats.get(domain) or {}).get("stress_level", "0"))

    def close(self):
        for b in self.bridges.values():
            b.stop()
        if os.environ.get("E2E_KEEP_TMP") == "1":
            print("bridge logs in", self.server.tmp)


@pytest.fixture
def deployment(server_factory):
    d = Deployment(server_factory)
    yield d
    d.close()


def hears_and_sees(p, other, since):
    """Whether `p` got audio with energy and video frames from `other`
    since `since`."""
    got = p.received(since)
    audio = any(p.owner_of(m) == other.nick and v[0] == "audio" and v[1] > 0 and v[3] > 100 for m, v in got.items())
    video = any(p.owner_of(m) == other.nick and v[0] == "video" and v[1] > 0 and v[2] > 0 for m, v in got.items())
    return audio and video


async def pair(server, r):
    a = await Participant(server, r).join()
    await asyncio.wait_for(a.accepted.wait(), 15)
    b = await Participant(server, r).join()
    await asyncio.wait_for(b.accepted.wait(), 15)
    return a, b


async def both_ways(a, b, since, timeout=20):
    assert await until(lambda: hears_and_sees(a, b, since) and hears_and_sees(b, a, since), timeout), (
        a.received(since),
        b.received(since),
    )


async def call(d, prefix):
    """The observer in the brewery, both bridges seen there, and a call of
    two whose media flows."""
    await d.observe()
    assert await until(lambda: all(d.stats.get(b) for b in d.bridges)), d.stats
    a1, a2 = await pair(d.server, f"{unique(prefix)}@conference.{d.server.domain}")
    await both_ways(a1, a2, 0)
    return a1, a2


def test_conferences_go_to_the_least_stressed_bridge_and_media_flows_through_it(deployment):
    """Both bridges appear in the brewery with their stats; conference A
    lands on one, its two participants hear and see each other through it
    (whose /metrics shows the load), and once that bridge reports the
    stress, conference B lands on the other."""
    d = deployment
    srv = d.server

    async def scenario():
        await d.observe()
        assert await until(lambda: all(d.stats.get(b) for b in d.bridges)), d.stats
        for s in d.stats.values():
            assert s["drain"] == "false" and s["version"] and float(s["stress_level"]) == 0.0
        # only the focus drives a bridge; anyone else's colibri2 is refused
        with pytest.raises(IqError) as e:
            await d.observer.iq(
                "set",
                "<conference-modify xmlns='jitsi:colibri2' meeting-id='x' name='r@conference.localhost' create='true'>"
                "<endpoint id='e' create='true'/></conference-modify>",
                to="jvb1.localhost",
            )
        assert e.value.iq["error"]["condition"] == "forbidden"
        a1, a2 = await pair(srv, f"{unique('a')}@conference.{srv.domain}")
        try:
            first = d.by_port(a1.bridge_port())
            assert a2.bridge_port() == first.udp_port
            other = next(b for b in d.bridges.values() if b is not first)
            await both_ways(a1, a2, 0)
            # the bridge that carries it says so, in /metrics and the brewery
            assert first.get("/health")[0] == 200
            assert first.metric("conclave_bridge_endpoints") == 2
            assert first.metric("conclave_bridge_colibri2_conferences") == 1
            for m in (
                "conclave_bridge_stress",
                "conclave_bridge_packet_rate",
                "conclave_bridge_bitrate_bps",
                "conclave_bridge_packets_in_total",
                "conclave_bridge_packets_out_total",
            ):
                assert await until(lambda: first.metric(m) > 0, 10), first.get("/metrics")[1]
            _, body = first.get("/metrics")
            assert 'conclave_bridge_loss_ratio{direction="in"}' in body
            assert other.metric("conclave_bridge_endpoints") == 0
            assert await until(lambda: d.stress(first.domain) > d.stress(other.domain), 10), d.stats
            assert d.stats[first.domain]["participants"] == "2"
            b1 = await Participant(srv, f"{unique('b')}@conference.{srv.domain}").join()
            await asyncio.wait_for(b1.accepted.wait(), 15)
            assert b1.bridge_port() == other.udp_port
            await b1.leave()
        finally:
            await a1.leave()
            await a2.leave()
        d.observer.disconnect()

    run(scenario(), timeout=90)


def test_a_bridge_killed_mid_call_moves_its_conference_to_another(deployment):
    """SIGKILL the bridge of a running call: its component session ends, so
    its brewery presence goes; the focus ends both Jingle sessions and
    invites both participants anew on the other bridge, and media
    resumes there."""
    d = deployment
    async def scenario():
        a1, a2 = await call(d, "k")
        try:
            doomed = d.by_port(a1.bridge_port())
            other = next(b for b in d.bridges.values() if b is not doomed)
            doomed.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            assert await until(lambda: d.stats.get(doomed.domain) is None, 10), d.stats
            assert await until(lambda: a1.pc and a2.pc and a1.accepted.is_set() and a2.accepted.is_set(), 15)
            for p in (a1, a2):
                assert [x[0] for x in p.jingle_log].count("session-terminate") == 1
                assert p.bridge_port() == other.udp_port
            await both_ways(a1, a2, killed)
            assert other.metric("conclave_bridge_endpoints") == 2
        finally:
            await a1.leave()
            await a2.leave()
        d.observer.disconnect()

    run(scenario(), timeout=90)


def test_a_conference_left_without_a_bridge_is_invited_again_when_one_comes(deployment):
    """Both bridges die under a call: the participants' sessions end and
    they wait (the room stays); a bridge that joins the brewery then takes
    the conference, both are invited on it and hear and see each other."""
    d = deployment
    srv = d.server

    async def scenario():
        a1, a2 = await call(d, "w")
        try:
            for b in d.bridges.values():
                b.proc.send_signal(signal.SIGKILL)
            assert await until(lambda: all(d.stats.get(b, 0) is None for b in d.bridges), 10), d.stats
            assert await until(lambda: a1.pc is None and a2.pc is None, 10)
            back = BridgeProcess(srv, "jvb2.localhost", "s3cret-two", 3000)
            d.bridges["jvb2.localhost"].stop()
            d.bridges["jvb2.localhost"] = back
            came = time.monotonic()
            assert await until(lambda: a1.accepted.is_set() and a2.accepted.is_set(), 15)
            assert a1.bridge_port() == a2.bridge_port() == back.udp_port
            await both_ways(a1, a2, came)
        finally:
            await a1.leave()
            await a2.leave()
        d.observer.disconnect()

    run(scenario(), timeout=90)


def test_a_draining_bridge_takes_no_new_conference_and_exits_after_its_last(deployment):
    """SIGUSR1 drains a bridge: its presence says so, a new conference goes
    to the other bridge although the draining one is less loaded, the
    conference it has goes on (and takes a new participant), and the
    bridge exits once that conference ends."""
    d = deployment
    srv = d.server

    async def scenario():
        await d.observe()
        assert await until(lambda: all(d.stats.get(b) for b in d.bridges)), d.stats
        # A: one participant on one bridge; B: two on the other, more load
        a1 = await Participant(srv, ra := f"{unique('a')}@conference.{srv.domain}").join()
        await asyncio.wait_for(a1.accepted.wait(), 15)
        light = d.by_port(a1.bridge_port())
        heavy = next(b for b in d.bridges.values() if b is not light)
        b1, b2 = await pair(srv, f"{unique('b')}@conference.{srv.domain}")
        ps = [a1, b1, b2]
        try:
            assert b1.bridge_port() == heavy.udp_port
            await both_ways(b1, b2, 0)
            assert await until(lambda: d.stress(heavy.domain) > d.stress(light.domain) > 0, 10), d.stats
            light.proc.send_signal(signal.SIGUSR1)
            assert await until(lambda: (d.stats.get(light.domain) or {}).get("drain") == "true", 10), d.stats
            c1 = await Participant(srv, f"{unique('c')}@conference.{srv.domain}").join()
            ps.append(c1)
            await asyncio.wait_for(c1.accepted.wait(), 15)
            assert c1.bridge_port() == heavy.udp_port
            # A goes on where it is
            a2 = await Participant(srv, ra).join()
            ps.append(a2)
            await asyncio.wait_for(a2.accepted.wait(), 15)
            assert a2.bridge_port() == light.udp_port
            await both_ways(a1, a2, 0)
            assert light.proc.poll() is None
            await a1.leave()
            await a2.leave()
            ps.remove(a1)
            ps.remove(a2)
            assert await until(lambda: light.proc.poll() is not None, 15), "the drained bridge did not exit"
            assert light.proc.returncode == 0, light.log_text()[-3000:]
            assert heavy.proc.poll() is None
        finally:
            for p in ps:
                await p.leave()
        d.observer.disconnect()

    run(scenario(), timeout=90)


def test_a_conference_too_big_for_one_bridge_cascades_and_everyone_sees_and_hears_everyone(server_factory):
    """With `meetings.max_participants_per_bridge = 1` the second
    participant goes on the other bridge, which the focus links to the first
    with a relay (colibri2 `<relay>`, ICE/DTLS-SRTP between the bridges):
    the two hear and see each other across it. A third, with both bridges
    full, joins the first; each of the three hears and sees the other two,
    two of them through the relay, and each bridge's /metrics shows one
    relay carrying packets both ways."""
    d = Deployment(server_factory, {"meetings.max_participants_per_bridge": 1})
    srv = d.server

    async def scenario():
        await d.observe()
        assert await until(lambda: all(d.stats.get(b) for b in d.bridges)), d.stats
        room = f"{unique('c')}@conference.{srv.domain}"
        a, b = await pair(srv, room)
        ps = [a, b]
        try:
            assert a.bridge_port() != b.bridge_port()
            await both_ways(a, b, 0)
            for br in d.bridges.values():
                assert br.metric("conclave_bridge_endpoints") == 1
                assert br.metric("conclave_bridge_relays") == 1
            c = await Participant(srv, room).join()
            ps.append(c)
            await asyncio.wait_for(c.accepted.wait(), 15)
            assert c.bridge_port() == a.bridge_port()
            await both_ways(c, a, 0)
            await both_ways(c, b, 0)
            near, far = d.by_port(a.bridge_port()), d.by_port(b.bridge_port())
            assert near.metric("conclave_bridge_endpoints") == 2
            assert far.metric("conclave_bridge_endpoints") == 1
            for br in (near, far):
                for direction in ("in", "out"):
                    name = f'conclave_bridge_relay_packets_total{{direction="{direction}"}}'
                    assert await until(lambda: br.metric(name) > 0, 5), br.get("/metrics")[1]
        finally:
            for p in ps:
                await p.leave()
        d.observer.disconnect()

    try:
        run(scenario(), timeout=60)
    finally:
        d.close()


def test_roles_that_cannot_run_are_refused(server_factory):
    """`serve` always has the XMPP server and an in-process bridge needs
    the focus; a bridge without its component's domain and secret does not
    start."""
    srv = server_factory(start=False)
    for roles, says in [("focus", "must include xmpp"), ("xmpp,bridge", "needs the focus"), ("xmpp,nothing", "invalid value")]:
        r = srv.cli("serve", "--roles", roles, timeout=10)
        assert r.returncode != 0 and says in r.stderr, (roles, r.stderr)
    r = srv.cli("bridge", timeout=10)
    assert r.returncode != 0 and "bridge.secret" in r.stderr, r.stderr
