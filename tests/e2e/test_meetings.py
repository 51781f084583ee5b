"""Meetings: the conference focus and the media bridge, driven as Jitsi
clients drive them (conference request, MUC, Jingle) by aiortc endpoints
that really send and receive media over ICE and DTLS-SRTP."""

import asyncio
import re
import socket
import time
import xml.etree.ElementTree as ET

import pytest
from aiortc.rtp import RtpPacket
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import expect, run
from harness import free_ports, https_get, unique
from meeting import NS_ICE, NS_JINGLE, NS_JITMEET, Channel, Participant, PlainPublisher, Tone

pytestmark = pytest.mark.conclave_only


def room(server):
    return f"{unique('meet')}@conference.{server.domain}"


async def until(pred, timeout=20.0, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def test_two_participants_hear_each_other_and_a_later_source_is_seen(server):
    """Two guests: each hears the other (inbound audio with energy), and the
    first, whose session was up before the second arrived, gets the
    second's video by source-add: frames with a width, still advancing. The
    signalling is Jitsi's whole path: conference request, MUC join, the
    focus's session-initiate, session-accept, source-add."""
    r = room(server)

    async def scenario():
        a = await Participant(server, r).join()
        await asyncio.wait_for(a.accepted.wait(), 15)
        b = await Participant(server, r).join()
        await asyncio.wait_for(b.accepted.wait(), 15)
        try:
            # the focus's real JID is what lib-jitsi-meet trusts
            assert a.conference.get("ready") == "true"
            assert a.conference.get("focusjid") == f"focus.{server.domain}"
            props = {x.get("name"): x.get("value") for x in a.conference}
            assert props["authentication"] == "false"
            # lib-jitsi-meet gives up on live='false' (a conference not live yet)
            assert props.get("live", "true") != "false"
            assert [x[0] for x in a.jingle_log] == ["session-initiate", "source-add"]
            assert all(f == f"{r}/focus" for _, f, _ in a.jingle_log)

            def got(p, owner, kind):
                return any(p.owner_of(m) == owner and v[0] == kind and v[1] > 0 for m, v in p.received().items())

            assert await until(
                lambda: got(a, b.nick, "audio") and got(a, b.nick, "video") and got(b, a.nick, "audio"), 20
            ), (a.received(), b.received())
            t = time.monotonic()
            await asyncio.sleep(1.5)
            ra, rb = a.received(since=t), b.received(since=t)
            video = [v for m, v in ra.items() if v[0] == "video"]
            assert video and video[0][1] > 5 and video[0][2] > 0, ra
            for rec in (ra, rb):
                audio = [v for v in rec.values() if v[0] == "audio"]
                assert audio and audio[0][1] > 10 and audio[0][3] > 100, rec

            # /metrics has the meeting's figures, under an opaque id
            def figures():
                out = {}
                for line in https_get(server.http_port, "/metrics")[1].decode().splitlines():
                    m = re.match(r'(conclave_meeting_\w+)\{conference="(\d+)"(?:,direction="(\w+)")?\} (\S+)', line)
                    if m:
                        out[(m[1], m[3])] = out.get((m[1], m[3]), 0) + float(m[4])
                return out

            assert await until(lambda: figures().get(("conclave_meeting_endpoints", None)) == 2, 10), figures()
            # aiortc sends REMB, not transport-cc: the bridge's estimate of
            # what it can send them comes from that
            assert await until(lambda: figures().get(("conclave_meeting_estimate_bps", None), 0) > 0, 15), figures()
            assert await until(lambda: figures().get(("conclave_meeting_bitrate_bps", "in"), 0) > 10_000, 10), figures()
            f = figures()
            assert f[("conclave_meeting_packet_rate", "in")] > 10 and f[("conclave_meeting_packet_rate", "out")] > 10, f
            assert r.split("@")[0] not in https_get(server.http_port, "/metrics")[1].decode(), "the room is named"
            # and the bridge's own: one conference, its traffic, and its
            # stress (packet rate over meetings.capacity_packets_per_second)
            assert await until(lambda: server.metric("conclave_bridge_conferences") == 1, 10)
            assert server.metric('conclave_bridge_bitrate_bps{direction="in"}') > 10_000
            # (one reading, so that both figures are of the same refresh)
            body = https_get(server.http_port, "/metrics")[1].decode()
            pps = sum(float(x) for x in re.findall(r"^conclave_bridge_packet_rate\{[^}]*\} (\S+)$", body, re.M))
            stress = float(re.search(r"^conclave_bridge_stress (\S+)$", body, re.M)[1])
            assert pps > 20 and stress == pytest.approx(pps / 50_000, rel=0.01), (pps, stress)
        finally:
            await a.leave()
            await b.leave()
        # the meeting's series go with it, and the bridge is idle
        assert await until(lambda: not figures(), 10), figures()
        assert server.metric("conclave_bridge_conferences") == 0 and server.metric("conclave_bridge_stress") == 0

    run(scenario(), timeout=60)


def test_three_participants_each_receive_the_other_two(server):
    """Three guests join one room; each gets an offer from the focus with
    the others' sources (at once, or by source-add), answers it, and then
    receives the other two's audio (with energy) and video (frames with a
    width, still advancing)."""
    r = room(server)

    async def scenario():
        ps = []
        try:
            for _ in range(3):
                ps.append(await Participant(server, r).join())
                await asyncio.wait_for(ps[-1].accepted.wait(), 15)

            def complete():
                for p in ps:
                    got = p.received()
                    owners = {(p.owner_of(m), v[0]) for m, v in got.items() if v[1] > 0}
                    others = {q.nick for q in ps if q is not p}
                    if owners != {(o, k) for o in others for k in ("audio", "video")}:
                        return False
                return True

            assert await until(complete, 30), [
                (p.nick, sorted((p.owner_of(m), v[0], v[1]) for m, v in p.received().items())) for p in ps
            ]
            t = time.monotonic()
            await asyncio.sleep(2)
            for p in ps:
                for mid, (kind, n, width, energy) in p.received(since=t).items():
                    assert n > 0, f"{p.nick}: {kind} from {p.owner_of(mid)} stopped"
                    if kind == "video":
                        assert width > 0
                    else:
                        assert energy > 100, f"{p.nick}: silent audio from {p.owner_of(mid)}"
        finally:
            for p in ps:
                await p.leave()

    run(scenario(), timeout=80)


async def meeting(server, r, n, levels=None):
    """n participants, each joined and its session accepted in turn; each
    sends a tone at its level in `levels` (default 0.3)."""
    ps = []
    for i in range(n):
        p = await Participant(server, r, audio_level=(levels or [0.3] * n)[i]).join()
        await asyncio.wait_for(p.accepted.wait(), 15)
        ps.append(p)
    return ps


def ssrcs_in(el):
    return {int(s.get("ssrc")) for s in el.iter("{urn:xmpp:jingle:apps:rtp:ssma:0}source") if s.get("ssrc")}


def test_a_leaver_is_removed_and_its_media_stops(server):
    """When one of three leaves, the other two get a source-remove naming
    its sources (and only those), and its media stops reaching them."""
    r = room(server)

    async def scenario():
        ps = await meeting(server, r, 3)
        a, b, c = ps
        try:
            assert await until(lambda: all(v[1] > 0 for v in a.received().values()) and len(a.received()) == 4)
            c_ssrcs = set(a.offer.remote) & {s for s, v in a.offer.remote.items() if v["owner"].endswith("/" + c.nick)}
            await c.leave()
            for p in (a, b):
                assert await until(lambda p=p: p.actions("source-remove"), 10), p.jingle_log
                removed = set().union(*(ssrcs_in(x) for x in p.actions("source-remove")))
                owners = {
                    i.get("owner")
                    for x in p.actions("source-remove")
                    for i in x.iter("{http://jitsi.org/jitmeet}ssrc-info")
                }
                assert owners == {f"{r}/{c.nick}"}, owners
                assert removed and all(p.offer.remote.get(s) is None for s in removed)
            assert c_ssrcs <= removed
            await asyncio.sleep(1)
            t = time.monotonic()
            await asyncio.sleep(1.5)
            got = a.received(since=t)
            for mid, v in got.items():
                if a.owner_of(mid) is None:  # c's sections: gone from the model
                    assert v[1] == 0, f"media from the leaver still arrives: {v}"
                else:
                    assert v[1] > 0, f"media from {a.owner_of(mid)} stopped"
        finally:
            for p in (a, b):
                await p.leave()

    run(scenario(), timeout=60)


def test_a_vanished_endpoint_times_out_and_is_removed(server_factory):
    """A participant whose media goes silent without a word (its network
    gone, its XMPP session still up) is removed after
    meetings.endpoint_timeout_secs: the other gets a source-remove and sees
    it kicked from the room."""
    srv = server_factory({"meetings.endpoint_timeout_secs": 2})
    r = room(srv)

    async def scenario():
        a, b = await meeting(srv, r, 2)
        try:
            assert await until(lambda: any(v[1] > 0 for v in a.received().values()))
            # b's UDP sockets close silently: no DTLS close, no RTCP BYE
            ice = b.pc.getTransceivers()[0].receiver.transport.transport
            for proto in ice._connection._protocols:
                proto.transport.close()
            t0 = time.monotonic()
            assert await until(lambda: a.actions("source-remove"), 15), a.jingle_log
            assert time.monotonic() - t0 >= 1.5
            assert await until(
                lambda: any(f == f"{r}/{b.nick}" and ty == "unavailable" for f, ty, _, _ in a.presences), 5
            ), a.presences
        finally:
            await a.leave()
            b.c.disconnect()

    run(scenario(), timeout=60)


def test_bridge_channel_relays_endpoint_messages_and_names_the_dominant_speaker(server):
    """colibri-ws at the URL in the offer, opened with the ICE password:
    ServerHello first; an EndpointMessage goes to the one it names (or to
    everyone else when `to` is empty) with `from` set by the bridge, not the
    sender; the loud participant becomes the dominant speaker; a message
    over the size limit is dropped without closing the channel; a wrong
    password opens nothing."""
    r = room(server)

    async def scenario():
        a, b, c = await meeting(server, r, 3, levels=[0.8, 0.0, 0.0])
        chans = []
        try:
            chans = [await Channel(p.offer.ws).open() for p in (a, b, c)]
            ca, cb, cc = chans
            assert await until(lambda: all(ch.of("ServerHello") for ch in chans), 5)
            await ca.send({"colibriClass": "EndpointMessage", "to": b.nick, "from": c.nick, "msgPayload": {"n": 1}})
            assert await until(lambda: cb.of("EndpointMessage"), 5)
            m = cb.of("EndpointMessage")[0]
            assert m["from"] == a.nick and m["msgPayload"] == {"n": 1}
            await ca.send({"colibriClass": "EndpointMessage", "to": "", "msgPayload": {"n": 2}})
            assert await until(lambda: len(cb.of("EndpointMessage")) == 2 and cc.of("EndpointMessage"), 5)
            assert cc.of("EndpointMessage")[0]["from"] == a.nick
            assert not ca.of("EndpointMessage"), "the sender got its own broadcast"
            assert len(cc.of("EndpointMessage")) == 1, "a unicast reached a third party"

            assert await until(lambda: cb.of("DominantSpeakerEndpointChangeEvent"), 10), cb.messages
            assert cb.of("DominantSpeakerEndpointChangeEvent")[-1]["dominantSpeakerEndpoint"] == a.nick

            big = {"colibriClass": "EndpointMessage", "to": "", "msgPayload": {"x": "y" * 70000}}
            await cb.send(big)
            await cb.send({"colibriClass": "EndpointMessage", "to": a.nick, "msgPayload": {"after": True}})
            assert await until(lambda: any(m.get("msgPayload") == {"after": True} for m in ca.messages), 5)
            assert not any("x" in (m.get("msgPayload") or {}) for m in ca.messages + cc.messages)

            import websockets

            bad = a.offer.ws.split("?pwd=")[0] + "?pwd=wrong"
            with pytest.raises(websockets.exceptions.InvalidStatus) as e:
                await Channel(bad).open()
            assert e.value.response.status_code == 403
        finally:
            for ch in chans:
                await ch.close()
            for p in (a, b, c):
                await p.leave()

    run(scenario(), timeout=60)


def test_a_moderators_mute_is_enforced_and_others_may_not_mute(server):
    """The first participant moderates. A participant's mute of someone
    is refused (forbidden); the moderator's mute of b stops b's audio at
    the bridge, and b is told by the focus."""
    r = room(server)

    async def scenario():
        a, b = await meeting(server, r, 2)
        try:
            assert await until(lambda: b.role_of(a.nick) == "moderator", 5), b.presences
            mute = f"<mute xmlns='http://jitsi.org/jitmeet/audio' jid='{r}/{{}}'>true</mute>"
            with pytest.raises(IqError) as e:
                await b.c.iq("set", mute.format(a.nick), to=f"{r}/focus")
            assert e.value.iq["error"]["condition"] == "forbidden"

            def audio_from(p, who, since):
                return sum(v[1] for m, v in p.received(since).items() if p.owner_of(m) == who and v[0] == "audio")

            assert await until(lambda: audio_from(a, b.nick, 0) > 0)
            res = await a.c.iq("set", mute.format(b.nick), to=f"{r}/focus")
            assert res["type"] == "result"
            assert await until(lambda: b.focus_iqs, 5)
            await asyncio.sleep(1)
            t = time.monotonic()
            await asyncio.sleep(1.5)
            assert audio_from(a, b.nick, t) == 0, "muted audio still forwarded"
            assert audio_from(b, a.nick, t) > 0, "the moderator's own audio stopped"
        finally:
            await a.leave()
            await b.leave()

    run(scenario(), timeout=60)


def test_bad_input_is_refused_and_the_meeting_goes_on(server):
    """Malformed Jingle gets bad-request; garbage datagrams and RTP from an
    unknown address at the media port are dropped and counted in /metrics,
    and so is SRTP from a connected participant on an SSRC it never
    signalled, which nobody receives; the media between the participants
    keeps flowing."""
    r = room(server)

    async def scenario():
        a, b = await meeting(server, r, 2)
        try:
            bad = (
                f"<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='{a.offer.sid}'>"
                "<content name='audio'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>"
                "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='not-a-number'/></description></content></jingle>"
            )
            with pytest.raises(IqError) as e:
                await a.c.iq("set", bad, to=f"{r}/focus")
            assert e.value.iq["error"]["condition"] == "bad-request"

            before = server.metric("conclave_bridge_dropped_total")
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for payload in (b"GET / HTTP/1.1\r\n\r\n", bytes([0x80]) * 200, b"\x16\xfe\xfd" + b"x" * 100):
                for _ in range(20):
                    sock.sendto(payload, ("127.0.0.1", a.bridge_port()))
            sock.close()
            assert await until(lambda: server.metric("conclave_bridge_dropped_total") >= before + 60, 5)

            # real SRTP over a's DTLS session, on an SSRC it never announced
            unknown = 'conclave_bridge_dropped_total{reason="unknown-ssrc"}'
            before = server.metric(unknown)
            dtls = a.pc.getSenders()[0].transport
            assert await until(lambda: dtls.state == "connected", 15), dtls.state
            stray = 0x5EED0001
            for seq in range(30):
                pkt = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=stray, payload=b"\xf8" * 40)
                await dtls._send_rtp(pkt.serialize())
            assert await until(lambda: server.metric(unknown) >= before + 30, 5), server.metric(unknown)
            t = time.monotonic()
            await asyncio.sleep(1.5)
            for p in (a, b):
                assert all(v[1] > 0 for v in p.received(since=t).values()), p.received(since=t)
            assert stray not in b.offer.remote and not [x for x in b.jingle_log if str(stray) in x[2]]
        finally:
            await a.leave()
            await b.leave()

    run(scenario(), timeout=60)


