"""The conclave command line: user management and config example."""

import asyncio
import os
import subprocess
import tomllib

import pytest

from clients import LoginFailed, login, run
from harness import conclave_bin, unique

pytestmark = pytest.mark.conclave_only


@pytest.fixture
def offline(server_factory):
    """A configured (data dir, ports) but not running server, for CLI use."""
    return server_factory(start=False)


def test_help_exits_zero():
    r = subprocess.run([str(conclave_bin()), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for word in ("serve", "user", "config"):
        assert word in out, out


def test_config_example_is_toml(offline):
    r = offline.cli("config", "example")
    assert r.returncode == 0, r.stderr
    cfg = tomllib.loads(r.stdout)
    # the keys documented in docs/interface.md
    for section, keys in {
        "c2s": ["starttls_port", "direct_tls_port"],
        "http": ["port"],
        "limits": ["max_stanza_bytes", "max_connections_per_ip", "auth_failures_per_minute",
                   "unauthenticated_timeout_secs"],
        "registration": ["allow"],
        "turn": ["secret"],
        "log": ["level"],
    }.items():
        assert section in cfg, f"[{section}] missing from example"
        for k in keys:
            assert k in cfg[section], f"{section}.{k} missing from example"
    assert "hosts" in cfg and "data_dir" in cfg


def test_user_add_list_passwd_remove(offline):
    a, b = f"{unique('cli')}@localhost", f"{unique('cli')}@localhost"
    r = offline.cli("user", "add", a, input="pw-one\n")
    assert r.returncode == 0, r.stderr
    r = offline.cli("user", "add", b, input="pw-two\n")
    assert r.returncode == 0, r.stderr
    # duplicate
    r = offline.cli("user", "add", a, input="whatever\n")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "exists" in r.stderr.lower(), r.stderr
    # list: one bare JID per line
    r = offline.cli("user", "list")
    assert r.returncode == 0, r.stderr
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    assert sorted(lines) == sorted([a, b]), r.stdout
    r = offline.cli("user", "list", "--host", "localhost")
    assert r.returncode == 0 and sorted(r.stdout.split()) == sorted([a, b]), r
    # passwd, then remove
    r = offline.cli("user", "passwd", a, input="pw-three\n")
    assert r.returncode == 0, r.stderr
    r = offline.cli("user", "remove", b)
    assert r.returncode == 0, r.stderr
    r = offline.cli("user", "list")
    assert r.stdout.split() == [a], r.stdout
    # errors on unknown users
    r = offline.cli("user", "remove", b)
    assert r.returncode == 1, (r.returncode, r.stderr)
    r = offline.cli("user", "passwd", b, input="x\n")
    assert r.returncode == 1, (r.returncode, r.stderr)

    # the server sees what the CLI did
    offline.start()

    async def scenario():
        c = await login(offline, a, "pw-three")
        await c.close()
        for jid, pw in ((a, "pw-one"), (b, "pw-two")):
            with pytest.raises(LoginFailed):
                c = await login(offline, jid, pw, mech="PLAIN")
                await c.close()

    run(scenario())


def test_user_add_bulk(offline):
    """`user add-bulk`: many `jid password` lines; a bad line writes nothing; the accounts log in."""
    users = [(f"{unique('bulk')}@localhost", f"pw {i} with spaces") for i in range(5)]
    lines = "".join(f"{j} {p}\n" for j, p in users)
    # one malformed line (unknown host) anywhere: nothing is created
    r = offline.cli("user", "add-bulk", input=lines + "x@nohost.example pw\n")
    assert r.returncode == 1 and "line 6" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert offline.cli("user", "list").stdout.split() == [], "a rejected batch must write nothing"
    r = offline.cli("user", "add-bulk", input=lines + "\n")
    assert r.returncode == 0, r.stderr
    assert "created 5" in r.stdout, r.stdout
    assert sorted(offline.cli("user", "list").stdout.split()) == sorted(j for j, _ in users)
    # again: all exist, reported, exit 1, passwords unchanged
    r = offline.cli("user", "add-bulk", input=f"{users[0][0]} other\n")
    assert r.returncode == 1 and "already existed" in r.stderr, (r.stdout, r.stderr)
    offline.start()

    async def scenario():
        for jid, pw in (users[0], users[4]):
            c = await login(offline, jid, pw)
            await c.close()

    run(scenario())


def test_cli_while_server_running(server):
    """Users added and removed with the CLI while the server runs take effect at once."""
    jid, pw = server.add_user()

    async def ok():
        c = await login(server, jid, pw)
        await c.close()

    run(ok())
    r = server.cli("user", "passwd", jid, input="changed-pw\n")
    assert r.returncode == 0, r.stderr

    async def changed():
        c = await login(server, jid, "changed-pw")
        await c.close()

    run(changed())
    r = server.cli("user", "remove", jid)
    assert r.returncode == 0, r.stderr

    async def gone():
        with pytest.raises(LoginFailed):
            c = await login(server, jid, "changed-pw", mech="PLAIN")
            await c.close()

    run(gone())


def test_config_flag_position(tmp_path):
    """--config is global: before or after the subcommand."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "d"}"\nhosts = ["example.test"]\n')
    jid = f"{unique('cfg')}@example.test"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    r = subprocess.run([str(conclave_bin()), "--config", str(cfg), "user", "add", jid],
                       input="pw\n", capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(conclave_bin()), "user", "list", "--config", str(cfg)],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [jid], r.stdout


def test_cli_remove_deletes_user_data(server):
    """`user remove` then `user add` of the same JID starts from a clean slate."""
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def populate():
        b = await login(server, b_jid, b_pw)
        try:
            await b.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{a_jid}'/></query>")
            await b.iq("set", "<vCard xmlns='vcard-temp'><FN>Old Owner</FN></vCard>")
        finally:
            await b.close()
        a = await login(server, a_jid, a_pw)
        try:
            a.send_message(mto=b_jid, mbody="for the old owner", mtype="chat")
            await a.ping_server()
        finally:
            await a.close()

    run(populate())
    assert server.cli("user", "remove", b_jid).returncode == 0
    server.add_user(b_jid, "fresh-pw")

    async def check():
        b = await login(server, b_jid, "fresh-pw")
        try:
            iq = await b.iq("get", "<query xmlns='jabber:iq:roster'/>")
            assert a_jid not in str(iq), f"roster survived removal: {iq}"
            try:
                iq = await b.iq("get", "<vCard xmlns='vcard-temp'/>")
                assert "Old Owner" not in str(iq), "vCard survived removal"
            except Exception:
                pass
            try:
                m = await b.next_message(timeout=1.5)
                raise AssertionError(f"offline message survived removal: {m['body']}")
            except asyncio.TimeoutError:
                pass
        finally:
            await b.close()

    run(check())


def test_room_commands(server):
    import asyncio
    from clients import login, run

    owner_jid, owner_pw = server.add_user()
    room = f"{unique('cli')}@conference.{server.domain}"
    r = server.cli("room", "create", room, "--owner", owner_jid, "--name", "Ops")
    assert r.returncode == 0, r.stderr
    r = server.cli("room", "create", room, "--owner", owner_jid)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = server.cli("room", "create", "nope@example.org", "--owner", owner_jid)
    assert r.returncode == 1 and "not a group chat service" in r.stderr
    assert room in server.cli("room", "list").stdout.split()

    async def join_as_owner():
        c = await login(server, owner_jid, owner_pw)
        c.register_plugin("xep_0045")
        c.add_event_handler("groupchat_presence", c._on_presence)
        try:
            own, *_ = await c.plugin["xep_0045"].join_muc_wait(room, "boss", timeout=10)
            item = own.xml.find("{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item")
            assert item.get("affiliation") == "owner"
        finally:
            await c.close()

    run(join_as_owner())
    r = server.cli("room", "destroy", room)
    assert r.returncode == 0, r.stderr
    assert room not in server.cli("room", "list").stdout.split()
