"""Smoke test with another client people use from scripts: go-sendxmpp
(Debian's package, installed by scripts/install-test-deps.sh)."""

import shutil
import subprocess

import pytest

from clients import close_all, login, run
from harness import unique

pytestmark = [
    pytest.mark.conclave_only,
    pytest.mark.skipif(shutil.which("go-sendxmpp") is None, reason="go-sendxmpp is not installed"),
]


def sendxmpp(server, jid, pw, *args, message: str, direct_tls: bool):
    port = server.direct_tls_port if direct_tls else server.starttls_port
    cmd = ["go-sendxmpp", "-n", "-j", f"127.0.0.1:{port}", "-u", jid, "-p", pw, "--timeout", "10"]
    if direct_tls:
        cmd.append("-t")
    return subprocess.run(cmd + list(args), input=message.encode(), capture_output=True, timeout=30)


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_go_sendxmpp_chat_and_room(server, direct_tls):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    room = f"{unique('room')}@conference.{server.domain}"

    async def scenario():
        bob = await login(server, bob_jid, bob_pw)
        bob.register_plugin("xep_0045")
        try:
            await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=10)
            body = "from a script " + unique("m")
            r = await __import__("asyncio").to_thread(
                sendxmpp, server, alice_jid, alice_pw, bob_jid, message=body, direct_tls=direct_tls
            )
            assert r.returncode == 0, r.stderr.decode()
            m = await bob.next_message(pred=lambda m: m["body"] == body)
            assert m["from"].bare == alice_jid
            body2 = "to the room " + unique("m")
            r = await __import__("asyncio").to_thread(
                sendxmpp, server, alice_jid, alice_pw, "-c", room, message=body2, direct_tls=direct_tls
            )
            assert r.returncode == 0, r.stderr.decode()
            m = await bob.next_message(pred=lambda m: m["body"] == body2)
            assert m["from"].bare == room and m["type"] == "groupchat"
        finally:
            await close_all(bob)

    run(scenario())