def test_senders_are_told_what_is_wanted_and_receivers_what_they_get(server):
    """Over the bridge channel: a sender alone is told nobody wants its
    video (SenderSourceConstraints maxHeight 0, so it can stop sending);
    once another joins it is told the size wanted, which follows that
    receiver's ReceiverVideoConstraints; the receiver hears which sources
    it is sent (ForwardedSources); and when a sender's media stops, the
    others are told (EndpointConnectivityStatusChangeEvent)."""
    r = room(server)

    async def scenario():
        a = (await meeting(server, r, 1))[0]
        chans = []
        b = None
        try:
            ca = await Channel(a.offer.ws).open()
            chans.append(ca)
            source = f"{a.nick}-v0"

            def told(ch, height):
                got = [m for m in ch.of("SenderSourceConstraints") if m["sourceName"] == source]
                return got and got[-1]["maxHeight"] == height

            assert await until(lambda: told(ca, 0), 5), ca.messages
            b = await Participant(server, r).join()
            await asyncio.wait_for(b.accepted.wait(), 15)
            cb = await Channel(b.offer.ws).open()
            chans.append(cb)
            assert await until(lambda: told(ca, 2160), 10), ca.messages
            assert await until(
                lambda: cb.of("ForwardedSources") and source in cb.of("ForwardedSources")[-1]["forwardedSources"], 10
            ), cb.messages
            await cb.send({"colibriClass": "ReceiverVideoConstraints", "defaultConstraints": {"maxHeight": 180}})
            assert await until(lambda: told(ca, 180), 5), ca.messages

            def status(active):
                got = [m for m in ca.of("EndpointConnectivityStatusChangeEvent") if m["endpoint"] == b.nick]
                return got and got[-1]["active"] == active

            assert await until(lambda: status("true"), 10), ca.messages
            ice = b.pc.getTransceivers()[0].receiver.transport.transport
            for proto in ice._connection._protocols:
                proto.transport.close()
            assert await until(lambda: status("false"), 10), ca.messages
        finally:
            for ch in chans:
                await ch.close()
            await a.leave()
            if b is not None:
                b.c.disconnect()

    run(scenario(), timeout=60)


