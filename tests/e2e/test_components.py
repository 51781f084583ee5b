"""XEP-0114 external components, driven by slixmpp's ComponentXMPP (the
example bot in examples/echo_bot.py), with raw sockets for what a library
will not send."""

import asyncio
import socket
import sys
import xml.etree.ElementTree as ET

import pytest

import harness
from clients import IqError, LoginFailed, T, close_all, login, run
from harness import NS_STREAM, NS_STREAM_ERR

sys.path.insert(0, str(harness.REPO / "examples"))
from echo_bot import EchoBot, answer  # noqa: E402

DOMAIN = "bot.localhost"
SECRET = "e2e-component-secret-0123456789"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


@pytest.fixture(scope="module")
def csrv():
    """One server per module that accepts the bot."""
    srv = harness.make_server(None, "component-server", {DOMAIN: SECRET, "other.localhost": "other-secret"})
    srv.start()
    yield srv
    srv.cleanup()


class Bot(EchoBot):
    """The example bot, plus what the tests watch."""

    def __init__(self, server, domain=DOMAIN, secret=SECRET):
        super().__init__(domain, secret, server.host, server.component_port)
        self.register_plugin("xep_0199")
        self.stream_errors = []
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(e["condition"]))
        self.presences = asyncio.Queue()
        self.add_event_handler("presence", self.presences.put_nowait)


async def connect(server, domain=DOMAIN, secret=SECRET, timeout=T) -> Bot:
    """Connect a bot; raise LoginFailed unless the handshake succeeds."""
    bot = Bot(server, domain, secret)
    done = asyncio.get_running_loop().create_future()

    def finish(kind, cond=None):
        if not done.done():
            done.set_result((kind, cond))

    bot.add_event_handler("session_start", lambda _: finish("ok"))
    bot.add_event_handler("stream_error", lambda e: finish("stream_error", e["condition"]))
    bot.add_event_handler("disconnected", lambda _: finish("disconnected"))
    bot.connect()
    try:
        kind, cond = await asyncio.wait_for(done, timeout)
    except asyncio.TimeoutError:
        bot.abort()
        raise LoginFailed("timeout")
    if kind != "ok":
        bot.abort()
        raise LoginFailed(kind, cond)
    return bot


async def closed_with(bot, timeout=T):
    """Wait for the server to end the bot's stream; return its stream error."""
    if bot.transport is not None:  # (the future is replaced once it is done)
        await asyncio.wait_for(bot.disconnected, timeout)
    return bot.stream_errors[-1] if bot.stream_errors else None


async def close_bot(bot):
    if bot is not None and bot.transport is not None:
        try:
            await asyncio.wait_for(bot.disconnect(wait=2), 3)
        except Exception:
            bot.abort()


async def echoed(client, to, body):
    """Write to the bot; return its answer."""
    client.send_message(mto=to, mbody=body, mtype="chat")
    return await client.next_message()


def test_dice_answers():
    assert answer("hello") == "hello"
    import random

    out = answer("roll 2d6+1", random.Random(1))
    rolls, total = out.split(" = ")
    assert int(total) == sum(int(x) for x in rolls.replace("+", " ").split())
    assert "I roll" in answer("roll 99d6")


def test_handshake_then_user_and_bot_talk(csrv):
    """A user writes to echo@bot.localhost; the bot's answer comes from there."""
    jid, pw = csrv.add_user()

    async def scenario():
        bot = await connect(csrv)
        alice = await login(csrv, jid, pw)
        try:
            m = await echoed(alice, f"echo@{DOMAIN}", "hello bot")
            assert m["body"] == "hello bot"
            assert m["from"].bare == f"echo@{DOMAIN}"
            assert m["to"].full == alice.boundjid.full
            m = await echoed(alice, DOMAIN, "roll 3d6")
            assert m["from"].bare == DOMAIN
            rolls, total = m["body"].split(" = ")
            assert len(rolls.split(" + ")) == 3 and 3 <= int(total) <= 18
        finally:
            await close_all(alice)
            await close_bot(bot)

    run(scenario())


