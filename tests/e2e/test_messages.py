"""Message delivery online and offline (XEP-0160 / XEP-0203)."""

import asyncio
import datetime

from clients import close_all, login, run
from harness import unique

NS_DELAY = "urn:xmpp:delay"


def test_message_online(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    body = "hello " + unique("m")

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        try:
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
            msg = await bob.next_message()
            assert msg["body"] == body
            assert msg["from"].bare == alice_jid
            assert msg["from"].resource == alice.boundjid.resource, "from must be alice's full JID"
            assert msg["type"] == "chat"
            # reply to the full JID
            bob.send_message(mto=msg["from"], mbody="re: " + body, mtype="chat")
            reply = await alice.next_message()
            assert reply["body"] == "re: " + body
            assert reply["from"].bare == bob_jid
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_message_offline_delivered_with_delay(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    body = "while you were out " + unique("m")

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        try:
            before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
            await alice.ping_server()  # stanzas are processed in order: message stored
        finally:
            await alice.close()
        bob = await login(server, bob_jid, bob_pw)  # initial presence triggers delivery
        try:
            msg = await bob.next_message()
            assert msg["body"] == body
            assert msg["from"].bare == alice_jid
            delay = msg.xml.find(f"{{{NS_DELAY}}}delay")
            assert delay is not None, f"no XEP-0203 delay element: {msg}"
            stamp = datetime.datetime.fromisoformat(delay.get("stamp").replace("Z", "+00:00"))
            now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
            assert before <= stamp <= now, delay.get("stamp")
            # delivered once: nothing more on a second login
            await bob.close()
            bob = await login(server, bob_jid, bob_pw)
            try:
                again = await bob.next_message(timeout=1.5)
                raise AssertionError(f"offline message delivered twice: {again}")
            except asyncio.TimeoutError:
                pass
        finally:
            await bob.close()

    run(scenario())


def test_message_to_unknown_user_bounces(server):
    alice_jid, alice_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        try:
            alice.send_message(mto=f"{unique('ghost')}@{server.domain}", mbody="anyone?", mtype="chat")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while True:
                msg = await asyncio.wait_for(alice.messages.get(), deadline - loop.time())
                if msg["type"] == "error":
                    assert msg["error"]["condition"] == "service-unavailable", msg
                    break
        finally:
            await alice.close()

    run(scenario())