def test_last_n_keeps_video_to_the_speakers_and_selected_sources(server):
    """A receiver with lastN 1 gets video only from the dominant speaker
    (audio from everyone); a source it selects comes too; with lastN 2 a
    silent participant comes as well."""
    r = room(server)

    async def scenario():
        a, b, c = await meeting(server, r, 3, levels=[0.8, 0.0, 0.0])
        ch = None
        try:
            ch = await Channel(c.offer.ws).open()
            assert await until(lambda: ch.of("DominantSpeakerEndpointChangeEvent"), 10), ch.messages
            assert ch.of("DominantSpeakerEndpointChangeEvent")[-1]["dominantSpeakerEndpoint"] == a.nick
            await ch.send({"colibriClass": "ReceiverVideoConstraints", "lastN": 1})
            await asyncio.sleep(1.5)

            def frames(kind, who, since):
                return sum(v[1] for m, v in c.received(since).items() if v[0] == kind and c.owner_of(m) == who)

            t = time.monotonic()
            await asyncio.sleep(1.5)
            assert frames("video", a.nick, t) > 0, "the dominant speaker's video stopped"
            assert frames("video", b.nick, t) == 0, "video beyond last-N still forwarded"
            assert frames("audio", b.nick, t) > 0, "last-N cut audio"
            await ch.send({"colibriClass": "ReceiverVideoConstraints", "lastN": 1, "selectedSources": [f"{b.nick}-v0"]})
            assert await until(lambda: frames("video", b.nick, time.monotonic() - 0.5) > 0, 10), c.received()
            # Those who never spoke count too, in join order, and the
            # receiver does not count itself: last-N 2 is a and b.
            await ch.send({"colibriClass": "ReceiverVideoConstraints", "lastN": 2})
            def both():
                t = time.monotonic() - 0.5
                return frames("video", a.nick, t) > 0 and frames("video", b.nick, t) > 0
            assert await until(both, 10), c.received(time.monotonic() - 0.5)
        finally:
            if ch is not None:
                await ch.close()
            for p in (a, b, c):
                await p.leave()

    run(scenario(), timeout=60)


