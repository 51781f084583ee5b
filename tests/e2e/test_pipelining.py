"""Stream restarts a client pipelines (RFC 6120 §6.4.6 says wait; tsung and some
mobile clients don't): the new header sent right after the last SASL element, before
<success/>, must open the new stream. After <starttls/> the same is refused: plaintext
must never reach the TLS stream (§5.4.3.3)."""

import base64
import hashlib
import hmac
import os
import re
import socket
import ssl
import time

import pytest

from harness import NS_BIND, NS_SASL, NS_STREAM, NS_TLS, RawStream, insecure_ssl_context


def read_until(r: RawStream, pattern: bytes, buf: bytes = b"", timeout: float = 5.0) -> bytes:
    """`buf` and the raw bytes received after it, until `pattern` (a regex)
    matches; the server's restarted stream is a second document, so no XML
    parser reads it."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, buf, re.S):
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} within {timeout}s; got {buf!r}"
        r.sock.settimeout(left)
        try:
            data = r.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        assert data, f"closed before {pattern!r}; got {buf!r}"
        buf += data
    return buf


def read_for(r: RawStream, seconds: float) -> tuple[bytes, bool]:
    """What arrives within `seconds`, and whether the peer closed."""
    deadline = time.monotonic() + seconds
    buf = b""
    while (left := deadline - time.monotonic()) > 0:
        r.sock.settimeout(left)
        try:
            data = r.sock.recv(65536)
        except socket.timeout:
            break
        except OSError:  # reset, TLS alert
            return buf, True
        if not data:
            return buf, True
        buf += data
    return buf, False


BIND = f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>pipe</resource></bind></iq>"
PING = "<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>"


def plain_auth(user: str, pw: str) -> str:
    payload = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>"


def assert_bound_and_live(r: RawStream, jid: str, got: bytes) -> None:
    got = read_until(r, rb"<iq[^>]*id=.bind1.*?</iq>", got)
    after = got.split(b"success", 1)[1]
    assert b"<stream:features" in after or b"features" in after, got
    bound = re.search(rb"<iq[^>]*id=.bind1.[^>]*>.*?</iq>", after, re.S).group(0)
    assert b"type='result'" in bound or b'type="result"' in bound, got
    assert f"<jid>{jid}/pipe</jid>".encode() in bound, got
    # The session behind it works.
    r.send(PING)
    pong = read_until(r, rb"<iq[^>]*id=.ping1.[^>]*>")
    assert re.search(rb"<iq[^>]*id=.ping1.[^>]*type=.result.|<iq[^>]*type=.result.[^>]*id=.ping1.", pong), pong


def test_plain_auth_restart_and_bind_in_one_write(server):
    """tsung's login: <auth/>, the new header and the bind in one TCP write."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.tls_open()
        r.send(plain_auth(jid.split("@")[0], pw) + r.header() + BIND)
        got = read_until(r, rb"<success[^>]*(/>|>.*?</success>)")
        assert_bound_and_live(r, jid, got)


@pytest.mark.conclave_only
def test_pipelined_restart_on_clear_stream(server_factory):
    """The benchmark's own setting: PLAIN on plain TCP, pipelined as tsung sends it."""
    srv = server_factory({"c2s.require_encryption": False, "auth.allow_unencrypted_plain": True})
    jid, pw = srv.add_user()
    with RawStream(srv) as r:
        r.open()
        # With the newline go-xmpp puts after every element: it belongs to
        # the old stream and must not upset the new header.
        r.send(plain_auth(jid.split("@")[0], pw) + "\n" + r.header() + BIND)
        got = read_until(r, rb"<success[^>]*(/>|>.*?</success>)")
        assert_bound_and_live(r, jid, got)
        assert not isinstance(r.sock, ssl.SSLSocket)


def _hi(pw: bytes, salt: bytes, i: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pw, salt, i)


def test_scram_final_response_pipelined_with_restart(server):
    """SCRAM: the new header follows the client's last <response/>, before <success/>."""
    jid, pw = server.add_user()
    user = jid.split("@")[0]
    with RawStream(server) as r:
        r.tls_open()
        cnonce = base64.b64encode(os.urandom(18)).decode()
        bare = f"n={user},r={cnonce}"
        r.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{base64.b64encode(('n,,' + bare).encode()).decode()}</auth>")
        ch = r.wait_for(lambda e: e.tag == f"{{{NS_SASL}}}challenge")
        first = base64.b64decode(ch.text).decode()
        attrs = dict(kv.split("=", 1) for kv in first.split(","))
        salted = _hi(pw.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        msg = f"{bare},{first},{without_proof}".encode()
        sig = hmac.new(stored, msg, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
        final = base64.b64encode(f"{without_proof},p={proof}".encode()).decode()
        r.send(f"<response xmlns='{NS_SASL}'>{final}</response>" + r.header() + BIND)
        got = read_until(r, rb"<success[^>]*(/>|>.*?</success>)")
        assert_bound_and_live(r, jid, got)


def test_failed_auth_with_pipelined_header_is_not_authenticated(server):
    """A pipelined header after a failed <auth/> must not open an authenticated stream."""
    jid, _ = server.add_user()
    with RawStream(server) as r:
        r.tls_open()
        r.send(plain_auth(jid.split("@")[0], "wrong") + r.header() + BIND)
        got, _ = read_for(r, 3)
        assert b"<failure" in got, got
        assert b"success" not in got and b"bind1" not in got, got


def test_plaintext_pipelined_after_starttls_is_never_processed(server):
    """A STARTTLS command injection: a header and a valid login sent in the clear
    together with <starttls/>. None of it may be taken as said inside TLS."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.open()
        injected = r.header() + plain_auth(jid.split("@")[0], pw) + r.header() + BIND
        r.send(f"<starttls xmlns='{NS_TLS}'/>" + injected)
        got = read_until(r, rb"<proceed[^>]*/>")
        # Whatever the server does next, the injected login must not succeed,
        # neither in the clear nor inside a TLS session.
        assert b"success" not in got, got
        try:
            r.sock = insecure_ssl_context().wrap_socket(r.sock, server_hostname=server.domain)
        except (ssl.SSLError, OSError):
            return  # refused: the safe outcome
        tail, _ = read_for(r, 3)
        assert b"success" not in tail and b"bind1" not in tail, tail
        assert b"features" not in tail, f"the injected header opened a TLS stream: {tail!r}"


def test_whitespace_after_starttls_is_harmless(server):
    """Only non-whitespace plaintext is refused; a newline after <starttls/> is not."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.open()
        r.send(f"<starttls xmlns='{NS_TLS}'/>\n")
        read_until(r, rb"<proceed[^>]*/>")
        r.sock = insecure_ssl_context().wrap_socket(r.sock, server_hostname=server.domain)
        r.open()
        assert r.auth_plain(jid.split("@")[0], pw).tag == f"{{{NS_SASL}}}success", r.describe()
