"""Hostile or broken input: each gets its RFC 6120 error condition.

Raw sockets are used where a library would refuse to produce the junk.
"""

import asyncio

import pytest

from clients import IqError, login, run
from harness import NS_CLIENT, RawStream, prosody_deviation, stanza_error_condition


def authed(server):
    jid, pw = server.add_user()
    r = RawStream(server)
    r.login(jid.split("@")[0], pw, resource="raw")
    return r


def assert_stream_error(r, expected, timeout=5.0):
    """The server sends <stream:error><EXPECTED/></stream:error> and closes the stream."""
    cond = r.stream_error(timeout)
    ok = (cond in expected) if isinstance(expected, (tuple, set, list)) else (cond == expected)
    assert ok, f"want stream error {expected}, got {cond}; {r.describe()}"
    r.wait_closed(timeout)


def test_stanza_over_max_size(server_factory):
    srv = server_factory({"limits.max_stanza_bytes": 10000})
    with authed(srv) as r:
        # a small stanza is fine
        r.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert r.wait_for(lambda e: e.get("id") == "p1").get("type") == "result"
        r.try_send(f"<message to='{r.jid}' type='chat'><body>{'A' * 20000}</body></message>")
        assert_stream_error(r, "policy-violation")


def test_stanza_over_max_size_streamed_slowly(server_factory):
    """The limit must hold even when the huge stanza arrives in small chunks and never ends."""
    srv = server_factory({"limits.max_stanza_bytes": 10000})
    with authed(srv) as r:
        r.send(f"<message to='{r.jid}' type='chat'><body>")
        for _ in range(30):
            if not r.try_send("B" * 1000):
                break
        assert_stream_error(r, "policy-violation")


def test_malformed_xml_after_auth(server):
    with authed(server) as r:
        r.try_send("<message to='x@localhost'><body>hi</bodyy></message>")
        assert_stream_error(r, "not-well-formed")


def test_malformed_xml_before_auth(server):
    with RawStream(server) as r:
        r.open()
        r.try_send("<iq type='get' id='1'><<</iq>")
        assert_stream_error(r, "not-well-formed")


@prosody_deviation("answers not-well-formed to DTD/PI/comments")
def test_dtd_rejected(server):
    """A DOCTYPE (legal XML, forbidden by RFC 6120 11.1) -> restricted-xml."""
    with RawStream(server) as r:
        r.try_send(
            "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'boom'>]>"
            f"<stream:stream to='{server.domain}' version='1.0' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        assert_stream_error(r, "restricted-xml")


@prosody_deviation("answers not-well-formed to DTD/PI/comments")
def test_processing_instruction_rejected(server):
    with authed(server) as r:
        r.try_send("<?evil data?>")
        assert_stream_error(r, "restricted-xml")


@prosody_deviation("answers not-well-formed to DTD/PI/comments")
def test_comment_rejected(server):
    """RFC 6120 11.1 also restricts comments."""
    with authed(server) as r:
        r.try_send("<!-- hello -->")
        assert_stream_error(r, "restricted-xml")


def test_undefined_entity_rejected(server):
    """An undeclared entity reference.

    RFC 6120 11.1 forbids entity references other than the five predefined ones
    (restricted-xml); without a DTD the reference also breaks XML 1.0's
    'Entity Declared' well-formedness constraint, so not-well-formed is an
    equally correct answer. Either way the stream must be closed.
    """
    with authed(server) as r:
        r.try_send(f"<message to='{r.jid}' type='chat'><body>&undefinedentity;</body></message>")
        assert_stream_error(r, ("restricted-xml", "not-well-formed"))


def test_predefined_entities_ok(server):
    with authed(server) as r:
        r.send(f"<message to='{r.jid}' type='chat' id='m1'><body>a &amp; b &lt;c&gt; &#x263A;</body></message>")
        msg = r.wait_for(lambda e: e.tag == f"{{{NS_CLIENT}}}message")
        assert msg.find(f"{{{NS_CLIENT}}}body").text == "a & b <c> \u263a"


def test_unknown_iq_namespace_service_unavailable(server):
    jid, pw = server.add_user()

    async def scenario():
        c = await login(server, jid, pw)
        try:
            with pytest.raises(IqError) as ei:
                await c.iq("get", "<query xmlns='urn:example:no-such-protocol'/>", to=server.domain)
            assert ei.value.condition == "service-unavailable", str(ei.value.iq)
            assert ei.value.iq["error"]["type"] == "cancel"
            # the session survives a stanza error
            await c.ping_server()
        finally:
            await c.close()

    run(scenario())


def test_unknown_iq_namespace_raw(server):
    """Same, checked on the wire: <iq type='error'> with the original id."""
    with authed(server) as r:
        r.send(f"<iq type='get' id='u1' to='{server.domain}'><q xmlns='urn:example:nope'/></iq>")
        el = r.wait_for(lambda e: e.get("id") == "u1")
        assert el.get("type") == "error", r.describe()
        assert stanza_error_condition(el) == "service-unavailable", r.describe()


@prosody_deviation("silently rewrites a spoofed 'from' instead of invalid-from")
def test_spoofed_from_invalid_from(server):
    with authed(server) as r:
        r.try_send(
            f"<message from='mallory@{server.domain}/evil' to='{r.jid}' type='chat'><body>spoof</body></message>"
        )
        assert_stream_error(r, "invalid-from")


@prosody_deviation("bounces the stanza with a stanza error instead of a stream error")
def test_stanza_before_auth_not_authorized(server):
    """RFC 6120 6.4.x: stanzas before authentication -> stream error not-authorized."""
    with RawStream(server) as r:
        r.tls_open()
        r.try_send(f"<message to='someone@{server.domain}'><body>hi</body></message>")
        assert_stream_error(r, "not-authorized")


def test_iq_with_no_payload_bad_request(server):
    """RFC 6120 8.2.3: an IQ get must contain exactly one payload child."""
    jid, pw = server.add_user()

    async def scenario():
        c = await login(server, jid, pw)
        try:
            with pytest.raises(IqError) as ei:
                await c.iq("get", None, to=server.domain)
            assert ei.value.condition in ("bad-request", "service-unavailable"), str(ei.value.iq)
        finally:
            await c.close()

    run(scenario())


def test_unknown_host_in_stream_header(server):
    with RawStream(server) as r:
        r.try_send(r.header("nosuch.example"))
        assert_stream_error(r, "host-unknown")


def test_idle_wait_helper_does_not_hang():
    """Guard: the asyncio helpers time out rather than hang."""

    async def nothing():
        await asyncio.sleep(5)

    with pytest.raises(asyncio.TimeoutError):
        run(nothing(), timeout=0.2)