def test_a_meetings_chat_stays_after_it_ends(server):
    """Unlike Jitsi's, a meeting's chat is not lost with the meeting: it is
    in the room's archive (XEP-0313, under the room's retention), and
    someone who joins the room again after everyone left reads it there."""
    r = room(server)
    ns_mam = "urn:xmpp:mam:2"
    text = f"minutes {unique('m')}: ship on friday"

    async def scenario():
        a, b = await meeting(server, r, 2)
        heard = []
        b.c.register_handler(
            Callback("meeting-chat", MatchXPath("{jabber:client}message/{jabber:client}body"), heard.append)
        )
        try:
            a.c.send_message(mto=r, mbody=text, mtype="groupchat")
            assert await until(lambda: any(m["body"] == text for m in heard), 10)
        finally:
            await a.leave()
            await b.leave()
        # the meeting ends: its figures go, the focus leaves, the room goes
        assert await until(lambda: server.metric("conclave_meeting_endpoints") == 0, 10)
        c = await Participant(server, r).join()
        results = []
        c.c.register_handler(
            Callback("mam-results", MatchXPath(f"{{jabber:client}}message/{{{ns_mam}}}result"), results.append)
        )
        try:
            await asyncio.wait_for(c.accepted.wait(), 15)
            res = await c.c.iq("set", f"<query xmlns='{ns_mam}' queryid='q'/>", to=r)
            assert res["type"] == "result"
            bodies = [
                x.xml.find(f".//{{urn:xmpp:forward:0}}forwarded/{{jabber:client}}message/{{jabber:client}}body")
                for x in results
            ]
            assert text in [x.text for x in bodies if x is not None], results
        finally:
            await c.leave()

    run(scenario(), timeout=60)


