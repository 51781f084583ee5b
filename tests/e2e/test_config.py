"""Configuration keys from docs/interface.md take effect."""

import asyncio
import base64
import hashlib
import os
import re
import socket
import ssl
import time

import pytest

import harness
from clients import Client, close_all, login, run
from harness import NS_SASL, NS_TLS, RawStream, insecure_ssl_context

NS_EXTDISCO = "urn:xmpp:extdisco:2"


def peer_cert_der(server, port, sni):
    with socket.create_connection((server.host, port), timeout=5) as s:
        with insecure_ssl_context().wrap_socket(s, server_hostname=sni) as t:
            return t.getpeercert(binary_form=True)


def verify_cert_for(der: bytes, server, port, hostname):
    """Trust exactly this certificate, then check it is valid for hostname (SAN)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
    with socket.create_connection((server.host, port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=hostname):
            pass


def test_certificate_valid_for_domain(server):
    der = peer_cert_der(server, server.direct_tls_port, server.domain)
    verify_cert_for(der, server, server.direct_tls_port, server.domain)
    verify_cert_for(der, server, server.http_port, server.domain)


@pytest.mark.conclave_only
def test_generated_certificate_persists_across_restart(server_factory):
    """Clients pin self-signed certificates: a restart must not change it."""
    srv = server_factory()
    before = hashlib.sha256(peer_cert_der(srv, srv.direct_tls_port, srv.domain)).hexdigest()
    srv.restart()
    after = hashlib.sha256(peer_cert_der(srv, srv.direct_tls_port, srv.domain)).hexdigest()
    assert before == after
    assert list((srv.data_dir).rglob("*.pem")), "no PEM files in data_dir"


@pytest.mark.conclave_only
def test_multiple_hosts(server_factory):
    srv = server_factory({"hosts": ["localhost", "example.test"]})
    a_jid, a_pw = srv.add_user("alice")
    b_jid, b_pw = srv.add_user("bob@example.test")
    der = peer_cert_der(srv, srv.direct_tls_port, "example.test")
    verify_cert_for(der, srv, srv.direct_tls_port, "example.test")
    r = srv.cli("user", "list", "--host", "example.test")
    assert r.stdout.split() == [b_jid], r.stdout

    async def scenario():
        a = await login(srv, a_jid, a_pw)
        b = Client(srv, b_jid, b_pw)
        await b.login()
        try:
            assert b.boundjid.domain == "example.test"
            a.send_message(mto=b_jid, mbody="cross-host", mtype="chat")
            assert (await b.next_message())["body"] == "cross-host"
        finally:
            await close_all(a, b)

    run(scenario())


@pytest.mark.conclave_only
@pytest.mark.parametrize("which", ["direct_tls_port", "starttls_port"])
def test_listener_disabled_with_port_zero(server_factory, which):
    keep = "starttls_port" if which == "direct_tls_port" else "direct_tls_port"
    srv = server_factory(start=False)
    closed_port = getattr(srv, which)
    srv.overrides[f"c2s.{which}"] = 0
    # readiness probe must not wait for the disabled port
    srv._ready = lambda: harness.port_open(getattr(srv, keep)) and harness.https_get(srv.http_port, "/health")[0] == 200
    srv.start()
    assert not harness.port_open(closed_port)
    assert harness.port_open(getattr(srv, keep))


@pytest.mark.conclave_only
def test_require_encryption_false(server_factory):
    srv = server_factory({"c2s.require_encryption": False})
    jid, pw = srv.add_user()
    with RawStream(srv) as r:
        feats = r.open()
        st = feats.find(f"{{{NS_TLS}}}starttls")
        assert st is not None and st.find(f"{{{NS_TLS}}}required") is None, r.describe()
        mechs = r.mechanisms()
        assert "PLAIN" not in mechs, f"PLAIN offered without TLS: {mechs}"
        assert any(m.startswith("SCRAM-") for m in mechs), mechs

    async def scenario():
        c = Client(srv, jid, pw)
        c.enable_starttls = False
        c.enable_plaintext = True
        c.plugin["feature_mechanisms"].unencrypted_scram = True
        c.plugin["feature_starttls"].plugin_end()  # do not upgrade
        await c.login()
        try:
            assert c.transport.get_extra_info("ssl_object") is None, "expected an unencrypted session"
            await c.ping_server()
        finally:
            await c.close()

    run(scenario())


@pytest.mark.conclave_only
def test_unencrypted_plain_refused_by_default(server_factory):
    """Without TLS, PLAIN is refused (invalid-mechanism) unless auth.allow_unencrypted_plain is on."""
    srv = server_factory({"c2s.require_encryption": False})
    jid, pw = srv.add_user()
    with RawStream(srv) as r:
        r.open()
        assert "PLAIN" not in r.mechanisms(), r.describe()
        res = r.auth_plain(jid.split("@")[0], pw)
        assert res.tag == f"{{{NS_SASL}}}failure", r.describe()
        assert res.find(f"{{{NS_SASL}}}invalid-mechanism") is not None, r.describe()


@pytest.mark.conclave_only
def test_allow_unencrypted_plain(server_factory):
    """The benchmark setting: PLAIN offered and accepted on a clear stream (tsung speaks only PLAIN)."""
    srv = server_factory({"c2s.require_encryption": False, "auth.allow_unencrypted_plain": True})
    jid, pw = srv.add_user()
    with RawStream(srv) as r:
        r.open()
        assert "PLAIN" in r.mechanisms(), r.describe()
        assert r.auth_plain(jid.split("@")[0], "wrong").tag == f"{{{NS_SASL}}}failure", r.describe()
    with RawStream(srv) as r:
        r.open()
        assert r.auth_plain(jid.split("@")[0], pw).tag == f"{{{NS_SASL}}}success", r.describe()
        r.open()
        assert r.bind("bench").startswith(jid), r.describe()
        assert not isinstance(r.sock, ssl.SSLSocket)


@pytest.mark.conclave_only
def test_scram_iterations(server_factory):
    srv = server_factory({"auth.scram_iterations": 4321})
    jid, _ = srv.add_user()
    user = jid.split("@")[0]
    with RawStream(srv) as r:
        r.tls_open()
        first = base64.b64encode(f"n,,n={user},r=clientnonce123456".encode()).decode()
        r.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
        ch = r.wait_for(lambda e: e.tag == f"{{{NS_SASL}}}challenge")
        server_first = base64.b64decode(ch.text).decode()
        m = re.search(r"(?:^|,)i=(\d+)", server_first)
        assert m and int(m.group(1)) == 4321, server_first
        assert re.search(r"(?:^|,)r=clientnonce123456", server_first), "server nonce must extend the client nonce"


def test_turn_ttl_host_port(server_factory):
    srv = server_factory(
        {"turn.secret": "s3cr3t", "turn.host": "turn.example.test", "turn.port": 3479, "turn.ttl_secs": 600}
    )
    user = srv.add_user()

    async def scenario():
        c = await login(srv, *user)
        try:
            t0 = int(time.time())
            iq = await c.iq("get", f"<services xmlns='{NS_EXTDISCO}'/>", to=srv.domain)
            turns = [s for s in iq.xml.iter(f"{{{NS_EXTDISCO}}}service") if s.get("type") == "turn"]
            assert turns
            for s in turns:
                assert s.get("host") == "turn.example.test", s.attrib
                assert s.get("port") == "3479", s.attrib
                expiry = int(s.get("username").split(":")[0])
                assert t0 + 600 - 5 <= expiry <= t0 + 600 + 5, (expiry, t0)
        finally:
            await c.close()

    run(scenario())


def _db_handles(srv) -> int:
    """Open file descriptors of the server on its SQLite database file."""
    db = str((srv.data_dir / "conclave.db").resolve())
    fd_dir = f"/proc/{srv.proc.pid}/fd"
    n = 0
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == db:
                n += 1
        except OSError:
            pass
    return n


@pytest.mark.conclave_only
def test_storage_connection_counts(server_factory):
    """storage.connections and storage.read_connections bound the store's
    connections, and one of each still serves concurrent logins and writes
    (nothing waits on a second connection while holding the first)."""
    srv = server_factory({"storage.connections": 1, "storage.read_connections": 1})
    users = [srv.add_user() for _ in range(16)]

    async def scenario():
        senders = await asyncio.gather(*(login(srv, j, p) for j, p in users[:8]))
        for i, s in enumerate(senders):
            s.send_message(mto=users[8 + i][0], mbody=f"offline {i}", mtype="chat")
        # Private XML writes from every sender at once.
        await asyncio.gather(*(
            s.iq("set", f"<query xmlns='jabber:iq:private'><n xmlns='urn:test:storage'>{i}</n></query>")
            for i, s in enumerate(senders)
        ))
        await close_all(*senders)
        receivers = await asyncio.gather(*(login(srv, j, p) for j, p in users[8:]))
        try:
            got = await asyncio.gather(*(r.next_message() for r in receivers))
            assert [m["body"] for m in got] == [f"offline {i}" for i in range(8)]
        finally:
            await close_all(*receivers)

    run(scenario())
    pid = srv.proc.pid
    # sqlx runs each pooled connection on a thread of its own.
    sqlx = sum(
        open(f"/proc/{pid}/task/{t}/comm").read().startswith("sqlx-sqlite")
        for t in os.listdir(f"/proc/{pid}/task")
    )
    assert sqlx == 1, sqlx
    # The readers: one kept. SQLite defers closing a connection's descriptor
    # while the process holds a lock on the file (a reader let go during
    # another's read), so one more is allowed only while a read lock is held.
    readers = _db_handles(srv) - sqlx
    if readers > 1:
        db_inode = os.stat(srv.data_dir / "conclave.db").st_ino
        held = [
            ln for ln in open("/proc/locks").read().splitlines()
            if f" {pid} " in ln and ln.split()[5].endswith(f":{db_inode}")
        ]
        assert readers == 2 and held, (readers, held)
    assert readers >= 1, readers


@pytest.mark.conclave_only
def test_storage_zero_connections_refused(offline_server):
    r = offline_server.cli("user", "list")
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "storage.connections" in r.stderr, r.stderr


@pytest.fixture
def offline_server(server_factory):
    return server_factory({"storage.connections": 0}, start=False)