def test_wrong_secret_is_refused(csrv):
    async def scenario():
        with pytest.raises(LoginFailed) as e:
            await connect(csrv, secret="not the secret")
        assert e.value.condition == "not-authorized"
        # The right secret still works: nothing was changed or locked.
        bot = await connect(csrv)
        await close_bot(bot)

    run(scenario())


def test_unknown_domain_is_refused(csrv):
    async def scenario():
        with pytest.raises(LoginFailed) as e:
            await connect(csrv, domain="nobody.localhost", secret=SECRET)
        assert e.value.condition == "host-unknown"

    run(scenario())


def test_bot_message_to_offline_user_is_delivered_at_login(csrv):
    jid, pw = csrv.add_user()

    async def scenario():
        bot = await connect(csrv)
        try:
            bot.send_message(mto=jid, mbody="while you were away", mtype="chat", mfrom=f"news@{DOMAIN}")
            # A later IQ round trip through the server: the message was
            # handled (and stored) before it.
            await bot.plugin["xep_0199"].send_ping(csrv.domain, ifrom=f"news@{DOMAIN}", timeout=T)
        finally:
            await close_bot(bot)
        user = await login(csrv, jid, pw)
        try:
            m = await user.next_message()
            assert m["body"] == "while you were away"
            assert m["from"] == f"news@{DOMAIN}"
            assert m["delay"]["stamp"] is not None
        finally:
            await close_all(user)

    run(scenario())


def test_bot_cannot_spoof_a_local_user(csrv):
    alice_jid, _ = csrv.add_user()
    bob_jid, bob_pw = csrv.add_user()

    async def scenario():
        bob = await login(csrv, bob_jid, bob_pw)
        bot = await connect(csrv)
        try:
            bot.send_message(mto=bob_jid, mbody="I am alice", mfrom=alice_jid)
            assert await closed_with(bot) == "invalid-from"
            with pytest.raises(asyncio.TimeoutError):
                await bob.next_message(timeout=1)
        finally:
            await close_all(bob)
            await close_bot(bot)

    run(scenario())


def test_iq_both_ways(csrv):
    """The bot pings a user's full JID and gets the client's result; the user
    asks the bot's domain for disco#info and the bot answers itself."""
    jid, pw = csrv.add_user()

    async def scenario():
        bot = await connect(csrv)
        alice = await login(csrv, jid, pw)
        try:
            await bot.plugin["xep_0199"].send_ping(alice.boundjid.full, ifrom=f"pinger@{DOMAIN}", timeout=T)
            info = await alice.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=T)
            ids = info["disco_info"]["identities"]
            assert ("client", "bot", None, "Echo and dice") in ids, ids
        finally:
            await close_all(alice)
            await close_bot(bot)

    run(scenario())


def test_directed_presence_both_ways(csrv):
    """A user's directed presence reaches the bot, and so does its unavailable
    when the user leaves; the bot's presence reaches the user."""
    jid, pw = csrv.add_user()

    async def scenario():
        bot = await connect(csrv)
        alice = await login(csrv, jid, pw)
        try:
            alice.send_presence(pto=f"status@{DOMAIN}")
            p = await asyncio.wait_for(bot.presences.get(), T)
            assert (p["from"], p["to"], p["type"]) == (alice.boundjid, f"status@{DOMAIN}", "available")
            bot.send_presence(pto=alice.boundjid.full, pfrom=f"status@{DOMAIN}", pstatus="on duty")
            p = await alice.wait_presence(lambda p: p["from"] == f"status@{DOMAIN}")
            assert p["status"] == "on duty"
            await close_all(alice)
            p = await asyncio.wait_for(bot.presences.get(), T)
            assert (p["from"], p["type"]) == (alice.boundjid, "unavailable")
        finally:
            await close_all(alice)
            await close_bot(bot)

    run(scenario())