def test_the_moderator_owns_the_room_locks_it_and_kicks(server):
    """The focus makes the first participant an owner of the room, as
    Jicofo does: it may lock the meeting with a password (a newcomer
    without it is refused) and kick someone (who leaves the media session
    too); another participant may do neither."""
    r = room(server)
    owner_form = (
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        "<field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>"
        "<field var='muc#roomconfig_roomsecret'><value>s3cret</value></field>"
        "</x></query>"
    )

    async def scenario():
        a, b = await meeting(server, r, 2)
        late = None
        try:
            assert await until(lambda: b.affiliations.get(f"{r}/{a.nick}") == "owner", 5), b.affiliations
            assert b.affiliations.get(f"{r}/{b.nick}") != "owner"
            with pytest.raises(IqError) as e:
                await b.c.iq("set", owner_form, to=r)
            assert e.value.iq["error"]["condition"] == "forbidden"
            res = await a.c.iq("set", owner_form, to=r)
            assert res["type"] == "result"

            late = Participant(server, r)
            await late.join()
            assert await until(
                lambda: any(f == f"{r}/{late.nick}" and ty == "error" for f, ty, _, _ in late.presences), 5
            ), late.presences
            assert not late.accepted.is_set()

            kick = (
                "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                f"<item nick='{b.nick}' role='none'/></query>"
            )
            with pytest.raises(IqError):
                await b.c.iq("set", kick.replace(b.nick, a.nick), to=r)
            await a.c.iq("set", kick, to=r)
            assert await until(
                lambda: any(f == f"{r}/{b.nick}" and "307" in codes for f, _, codes, _ in b.presences), 5
            ), b.presences
            assert await until(lambda: a.actions("source-remove"), 10), a.jingle_log
        finally:
            await a.leave()
            await b.leave()
            if late is not None:
                late.c.disconnect()

    run(scenario(), timeout=60)


def test_when_the_moderator_leaves_the_longest_present_participant_moderates(server):
    """As Jicofo's auto-owner: the first participant moderates; when it
    leaves, the one there longest of those left becomes owner and
    moderator (a meeting is never left with nobody to lock it or admit
    from the lobby), and no one else does."""
    r = room(server)

    async def scenario():
        a, b, c = await meeting(server, r, 3)
        try:
            assert await until(lambda: c.affiliations.get(f"{r}/{a.nick}") == "owner", 5), c.affiliations
            assert c.role_of(b.nick) != "moderator"
            await a.leave()
            assert await until(lambda: c.role_of(b.nick) == "moderator", 5), c.presences
            assert c.affiliations.get(f"{r}/{b.nick}") == "owner"
            assert c.role_of(c.nick) != "moderator"
        finally:
            await b.leave()
            await c.leave()

    run(scenario(), timeout=60)


def test_with_moderators_authenticated_every_account_moderates_and_guests_do_not(server_factory):
    """meetings.moderators = "authenticated": a guest who joins first is
    not made owner; a participant signed in with an account is."""
    srv = server_factory({"meetings.moderators": "authenticated"})
    r = room(srv)

    async def scenario():
        guest = await Participant(srv, r).join()
        await asyncio.wait_for(guest.accepted.wait(), 15)
        member = await Participant(srv, r, account=srv.add_user()).join()
        await asyncio.wait_for(member.accepted.wait(), 15)
        try:
            assert await until(lambda: guest.affiliations.get(f"{r}/{member.nick}") == "owner", 5), guest.affiliations
            assert guest.affiliations.get(f"{r}/{guest.nick}") != "owner"
        finally:
            await guest.leave()
            await member.leave()

    run(scenario(), timeout=60)


