"""What a new user meets first: a stock client logs in at once, and
whatever cannot begin an XMPP stream is refused at once (RFC 6120
§4.9.3.13), never left to wait for the unauthenticated timeout (30 s by
default, which these tests keep)."""

import socket
import ssl
import time

import pytest

from clients import close_all, login, run
from harness import RawStream

pytestmark = pytest.mark.conclave_only

# A TLS 1.2/1.3 ClientHello's first bytes: what a client that tries direct
# TLS first (slixmpp's default) writes to the STARTTLS port.
CLIENT_HELLO = bytes.fromhex("160301020001000001fc0303") + bytes(32)
JUNK = {
    "tls-client-hello": CLIENT_HELLO,
    "http-request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "stray-bytes": b"hello",
}


@pytest.mark.parametrize("name", list(JUNK))
def test_junk_before_the_stream_header_is_refused_at_once(server, name):
    with RawStream(server, timeout=5) as s:
        t0 = time.monotonic()
        s.send(JUNK[name])
        cond = s.stream_error(timeout=5)
        elapsed = time.monotonic() - t0
        assert cond == "not-well-formed", s.describe()
        assert elapsed < 1.0, f"refused after {elapsed:.2f}s"
        # ... with the stream header first, as RFC 6120 §4.9.1.1 asks
        assert b"<stream:stream" in s.raw_in, s.describe()
        s.wait_closed(timeout=2)


def test_plaintext_on_the_direct_tls_port_is_closed_at_once(server):
    sock = socket.create_connection((server.host, server.direct_tls_port), timeout=5)
    try:
        t0 = time.monotonic()
        sock.sendall(
            b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        got = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except (ConnectionResetError, OSError):
                break
            if not chunk:
                break
            got += chunk
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, f"closed after {elapsed:.2f}s"
        # nothing in the clear: at most a TLS alert record
        assert b"<stream" not in got, got
    finally:
        sock.close()


def test_a_bystander_is_not_disturbed_by_junk(server):
    jid, pw = server.add_user()

    async def scenario():
        c = await login(server, jid, pw)
        try:
            for payload in JUNK.values():
                with RawStream(server, timeout=5) as s:
                    s.send(payload)
                    assert s.stream_error(timeout=2) == "not-well-formed"
            assert (await c.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=server.domain))["type"] == "result"
        finally:
            await close_all(c)

    run(scenario())


def test_stock_slixmpp_logs_in_at_once(server, monkeypatch):
    """slixmpp with its defaults, as a new user runs it: certificate checked
    against the trust store (here the server's own self-signed one, as a
    user who accepted it), direct TLS tried first on the given port, then
    STARTTLS. Before the fix the first attempt hung for 30 s."""
    cert = server.data_dir / "tls" / "cert.pem"
    assert cert.exists(), "the server generated no certificate"
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    jid, pw = server.add_user()
    peer_jid, peer_pw = server.add_user()

    async def scenario():
        t0 = time.monotonic()
        c = await login(server, jid, pw, tls="stock", timeout=10)
        elapsed = time.monotonic() - t0
        peer = await login(server, peer_jid, peer_pw)
        try:
            assert elapsed < 2.0, f"stock login took {elapsed:.2f}s"
            # It really verified the certificate and really uses TLS.
            assert isinstance(c.socket, ssl.SSLSocket) or c.transport.get_extra_info("sslcontext") is not None
            c.send_message(mto=peer_jid, mbody="first contact", mtype="chat")
            m = await peer.next_message()
            assert m["body"] == "first contact"
        finally:
            await close_all(c, peer)

    run(scenario())
