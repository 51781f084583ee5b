"""Parser and stream-level robustness: the server survives junk and stays correct."""

import socket
import time

import pytest

from clients import close_all, login, run
from harness import NS_STREAM, RawStream, StreamClosed, prosody_deviation, stream_error_condition


def assert_server_alive(server):
    jid, pw = server.add_user()

    async def scenario():
        c = await login(server, jid, pw)
        try:
            await c.ping_server()
        finally:
            await c.close()

    run(scenario())


def authed(server):
    jid, pw = server.add_user()
    r = RawStream(server)
    r.login(jid.split("@")[0], pw)
    return r


def expect_error(r, allowed, timeout=5.0):
    cond = r.stream_error(timeout)
    assert cond in allowed, f"want one of {allowed}, got {cond}; {r.describe()}"


def test_invalid_utf8(server):
    with authed(server) as r:
        r.try_send(b"<message to='" + r.jid.encode() + b"'><body>\xff\xfe\xc3(</body></message>")
        # RFC 6120 11.6: UTF-8 only. Invalid sequences are not well-formed XML either.
        expect_error(r, ("not-well-formed", "unsupported-encoding"))
    assert_server_alive(server)


def test_deep_nesting_within_size_limit(server_factory):
    """A nesting bomb that fits the size limit must not take the server down."""
    srv = server_factory({"limits.max_stanza_bytes": 10000})
    with authed(srv) as r:
        depth = 1200  # 7 bytes per level -> ~8.4 KB
        r.try_send(f"<message to='{r.jid}'>" + "<a>" * depth + "</a>" * depth + "</message>")
        r.try_send("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
        # Either the stanza is processed/bounced and the stream lives on, or it is refused with a stream error.
        try:
            el = r.wait_for(
                lambda e: e.get("id") == "after" or e.tag == f"{{{NS_STREAM}}}error", timeout=10
            )
            if el.tag == f"{{{NS_STREAM}}}error":
                assert stream_error_condition(el) in ("policy-violation", "not-well-formed", "restricted-xml"), r.describe()
        except StreamClosed:
            pass
    assert_server_alive(srv)


def test_many_attributes(server_factory):
    srv = server_factory({"limits.max_stanza_bytes": 10000})
    with authed(srv) as r:
        attrs = " ".join(f"a{i}='{i}'" for i in range(3000))  # ~30 KB in one start tag
        r.try_send(f"<message to='{r.jid}' {attrs}><body>x</body></message>")
        expect_error(r, ("policy-violation",))
    assert_server_alive(srv)


def test_oversized_before_auth(server_factory):
    """The size limit also protects the unauthenticated phase (e.g. a huge <auth/>)."""
    srv = server_factory({"limits.max_stanza_bytes": 10000})
    with RawStream(srv) as r:
        r.tls_open()
        r.try_send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + "A" * 50000 + "</auth>")
        cond = r.stream_error(10)
        assert cond in ("policy-violation", None) and (r.closed or r.stream_ended), r.describe()
    assert_server_alive(srv)


def test_wrong_stream_namespace(server):
    with RawStream(server) as r:
        r.try_send(
            f"<?xml version='1.0'?><stream:stream to='{server.domain}' version='1.0' xmlns='jabber:client' "
            "xmlns:stream='urn:example:not-streams'>"
        )
        expect_error(r, ("invalid-namespace",))


@prosody_deviation("ignores an unknown default (content) namespace in the stream header")
def test_wrong_content_namespace(server):
    with RawStream(server) as r:
        r.try_send(
            f"<?xml version='1.0'?><stream:stream to='{server.domain}' version='1.0' xmlns='urn:example:bogus' "
            "xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        expect_error(r, ("invalid-namespace", "bad-namespace-prefix"))


def test_abrupt_disconnects_do_not_leak_sessions(server):
    """Clients that vanish mid-handshake or mid-session do not break the server."""
    jid, pw = server.add_user()
    user = jid.split("@")[0]
    for i in range(15):
        s = socket.create_connection((server.host, server.starttls_port), timeout=5)
        s.sendall(b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' ")
        s.close()
        with RawStream(server) as r:
            if i % 3 == 0:
                r.tls_open()
            elif i % 3 == 1:
                r.login(user, pw, resource=f"r{i}")
                r.send(f"<message to='{jid}'><body>")
            r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(0.5)
    assert_server_alive(server)


def test_whitespace_keepalive_after_auth(server):
    with authed(server) as r:
        for _ in range(5):
            r.send(" ")
        r.send("\n<iq type='get' id='ka'><ping xmlns='urn:xmpp:ping'/></iq>\n")
        assert r.wait_for(lambda e: e.get("id") == "ka").get("type") == "result"


def test_client_closes_stream_server_closes_too(server):
    with authed(server) as r:
        r.send("</stream:stream>")
        r.wait_closed(5)
        assert r.stream_ended, f"server did not answer with </stream:stream>: {r.describe()}"


@pytest.mark.parametrize("n", [30])
def test_message_order_and_no_loss_under_load(server, n):
    """RFC 6120 10.1: stanzas from one session are delivered in order."""
    pairs = [(server.add_user(), server.add_user()) for _ in range(4)]

    async def scenario():
        senders, receivers = [], []
        try:
            for (a, b) in pairs:
                senders.append(await login(server, *a))
                receivers.append(await login(server, *b))
            for s, (_, b) in zip(senders, pairs):
                for i in range(n):
                    s.send_message(mto=b[0], mbody=f"{i}", mtype="chat")
            for rcv in receivers:
                got = []
                while len(got) < n:
                    got.append(int((await rcv.next_message(timeout=10))["body"]))
                assert got == list(range(n)), got
        finally:
            await close_all(*senders, *receivers)

    run(scenario())