def test_a_forged_dtls_fingerprint_ends_that_endpoint_only(server):
    """A participant whose DTLS certificate is not the one its
    session-accept named never gets media: the bridge drops it, counts
    it, and the focus removes it; the others' meeting goes on."""
    r = room(server)

    async def scenario():
        a, b = await meeting(server, r, 2)
        before = server.metric("conclave_bridge_endpoint_failures_total")
        forger = Participant(server, r, forge_fingerprint=True)
        await forger.join()
        try:
            await asyncio.wait_for(forger.accepted.wait(), 15)
            assert await until(lambda: server.metric("conclave_bridge_endpoint_failures_total") > before, 10)
            # the others are told its sources went, and keep theirs
            assert await until(lambda: a.actions("source-remove"), 15), a.jingle_log
            await asyncio.sleep(1)
            assert not any(v[1] > 0 for v in forger.received().values()), "media reached the forger"
            t = time.monotonic()
            await asyncio.sleep(1.5)
            for p in (a, b):
                assert all(v[1] > 0 for m, v in p.received(since=t).items() if p.owner_of(m) in (a.nick, b.nick))
        finally:
            for p in (a, b):
                await p.leave()
            forger.c.disconnect()

    run(scenario(), timeout=60)


def test_ice_restarts_in_place_and_by_a_new_session(server):
    """An in-place ICE restart (session-info, lib-jitsi-meet's opt-in
    `enableIceRestart`) is answered with the bridge's new credentials in a
    transport-info tagged with an ice-generation. lib-jitsi-meet's default
    answer to failed ICE is a session restart: it ends the bridge session
    with `<bridge-session restart='true'/>`, the focus offers a new session
    on a fresh bridge endpoint, the other participant sees the old sources
    go and the new ones come, and media flows both ways again. (aiortc
    cannot restart ICE itself; the browser test completes an in-place
    restart.)"""
    r = room(server)

    async def scenario():
        a, b = await meeting(server, r, 2)
        try:
            def got(p, owner, since):
                rec = p.received(since=since)
                return {p.tracks[m].kind for m, v in rec.items() if p.owner_of(m) == owner and v[1] > 3}

            assert await until(lambda: got(a, b.nick, 0) == {"audio", "video"} and got(b, a.nick, 0) == {"audio", "video"})
            old_sid, old_ufrag = b.offer.sid, b.offer.transport.get("ufrag")
            old_ssrcs = {s for s, v in a.offer.remote.items() if v["owner"].endswith("/" + b.nick)}

            res = await b.to_focus(
                f"<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='{old_sid}'>"
                f"<bridge-session xmlns='http://jitsi.org/protocol/focus' id='{old_sid}' ice-restart='true'/></jingle>"
            )
            assert res["type"] == "result"
            assert await until(lambda: b.actions("transport-info"), 10), b.jingle_log
            t = b.actions("transport-info")[0].find(f"{{{NS_JINGLE}}}content/{{{NS_ICE}}}transport")
            assert t.get("ice-generation") == "1" and t.get("ufrag") not in (None, old_ufrag), ET.tostring(t)
            assert t.find(f"{{{NS_ICE}}}candidate") is not None

            res = await b.restart()
            assert res["type"] == "result"
            await asyncio.wait_for(b.accepted.wait(), 15)
            assert [x[0] for x in b.jingle_log].count("session-initiate") == 2, b.jingle_log
            assert b.offer.sid != old_sid and b.offer.transport.get("ufrag") != old_ufrag
            # a saw b's old sources go, then its new ones come
            assert await until(lambda: a.actions("source-remove") and a.actions("source-add"), 10), a.jingle_log
            removed = set().union(*(ssrcs_in(x) for x in a.actions("source-remove")))
            owners = {i.get("owner") for x in a.actions("source-remove") for i in x.iter(f"{{{NS_JITMEET}}}ssrc-info")}
            assert old_ssrcs <= removed and owners == {f"{r}/{b.nick}"}, (removed, old_ssrcs, owners)
            t = time.monotonic()
            assert await until(
                lambda: got(a, b.nick, t) == {"audio", "video"} and got(b, a.nick, t) == {"audio", "video"}, 20
            ), (a.received(since=t), b.received(since=t))
            # the old session is gone for good
            with pytest.raises(IqError) as gone:
                await b.to_focus(f"<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='{old_sid}'/>")
            assert gone.value.iq["error"]["condition"] == "item-not-found"
        finally:
            await a.leave()
            await b.leave()

    run(scenario(), timeout=90)


NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_NICK = "http://jabber.org/protocol/nick"


def muc_item(p):
    return p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")


