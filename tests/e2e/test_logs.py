"""Secrets and message contents never reach the logs, even at the most verbose level."""

import base64
import secrets

from clients import close_all, login, run
from harness import RawStream


def test_logs_have_no_bodies_or_passwords(server_factory):
    srv = server_factory({"log.level": "trace"})
    marker_pw = "PwMarker" + secrets.token_hex(8)
    marker_body = "BodyMarker" + secrets.token_hex(8)
    marker_offline = "OfflineMarker" + secrets.token_hex(8)
    marker_bad_pw = "BadPwMarker" + secrets.token_hex(8)
    alice_jid, _ = srv.add_user(password=marker_pw)
    bob_jid, bob_pw = srv.add_user()
    carol_jid, _ = srv.add_user()  # stays offline

    async def scenario():
        # SCRAM login, then PLAIN login (the password itself crosses the wire)
        for mech in ("SCRAM-SHA-1", "PLAIN"):
            a = await login(srv, alice_jid, marker_pw, mech=mech)
            await a.close()
        alice = await login(srv, alice_jid, marker_pw)
        bob = await login(srv, bob_jid, bob_pw)
        try:
            alice.send_message(mto=bob_jid, mbody=marker_body, mtype="chat")
            msg = await bob.next_message()
            assert msg["body"] == marker_body
            alice.send_message(mto=carol_jid, mbody=marker_offline, mtype="chat")
            await alice.ping_server()
        finally:
            await close_all(alice, bob)

    run(scenario())
    # a failed login with a wrong password
    with RawStream(srv) as r:
        r.tls_open()
        r.auth_plain(alice_jid.split("@")[0], marker_bad_pw)

    log = srv.log_text()
    assert len(log) > 1000, f"suspiciously little log output at trace level ({len(log)} bytes)"
    user = alice_jid.split("@")[0]
    forbidden = {
        "password": marker_pw,
        "wrong password": marker_bad_pw,
        "message body": marker_body,
        "offline message body": marker_offline,
        "PLAIN payload (base64)": base64.b64encode(f"\0{user}\0{marker_pw}".encode()).decode(),
        "bad PLAIN payload (base64)": base64.b64encode(f"\0{user}\0{marker_bad_pw}".encode()).decode(),
    }
    leaks = {what: m for what, m in forbidden.items() if m in log}
    assert not leaks, f"secrets found in the log: {leaks}"