def test_host_disco_items_list_the_component(csrv):
    jid, pw = csrv.add_user()

    async def scenario():
        alice = await login(csrv, jid, pw)
        try:
            items = await alice.plugin["xep_0030"].get_items(jid=csrv.domain, timeout=T)
            jids = {i[0] for i in items["disco_items"]["items"]}
            assert DOMAIN in jids, jids
        finally:
            await close_all(alice)

    run(scenario())


@harness.prosody_deviation("bounces with remote-server-timeout")
def test_component_away_bounces_service_unavailable(csrv):
    jid, pw = csrv.add_user()

    async def scenario():
        alice = await login(csrv, jid, pw)
        try:
            alice.send_message(mto="x@other.localhost", mbody="anyone?", mtype="chat")
            m = await asyncio.wait_for(alice.messages.get(), T)
            assert m["type"] == "error"
            assert m["error"]["condition"] == "service-unavailable"
        finally:
            await close_all(alice)

    run(scenario())


@pytest.mark.conclave_only
def test_second_connection_replaces_the_first(csrv):
    """Decision: the newest connection wins (a restarted bot need not wait for
    its dead connection to time out); the old one is closed with conflict."""
    jid, pw = csrv.add_user()

    async def scenario():
        first = await connect(csrv)
        second = await connect(csrv)
        alice = await login(csrv, jid, pw)
        try:
            assert await closed_with(first) == "conflict"
            assert (await echoed(alice, f"echo@{DOMAIN}", "still there?"))["body"] == "still there?"
        finally:
            await close_all(alice)
            await close_bot(second)

    run(scenario())


def raw_component(server, header: str, timeout=5.0) -> str:
    """Send a raw component stream header; return everything until the server closes."""
    with socket.create_connection((server.host, server.component_port), timeout=timeout) as s:
        s.sendall(header.encode())
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def stream_error_of(raw: str):
    # The reply is a complete stream: the header, maybe an error, the close.
    try:
        root = ET.fromstring(raw.replace("<?xml version='1.0'?>", ""))
    except ET.ParseError:
        return None
    err = root.find(f"{{{NS_STREAM}}}error")
    if err is None:
        return None
    return next(c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{NS_STREAM_ERR}}}") and not c.tag.endswith("}text"))


@harness.prosody_deviation("accepts a jabber:client header on the component port")
def test_client_namespace_on_component_port_is_invalid_namespace(csrv):
    raw = raw_component(
        csrv,
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}' to='{DOMAIN}'>",
    )
    assert stream_error_of(raw) == "invalid-namespace", raw


@pytest.mark.conclave_only
def test_wrong_secrets_are_rate_limited(server_factory):
    srv = server_factory({"limits.auth_failures_per_minute": 2}, components={DOMAIN: SECRET})

    async def scenario():
        for _ in range(2):
            with pytest.raises(LoginFailed) as e:
                await connect(srv, secret="guess")
            assert e.value.condition == "not-authorized"
        # Past the limit even the right secret is refused for a while.
        with pytest.raises(LoginFailed) as e:
            await connect(srv)
        assert e.value.condition == "policy-violation"

    run(scenario())
    assert SECRET not in srv.log_text()


@pytest.mark.conclave_only
def test_oversized_stanza_from_component_closes_its_stream(server_factory):
    srv = server_factory({"limits.max_stanza_bytes": 10000}, components={DOMAIN: SECRET})
    jid, _ = srv.add_user()

    async def scenario():
        bot = await connect(srv)
        bot.send_message(mto=jid, mbody="x" * 20000, mfrom=f"big@{DOMAIN}")
        assert await closed_with(bot) == "policy-violation"

    run(scenario())


@pytest.mark.conclave_only
def test_components_from_the_environment(server_factory):
    """The list of tables also works as one environment variable (TOML inline)."""
    srv = server_factory(
        {
            "components.port": harness.free_ports(1)[0],
            "components.list": f'[{{domain="{DOMAIN}", secret="{SECRET}"}}]',
        }
    )
    srv.component_port = srv.overrides["components.port"]
    jid, pw = srv.add_user()

    async def scenario():
        bot = await connect(srv)
        alice = await login(srv, jid, pw)
        try:
            assert (await echoed(alice, f"e@{DOMAIN}", "env"))["body"] == "env"
        finally:
            await close_all(alice)
            await close_bot(bot)

    run(scenario())