def muc_codes(p):
    x = p.xml.find(f"{{{NS_MUC_USER}}}x")
    return set() if x is None else {s.get("code") for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def from_is(jid):
    return lambda p: p["from"].full == jid


def members_only_form(on):
    """The owner form lib-jitsi-meet's setMembersOnly submits."""
    return (
        f"<query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        f"<field var='muc#roomconfig_membersonly'><value>{'true' if on else 'false'}</value></field>"
        "</x></query>"
    )


async def knock(k, lobby, display):
    """A knocker's way in, as lib-jitsi-meet goes: its join of the main room
    is refused with registration-required naming the lobby room, which it
    then joins with its display name. Returns the lobby room JID named."""
    await k.join()
    # (wait_presence looks at every presence since the login, then waits)
    err = await k.c.wait_presence(lambda p: from_is(f"{k.room}/{k.nick}")(p) and p["type"] == "error")
    assert err["error"]["condition"] == "registration-required", err
    assert err["error"]["type"] == "auth"
    named = err.xml.find(f"{{jabber:client}}error/{{{NS_JITMEET}}}lobbyroom")
    assert named is not None, err
    assert named.text == lobby
    joined = k.c.wait_presence(lambda p: from_is(f"{lobby}/{k.nick}")(p) and "110" in muc_codes(p))
    k.c.send_raw(
        f"<presence to='{lobby}/{k.nick}'><x xmlns='http://jabber.org/protocol/muc'/>"
        f"<nick xmlns='{NS_NICK}'>{display}</nick></presence>"
    )
    own = await joined
    assert own["type"] != "error", own
    assert muc_item(own).get("role") == "participant"
    return named.text


def test_lobby_knock_admit_deny_and_turn_off(server):
    """Jitsi's lobby, driven as lib-jitsi-meet drives it. The moderator (the
    first participant, made owner by the focus) makes the others members and
    the room members-only; the room then names its lobby. Guests who never
    sent available presence knock: refused with the lobby's JID, they wait
    there under a display name. The moderator, owner there, sees who they
    are; they see no one's real JID. Admitted by an invitation to its full
    JID, a knocker gets into the meeting (the focus's session-initiate);
    denied by a kick, another gets 307; when the lobby is turned off the one
    still waiting is sent to the main room by the lobby's destruction."""
    r = room(server)
    lobby = r.replace("@conference.", "@lobby.")

    async def scenario():
        mod = await Participant(server, r, broadcast=False).join()
        await mod.c.wait_presence(
            lambda p: from_is(f"{r}/{mod.nick}")(p) and muc_item(p) is not None and muc_item(p).get("affiliation") == "owner",
            15,
        )
        other = await Participant(server, r, broadcast=False).join()
        await asyncio.wait_for(other.accepted.wait(), 15)
        knockers = []
        try:
            # Lobby.enable(): members first, then members-only (status 104).
            await mod.c.iq(
                "set",
                f"<query xmlns='{NS_MUC_ADMIN}'><item affiliation='member' jid='{other.c.boundjid.bare}'/></query>",
                to=r,
            )
            changed = expect(
                mod.c,
                f"{{jabber:client}}message/{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}status",
                lambda m: m["from"].full == r and "104" in muc_codes(m),
            )
            await mod.c.iq("set", members_only_form(True), to=r)
            await changed
            info = await mod.c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=r)
            q = info.xml.find(f"{{{NS_DISCO_INFO}}}query")
            feats = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
            assert "muc_membersonly" in feats, feats
            fields = {
                f.get("var"): f.findtext("{jabber:x:data}value")
                for f in q.iter("{jabber:x:data}field")
            }
            assert fields.get("muc#roominfo_lobbyroom") == lobby, fields
            # what the room sent `other` before the moderator's answer has
            # reached it once its own ping is answered
            await other.c.ping_server()
            assert not any(
                from_is(f"{r}/{other.nick}")(p) and p["type"] == "unavailable" for p in other.c.presences
            ), "a member present was put out"

            # The moderator joins the lobby (Lobby._maybeJoinLobbyRoom).
            mod_in = mod.c.wait_presence(lambda p: from_is(f"{lobby}/{mod.nick}")(p) and "110" in muc_codes(p))
            mod.c.send_raw(f"<presence to='{lobby}/{mod.nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
            own = muc_item(await mod_in)
            assert (own.get("affiliation"), own.get("role")) == ("owner", "moderator")

            k1 = Participant(server, r, broadcast=False)
            knockers.append(k1)
            seen = mod.c.wait_presence(lambda p: from_is(f"{lobby}/{k1.nick}")(p) and p["type"] != "unavailable")
            await knock(k1, lobby, "Ada Knocker")
            p = await seen
            assert muc_item(p).get("jid") == k1.c.boundjid.full, "the moderator sees who knocks"
            assert p.xml.findtext(f"{{{NS_NICK}}}nick") == "Ada Knocker"

            k2 = Participant(server, r, broadcast=False)
            knockers.append(k2)
            await knock(k2, lobby, "Bo Knocker")
            # knockers see each other (and the moderator) without real JIDs
            for who in (k1.nick, mod.nick):
                p = await k2.c.wait_presence(lambda p, who=who: from_is(f"{lobby}/{who}")(p))
                assert muc_item(p).get("jid") is None, p
            p = await k1.c.wait_presence(lambda p: from_is(f"{lobby}/{k2.nick}")(p))
            assert muc_item(p).get("jid") is None, p

            # Admit k1: an invitation to its full JID, through the main room.
            invited = expect(k1.c, f"{{jabber:client}}message/{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite")
            mod.c.send_raw(
                f"<message to='{r}'><x xmlns='{NS_MUC_USER}'><invite to='{k1.c.boundjid.full}'/></x></message>"
            )
            assert (await invited)["from"].full == r
            entered = k1.c.wait_presence(lambda p: from_is(f"{r}/{k1.nick}")(p) and "110" in muc_codes(p))
            k1.enter()
            p = await entered
            assert p["type"] != "error", p
            assert muc_item(p).get("affiliation") == "member"
            await asyncio.wait_for(k1.accepted.wait(), 15)
            assert k1.actions("session-initiate"), k1.jingle_log
            left = mod.c.wait_presence(lambda p: from_is(f"{lobby}/{k1.nick}")(p) and p["type"] == "unavailable")
            k1.c.send_raw(f"<presence to='{lobby}/{k1.nick}' type='unavailable'/>")
            await left

            # Deny k2: kicked from the lobby.
            kicked = k2.c.wait_presence(lambda p: from_is(f"{lobby}/{k2.nick}")(p) and p["type"] == "unavailable")
            await mod.c.iq(
                "set", f"<query xmlns='{NS_MUC_ADMIN}'><item nick='{k2.nick}' role='none'/></query>", to=lobby
            )
            p = await kicked
            assert {"307", "110"} <= muc_codes(p), p

            # k3 waits; the lobby is turned off: sent to the main room.
            k3 = Participant(server, r, broadcast=False)
            knockers.append(k3)
            await knock(k3, lobby, "Cy Knocker")
            destroyed = k3.c.wait_presence(lambda p: from_is(f"{lobby}/{k3.nick}")(p) and p["type"] == "unavailable")
            await mod.c.iq("set", members_only_form(False), to=r)
            p = await destroyed
            d = p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}destroy")
            assert d is not None and d.get("jid") == r, p
            entered = k3.c.wait_presence(lambda p: from_is(f"{r}/{k3.nick}")(p) and "110" in muc_codes(p))
            k3.enter()
            assert (await entered)["type"] != "error"
            await asyncio.wait_for(k3.accepted.wait(), 15)
        finally:
            for p in [mod, other, *knockers]:
                if getattr(p, "c", None) is not None:
                    await p.leave()

    run(scenario(), timeout=90)


