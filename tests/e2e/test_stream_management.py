"""XEP-0198 stream management: acknowledgements that mean "handled and
durable", and resumption: a session whose connection drops is kept for a
while, gathers what is sent to it, and continues on a new connection with
nothing lost or repeated; when not resumed in time it ends as a disconnect
would, and what the client never acknowledged goes to offline storage."""

import asyncio
import time
import xml.etree.ElementTree as ET

import pytest

from clients import Client, IqError, befriend, close_all, login, run
from harness import RawStream, StreamClosed

pytestmark = pytest.mark.conclave_only
NS_SM = "urn:xmpp:sm:3"


def test_acks_count_handled_stanzas(server):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw, resource="sm")
        r.send(f"<enable xmlns='{NS_SM}'/>")
        assert r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}enabled") is not None
        r.send("<presence/>")
        r.send(f"<message to='{jid}' type='chat'><body>one</body></message>")
        r.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        r.send(f"<r xmlns='{NS_SM}'/>")
        a = r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}a")
        assert a.get("h") == "3", a.attrib


def test_an_ack_of_more_than_was_sent_is_handled_count_too_high(server):
    """XEP-0198 §4: the stream is closed with undefined-condition carrying
    <handled-count-too-high/> with the counts; the server goes on."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw, resource="sm")
        r.send(f"<enable xmlns='{NS_SM}'/>")
        r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}enabled")
        r.send(f"<message to='{jid}/sm' type='chat'><body>one</body></message>")
        r.wait_for(lambda e: e.tag == "{jabber:client}message")
        t0 = time.monotonic()
        r.send(f"<a xmlns='{NS_SM}' h='4294967295'/>")
        err = r.wait_for(lambda e: e.tag == "{http://etherx.jabber.org/streams}error")
        assert time.monotonic() - t0 < 1.0
        assert err.find("{urn:ietf:params:xml:ns:xmpp-streams}undefined-condition") is not None, ET.tostring(err)
        d = err.find(f"{{{NS_SM}}}handled-count-too-high")
        assert d is not None, ET.tostring(err)
        assert (d.get("h"), d.get("send-count")) == ("4294967295", "1")
        r.wait_closed(timeout=3)
    with RawStream(server) as again:
        again.login(jid.split("@")[0], pw, resource="after")


NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def authed(server, jid, pw) -> RawStream:
    """A raw stream, authenticated and restarted, not yet bound."""
    r = RawStream(server)
    r.tls_open()
    assert r.auth_plain(jid.split("@")[0], pw).tag.endswith("success")
    r.open()
    return r


def enable_resume(r: RawStream) -> ET.Element:
    r.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    en = r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}enabled")
    assert en.get("resume") in ("true", "1"), en.attrib
    assert en.get("id")
    return en


def bodies(r: RawStream, n: int, timeout: float = 5.0) -> list[str]:
    """The next n message bodies received, in order."""
    out = []
    for _ in range(n):
        m = r.wait_for(lambda e: e.tag == "{jabber:client}message", timeout)
        out.append(m.findtext("{jabber:client}body"))
    return out


def test_resume_unknown_id_fails_and_the_stream_binds(server):
    jid, pw = server.add_user()
    with authed(server, jid, pw) as r:
        sm_feature = r.features.find(f"{{{NS_SM}}}sm")
        assert sm_feature is not None
        r.send(f"<resume xmlns='{NS_SM}' previd='nope' h='0'/>")
        failed = r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}failed")
        assert failed.find(f"{{{NS_STANZAS}}}item-not-found") is not None
        # and the stream still binds, and works
        assert r.bind("after-resume")
        r.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert r.wait_for(lambda e: e.get("id") == "p").get("type") == "result"


def test_enable_resume_grants_an_id_and_max(server):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw, resource="grant")
        en = enable_resume(r)
        assert int(en.get("max")) == 300
        assert len(en.get("id")) >= 32  # unguessable: 144 random bits


def test_resume_after_abrupt_cut_delivers_every_message_once(server):
    """The raw client reads m1..m3 then vanishes without </stream:stream>;
    it claims to have handled only the ping's result and m1 (m2, m3 were in flight: written by
    the server, never processed). m4, m5 are sent while it is away. On
    resumption it gets m2..m5, each once, in order, with its old JID."""
    jid, pw = server.add_user()
    peer, ppw = server.add_user()
    user = jid.split("@")[0]

    async def send_from_peer(c, full, texts):
        for t in texts:
            c.send_message(mto=full, mbody=t, mtype="chat")
        await c.ping_server()

    r = RawStream(server)
    full = r.login(user, pw, resource="phone")
    en = enable_resume(r)
    smid = en.get("id")
    # One stanza of ours, handled: the server's h must say 1 at resumption.
    r.send("<iq type='get' id='p0'><ping xmlns='urn:xmpp:ping'/></iq>")
    r.wait_for(lambda e: e.get("id") == "p0")

    async def scenario():
        c = await login(server, peer, ppw)
        try:
            await send_from_peer(c, full, ["m1", "m2", "m3"])
            assert bodies(r, 3) == ["m1", "m2", "m3"]
            # The server asks for an ack; this client never gives one.
            r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}r")
            r.sock.close()  # abrupt: no closing tag
            await asyncio.sleep(0.5)
            await send_from_peer(c, full, ["m4", "m5"])
            # Not bounced, not stored offline: the session is still there.
            assert c.messages.empty()

            r2 = authed(server, jid, pw)
            try:
                # Handled by the client: the ping's result and m1.
                r2.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='2'/>")
                resumed = r2.wait_for(lambda e: e.tag in (f"{{{NS_SM}}}resumed", f"{{{NS_SM}}}failed"))
                assert resumed.tag == f"{{{NS_SM}}}resumed", ET.tostring(resumed)
                assert resumed.get("previd") == smid
                assert resumed.get("h") == "1"
                got = bodies(r2, 4)
                assert got == ["m2", "m3", "m4", "m5"]
                # The session goes on: same full JID, and nothing more comes.
                r2.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
                r2.wait_for(lambda e: e.get("id") == "p1")
                assert not [e for e in r2.elements if e.tag == "{jabber:client}message"]
                await send_from_peer(c, full, ["m6"])
                m6 = r2.wait_for(lambda e: e.tag == "{jabber:client}message")
                assert m6.findtext("{jabber:client}body") == "m6"
                assert m6.get("to") == full
                # Acks after resumption continue the count: 1 ping + 1 now.
                r2.send(f"<r xmlns='{NS_SM}'/>")
                a = r2.wait_for(lambda e: e.tag == f"{{{NS_SM}}}a")
                assert a.get("h") == "2", a.attrib
            finally:
                r2.close()
        finally:
            await c.close()

    run(scenario())


def test_slixmpp_resumes_after_transport_abort(server):
    """slixmpp enables resumption, receives messages without acking them,
    loses its TCP connection, and resumes: it gets every message exactly
    once and keeps its full JID."""
    jid, pw = server.add_user()
    peer, ppw = server.add_user()

    async def scenario():
        a = Client(server, jid, pw)
        a.register_plugin("xep_0198")
        # Never answer the server's <r/>: everything stays unacked.
        a.remove_handler("Stream Management Request Ack")
        enabled = asyncio.get_running_loop().create_future()
        resumed = asyncio.get_running_loop().create_future()
        starts = []
        a.add_event_handler("sm_enabled", lambda _: enabled.done() or enabled.set_result(True))
        a.add_event_handler("session_resumed", lambda _: resumed.done() or resumed.set_result(True))
        a.add_event_handler("session_start", lambda _: starts.append(1))
        await a.login()
        b = await login(server, peer, ppw)
        try:
            await asyncio.wait_for(enabled, 10)
            first_jid = str(a.boundjid)
            for i in range(3):
                b.send_message(mto=first_jid, mbody=f"before {i}", mtype="chat")
            got = [(await a.next_message())["body"] for _ in range(3)]
            assert got == [f"before {i}" for i in range(3)]
            a.transport.abort()  # the TCP connection is cut, no closing tag
            await asyncio.sleep(0.5)
            for i in range(3):
                b.send_message(mto=first_jid, mbody=f"away {i}", mtype="chat")
            await b.ping_server()
            a.connect(server.host, a.port())
            await asyncio.wait_for(resumed, 10)
            for _ in range(3):
                got.append((await a.next_message())["body"])
            assert got == [f"before {i}" for i in range(3)] + [f"away {i}" for i in range(3)]
            await a.ping_server()
            await asyncio.sleep(0.3)
            assert a.messages.empty(), "a message came twice"
            assert str(a.boundjid) == first_jid
            assert starts == [1], "resumed, not a new session"
        finally:
            await close_all(a, b)

    run(scenario())


def test_resuming_someone_elses_session_is_refused(server):
    alice, apw = server.add_user()
    mallory, mpw = server.add_user()
    with RawStream(server) as r:
        r.login(alice.split("@")[0], apw, resource="a")
        smid = enable_resume(r).get("id")
        with authed(server, mallory, mpw) as m:
            m.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='0'/>")
            failed = m.wait_for(lambda e: e.tag == f"{{{NS_SM}}}failed")
            assert failed.find(f"{{{NS_STANZAS}}}item-not-found") is not None
            assert failed.get("h") is None  # nothing about alice's session leaks
            assert m.bind("m")
        # Alice's stream is untouched.
        r.send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert r.wait_for(lambda e: e.get("id") == "still").get("type") == "result"


def test_resume_with_h_too_high_fails_and_the_client_binds(server):
    jid, pw = server.add_user()
    r = RawStream(server)
    r.login(jid.split("@")[0], pw, resource="hi")
    smid = enable_resume(r).get("id")
    r.send("<presence/>")
    r.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    r.wait_for(lambda e: e.get("id") == "p")
    r.sock.close()
    time.sleep(0.3)
    with authed(server, jid, pw) as r2:
        r2.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='1000'/>")
        failed = r2.wait_for(lambda e: e.tag == f"{{{NS_SM}}}failed")
        assert failed.find(f"{{{NS_STANZAS}}}undefined-condition") is not None
        too_high = failed.find(f"{{{NS_SM}}}handled-count-too-high")
        assert too_high is not None and too_high.get("h") == "1000"
        assert failed.get("h") == "2"  # presence and ping were handled
        assert r2.bind("hi")
        # The session is gone for good now.
        r2.send(f"<enable xmlns='{NS_SM}'/>")
        r2.wait_for(lambda e: e.tag == f"{{{NS_SM}}}enabled")
    with authed(server, jid, pw) as r3:
        r3.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='0'/>")
        failed = r3.wait_for(lambda e: e.tag == f"{{{NS_SM}}}failed")
        assert failed.find(f"{{{NS_STANZAS}}}item-not-found") is not None
        assert failed.get("h") == "2"  # known: the session ended moments ago


def test_a_newer_resume_replaces_a_connection_still_attached(server):
    """The old TCP connection is still open (a half-dead link): resuming
    takes the session over and closes the old stream with conflict."""
    jid, pw = server.add_user()
    peer, ppw = server.add_user()
    old = RawStream(server)
    full = old.login(jid.split("@")[0], pw, resource="tablet")
    smid = enable_resume(old).get("id")
    with authed(server, jid, pw) as new:
        new.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='0'/>")
        assert new.wait_for(lambda e: e.tag == f"{{{NS_SM}}}resumed").get("h") == "0"
        assert old.stream_error() == "conflict"
        old.close()

        async def scenario():
            c = await login(server, peer, ppw)
            c.send_message(mto=full, mbody="to the new link", mtype="chat")
            await c.ping_server()
            await c.close()

        run(scenario())
        assert bodies(new, 1) == ["to the new link"]


def test_hibernation_timeout_unbinds_and_keeps_messages_offline(server_factory):
    srv = server_factory({"c2s.sm_resume_timeout_secs": 2})
    jid, pw = srv.add_user()
    peer, ppw = srv.add_user()

    async def scenario():
        a = Client(srv, jid, pw)
        a.register_plugin("xep_0198")
        a.remove_handler("Stream Management Request Ack")
        await a.login()
        b = await login(srv, peer, ppw)
        try:
            await befriend(a, b)
            a_full = str(a.boundjid)
            await b.wait_presence(lambda p: p["from"] == a_full and p["type"] == "available")
            b.send_message(mto=jid, mbody="unacked one", mtype="chat")
            b.send_message(mto=jid, mbody="unacked two", mtype="chat")
            assert (await a.next_message())["body"] == "unacked one"
            assert (await a.next_message())["body"] == "unacked two"
            a.transport.abort()
            cut = time.monotonic()
            await asyncio.sleep(0.5)
            b.send_message(mto=jid, mbody="while away", mtype="chat")
            # An IQ request waiting for the session is answered with an
            # error when it ends (RFC 6120 §8.4), not left hanging.
            version = asyncio.ensure_future(b.iq("get", "<query xmlns='jabber:iq:version'/>", to=a_full))
            # Nothing yet: the session is hibernated, still "available".
            assert not [p for p in b.presences if p["from"] == a_full and p["type"] == "unavailable"]
            await b.wait_presence(lambda p: p["from"] == a_full and p["type"] == "unavailable", timeout=10)
            assert time.monotonic() - cut >= 1.5, "ended before the timeout"
            with pytest.raises(IqError) as err:
                await version
            assert err.value.iq["error"]["condition"] == "service-unavailable"
        finally:
            a.abort_now()
            await b.close()
        # A new login finds everything it never acknowledged, offline.
        again = await login(srv, jid, pw)
        try:
            got = sorted([(await again.next_message())["body"] for _ in range(3)])
            assert got == ["unacked one", "unacked two", "while away"]
            await again.ping_server()
            await asyncio.sleep(0.3)
            assert again.messages.empty()
        finally:
            await again.close()

    run(scenario())


def test_clean_close_ends_at_once_and_unacked_messages_go_offline(server):
    jid, pw = server.add_user()
    peer, ppw = server.add_user()
    r = RawStream(server)
    full = r.login(jid.split("@")[0], pw, resource="clean")
    smid = enable_resume(r).get("id")

    async def scenario():
        c = await login(server, peer, ppw)
        c.send_message(mto=full, mbody="never acked", mtype="chat")
        await c.ping_server()
        assert bodies(r, 1) == ["never acked"]
        r.send("</stream:stream>")
        r.wait_closed()
        r.close()
        await asyncio.sleep(0.3)
        with authed(server, jid, pw) as r2:
            r2.send(f"<resume xmlns='{NS_SM}' previd='{smid}' h='0'/>")
            failed = r2.wait_for(lambda e: e.tag == f"{{{NS_SM}}}failed")
            assert failed.find(f"{{{NS_STANZAS}}}item-not-found") is not None
        again = await login(server, jid, pw)
        try:
            assert (await again.next_message())["body"] == "never acked"
        finally:
            await close_all(again, c)

    run(scenario())


def test_resumption_off_when_the_timeout_is_zero(server_factory):
    srv = server_factory({"c2s.sm_resume_timeout_secs": 0})
    jid, pw = srv.add_user()
    with RawStream(srv) as r:
        r.login(jid.split("@")[0], pw, resource="off")
        r.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        en = r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}enabled")
        assert en.get("resume") is None and en.get("id") is None


def test_slixmpp_enables_sm_and_gets_acks(server):
    jid, pw = server.add_user()

    async def scenario():
        c = Client(server, jid, pw)
        c.register_plugin("xep_0198")
        enabled = asyncio.get_running_loop().create_future()
        c.add_event_handler("sm_enabled", lambda _: enabled.done() or enabled.set_result(True))
        await c.login()
        try:
            await asyncio.wait_for(enabled, 10)
            for i in range(5):
                c.send_message(mto=jid, mbody=f"sm {i}", mtype="chat")
            c.plugin["xep_0198"].request_ack()
            await c.ping_server()
            await asyncio.sleep(0.5)
            # Acks arrive and the stream stays healthy. (slixmpp counts its
            # initial presence, sent before <enable/>, so its sequence runs
            # one ahead of the server's count, which XEP-0198 starts at
            # <enable/>; exact counting is checked on the raw stream above.)
            assert c.plugin["xep_0198"].last_ack > 0
            assert not c.stream_errors
        finally:
            await c.close()

    run(scenario())


def test_a_client_that_never_acks_is_disconnected_and_loses_nothing(server_factory):
    srv = server_factory({"limits.sm_unacked_max": 3})
    jid, pw = srv.add_user()
    peer, ppw = srv.add_user()
    r = RawStream(srv)
    full = r.login(jid.split("@")[0], pw, resource="slow")
    r.send(f"<enable xmlns='{NS_SM}'/>")
    r.wait_for(lambda e: e.tag == f"{{{NS_SM}}}enabled")

    async def scenario():
        c = await login(srv, peer, ppw)
        try:
            for i in range(5):
                c.send_message(mto=full, mbody=f"n{i}", mtype="chat")
            await c.ping_server()
            assert r.stream_error() == "policy-violation"
            r.close()
            await asyncio.sleep(0.3)
            again = await login(srv, jid, pw)
            try:
                got = sorted([(await again.next_message())["body"] for _ in range(5)])
                assert got == [f"n{i}" for i in range(5)]
            finally:
                await again.close()
        finally:
            await c.close()

    run(scenario())