@pytest.mark.conclave_only
def test_no_component_port_without_components(server_factory):
    """Nothing listens on the component port until a component is declared,
    so the default port is not taken by every server."""
    port = harness.free_ports(1)[0]
    srv = server_factory({"components.port": port})
    assert srv.running() and not harness.port_open(port)


def stanza_error(stanza):
    """The defined condition of a stanza error a component received (read
    from the XML: slixmpp's error interface looks for it in jabber:client,
    where a component's stanzas are not)."""
    for err in stanza.xml:
        if err.tag.endswith("}error"):
            for c in err:
                if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not c.tag.endswith("}text"):
                    return c.tag.split("}")[1]
    return None


@pytest.mark.conclave_only
def test_blocking_applies_to_the_component(csrv):
    """XEP-0191 between a user and a component: a user who blocked the
    component's domain hears nothing from any address at it (messages and
    requests bounce with service-unavailable, presence vanishes), and her
    own stanzas to it are refused with <blocked/>. Blocking one address
    at the domain leaves the others through."""
    jid, pw = csrv.add_user()
    ns_block = "urn:xmpp:blocking"

    async def scenario():
        bot = await connect(csrv)
        errors = asyncio.Queue()
        bot.add_event_handler(
            "message_error", lambda m: errors.put_nowait((stanza_error(m), m["from"].bare, str(m["to"])))
        )
        alice = await login(csrv, jid, pw)
        try:
            await alice.iq("set", f"<block xmlns='{ns_block}'><item jid='{DOMAIN}'/></block>")
            bot.send_message(mto=alice.boundjid.full, mfrom=f"news@{DOMAIN}", mbody="breaking news", mtype="chat")
            assert await asyncio.wait_for(errors.get(), T) == ("service-unavailable", jid, f"news@{DOMAIN}")
            bot.send_presence(pto=alice.boundjid.full, pfrom=f"status@{DOMAIN}", pstatus="on duty")
            with pytest.raises(IqError) as e:
                await bot.plugin["xep_0199"].send_ping(alice.boundjid.full, ifrom=f"pinger@{DOMAIN}", timeout=T)
            assert stanza_error(e.value.iq) == "service-unavailable"
            # alice's own message to the bot is refused, and never echoed
            alice.send_message(mto=f"echo@{DOMAIN}", mbody="are you there", mtype="chat")
            m = await asyncio.wait_for(alice.messages.get(), T)
            assert m["type"] == "error" and m["error"]["condition"] == "not-acceptable"
            assert m.xml.find("{jabber:client}error/{urn:xmpp:blocking:errors}blocked") is not None
            await asyncio.sleep(0.3)
            # (the client queues an error twice: as message and as message_error)
            got = [m for m in list(alice.messages._queue) if m["type"] != "error"]
            assert not got, "a stanza from the blocked component got through"
            assert not [p for p in alice.presences if p["from"].domain == DOMAIN]

            # only one address blocked: the rest of the domain gets through
            await alice.iq("set", f"<unblock xmlns='{ns_block}'/>")
            await alice.iq("set", f"<block xmlns='{ns_block}'><item jid='news@{DOMAIN}'/></block>")
            bot.send_message(mto=alice.boundjid.full, mfrom=f"news@{DOMAIN}", mbody="more news", mtype="chat")
            assert await asyncio.wait_for(errors.get(), T) == ("service-unavailable", jid, f"news@{DOMAIN}")
            bot.send_message(mto=alice.boundjid.full, mfrom=f"weather@{DOMAIN}", mbody="sunny", mtype="chat")
            m = await alice.next_message(pred=lambda m: m["type"] != "error")
            assert (m["from"].bare, m["body"]) == (f"weather@{DOMAIN}", "sunny")
        finally:
            await close_all(alice)
            await close_bot(bot)

    run(scenario())
