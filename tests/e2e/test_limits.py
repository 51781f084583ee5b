"""Abuse limits: brute force, connection floods, idle unauthenticated streams."""

import asyncio
import socket
import ssl
import time

import pytest

from clients import login, run

from harness import NS_SASL, NS_STREAM, RawStream, StreamClosed, sasl_failure_condition, stream_error_condition


@pytest.mark.conclave_only
def test_auth_failures_per_minute(server_factory):
    srv = server_factory({"limits.auth_failures_per_minute": 3})
    jid, pw = srv.add_user()
    user = jid.split("@")[0]
    # Three failures, each on a new connection, are answered normally.
    for i in range(3):
        with RawStream(srv) as r:
            r.tls_open()
            res = r.auth_plain(user, f"wrong-{i}")
            assert res.tag == f"{{{NS_SASL}}}failure", r.describe()
            assert sasl_failure_condition(res) == "not-authorized", r.describe()
    # Beyond the limit, even the correct password must not get in.
    outcome = None
    with RawStream(srv) as r:
        try:
            r.tls_open()
            res = r.auth_plain(user, pw)
            if res.tag == f"{{{NS_SASL}}}success":
                outcome = "success"
            else:
                outcome = "failure:" + str(sasl_failure_condition(res))
        except (StreamClosed, OSError, ssl.SSLError):
            outcome = "closed"
    assert outcome in ("failure:temporary-auth-failure", "closed"), f"got {outcome}; want refusal"


@pytest.mark.conclave_only
def test_max_connections_per_ip(server_factory):
    srv = server_factory({"limits.max_connections_per_ip": 3})
    held = []
    try:
        for _ in range(3):
            r = RawStream(srv)
            r.open()  # accepted: stream features arrive
            held.append(r)
        # The 4th must be refused: closed, or <policy-violation/> without features.
        refused = None
        try:
            r = RawStream(srv)
            held.append(r)
            r.try_send(r.header())
            try:
                el = r.wait_for(lambda e: e.tag in (f"{{{NS_STREAM}}}features", f"{{{NS_STREAM}}}error"), timeout=5)
                if el.tag == f"{{{NS_STREAM}}}error":
                    refused = "error:" + str(stream_error_condition(el))
                else:
                    refused = None
            except StreamClosed:
                refused = "closed"
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, socket.timeout):
            refused = "closed"
        assert refused in ("closed", "error:policy-violation"), f"4th connection was accepted ({refused})"
        # Freeing a slot lets a new connection in.
        for r in held:
            r.close()
        held.clear()
        deadline = time.monotonic() + 5
        while True:
            try:
                with RawStream(srv) as r:
                    r.open()
                break
            except (StreamClosed, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        for r in held:
            r.close()


def test_unauthenticated_timeout(server_factory):
    srv = server_factory({"limits.unauthenticated_timeout_secs": 2})
    with RawStream(srv) as r:
        r.open()
        t0 = time.monotonic()
        cond = r.stream_error(timeout=10)
        elapsed = time.monotonic() - t0
        assert cond == "connection-timeout", r.describe()
        assert 1.0 <= elapsed <= 8, f"closed after {elapsed:.1f}s, want about 2s"
        r.wait_closed(5)
    # An authenticated session is not subject to this timeout.
    jid, pw = srv.add_user()
    with RawStream(srv) as r:
        r.login(jid.split("@")[0], pw)
        time.sleep(3.5)
        r.send("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert r.wait_for(lambda e: e.get("id") == "alive").get("type") == "result"


def test_unauthenticated_timeout_raw_tcp(server_factory):
    """A TCP connection that never even sends a stream header is closed too."""
    srv = server_factory({"limits.unauthenticated_timeout_secs": 2})
    s = socket.create_connection((srv.host, srv.starttls_port), timeout=10)
    try:
        t0 = time.monotonic()
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
        assert elapsed <= 8, f"connection still open after {elapsed:.1f}s"
    finally:
        s.close()


def test_unauthenticated_timeout_despite_keepalives(server_factory):
    """Whitespace keepalives must not keep an unauthenticated stream open forever (slowloris)."""
    srv = server_factory({"limits.unauthenticated_timeout_secs": 2})
    with RawStream(srv) as r:
        r.open()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:
            if not r.try_send(" "):
                break
            try:
                r.wait_closed(0.5)
                break
            except TimeoutError:
                pass
        assert r.closed or r.stream_ended, f"unauthenticated stream still open after 8s of keepalives; {r.describe()}"


@pytest.mark.conclave_only
def test_max_offline_messages(server_factory):
    srv = server_factory({"limits.max_offline_messages": 3})
    alice_jid, alice_pw = srv.add_user()
    bob_jid, bob_pw = srv.add_user()

    async def scenario():
        alice = await login(srv, alice_jid, alice_pw)
        try:
            for i in range(5):
                alice.send_message(mto=bob_jid, mbody=f"offline {i}", mtype="chat")
            await alice.ping_server()
            bounces = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while len(bounces) < 2 and loop.time() < deadline:
                try:
                    m = await asyncio.wait_for(alice.messages.get(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
                if m["type"] == "error":
                    bounces.append(m)
            assert len(bounces) == 2, f"want 2 bounces for messages over the quota, got {len(bounces)}"
            for m in bounces:
                assert m["error"]["condition"] == "service-unavailable", m
                assert m["body"] in ("offline 3", "offline 4", ""), m
        finally:
            await alice.close()
        bob = await login(srv, bob_jid, bob_pw)
        try:
            got = [(await bob.next_message())["body"] for _ in range(3)]
            assert got == ["offline 0", "offline 1", "offline 2"], got
        finally:
            await bob.close()

    run(scenario())