async def send_plain(pub, addr, seconds):
    """Real VP8 and Opus (aiortc's encoders) from `pub`'s SSRCs, as plain
    RTP to `addr`, in real time. A keyframe every second: plain RTP has no
    way back for the bridge's keyframe requests."""
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.mediastreams import VideoStreamTrack

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    video, tone = VideoStreamTrack(), Tone(0.3)
    venc, aenc = Vp8Encoder(), OpusEncoder()
    seq = {"v": 0, "a": 0}

    def send(kind, ssrc, pt, payloads, ts):
        for i, payload in enumerate(payloads):
            pkt = RtpPacket(payload_type=pt, sequence_number=seq[kind] & 0xFFFF, timestamp=ts, ssrc=ssrc, payload=payload)
            pkt.marker = int(kind == "v" and i == len(payloads) - 1)
            seq[kind] += 1
            sock.sendto(pkt.serialize(), addr)

    async def audio():
        while True:
            f = await tone.recv()
            send("a", pub.ssrcs["audio"], 111, *aenc.encode(f))

    task = asyncio.ensure_future(audio())
    end = time.monotonic() + seconds
    try:
        n = 0
        while time.monotonic() < end:
            f = await video.recv()
            send("v", pub.ssrcs["video"][0], 100, *venc.encode(f, force_keyframe=n % 30 == 0))
            n += 1
    finally:
        task.cancel()
        sock.close()


def test_plain_rtp_ingest_reaches_participants_when_configured(server_factory):
    """The benchmark ingest (`meetings.rtp_ingest`): plain RTP from the SSRCs
    a participant announced is forwarded to the others as if it had come
    over its SRTP session (a real aiortc viewer decodes the picture and
    hears the tone); RTP on an SSRC nobody announced is dropped and
    counted. Off by default, and a non-loopback address is refused at
    start with a message naming the setting."""
    (port,) = free_ports(1)
    srv = server_factory({"meetings.rtp_ingest": f"127.0.0.1:{port}"})
    r = room(srv)

    async def scenario():
        pub = await PlainPublisher(srv, r).join()
        await asyncio.wait_for(pub.accepted.wait(), 15)
        viewer = await Participant(srv, r, send=False).join()
        await asyncio.wait_for(viewer.accepted.wait(), 15)
        try:
            unknown = 'conclave_bridge_dropped_total{reason="unknown-ssrc"}'
            before = srv.metric(unknown)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for seq in range(10):
                pkt = RtpPacket(payload_type=100, sequence_number=seq, timestamp=seq, ssrc=0x0BAD_0001, payload=b"x" * 50)
                sock.sendto(pkt.serialize(), ("127.0.0.1", port))
            sock.close()
            t = time.monotonic()
            await send_plain(pub, ("127.0.0.1", port), 4)
            got = {viewer.owner_of(m): v for m, v in viewer.received(since=t).items()}
            mine = [v for m, v in viewer.received(since=t).items() if viewer.owner_of(m) == pub.nick]
            kinds = {v[0]: v for v in mine}
            assert set(kinds) == {"audio", "video"}, got
            assert kinds["video"][1] >= 30 and kinds["video"][2] == 640, kinds
            assert kinds["audio"][1] > 0 and kinds["audio"][3] > 100, kinds
            assert srv.metric(unknown) >= before + 10
        finally:
            await viewer.leave()
            await pub.leave()

    run(scenario(), timeout=60)
    bad = server_factory({"meetings.rtp_ingest": "0.0.0.0:10001"}, start=False, name="ingest-wildcard")
    with pytest.raises(RuntimeError) as e:
        bad.start()
    assert "meetings.rtp_ingest" in str(e.value) and "loopback" in str(e.value)
