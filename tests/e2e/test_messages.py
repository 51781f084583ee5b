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


def test_bare_jid_delivery_to_multiple_resources(server):
    """RFC 6121 8.5.2.1: a chat message to the bare JID reaches the non-negative-priority resource(s)."""
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        b1 = await login(server, bob_jid + "/one", bob_pw, presence=False)
        b2 = await login(server, bob_jid + "/two", bob_pw, presence=False)
        b1.send_presence(ppriority=5)
        b2.send_presence(ppriority=1)
        await b1.ping_server()
        await b2.ping_server()
        try:
            body = "to the bare jid " + unique("m")
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
            got1 = await b1.next_message(timeout=5)
            assert got1["body"] == body
            try:  # the lower-priority resource may or may not also get it (RFC allows both)
                got2 = await b2.next_message(timeout=1)
                assert got2["body"] == body
            except asyncio.TimeoutError:
                pass
            # full JID addressing reaches exactly that resource
            alice.send_message(mto=bob_jid + "/two", mbody="just two", mtype="chat")
            assert (await b2.next_message(timeout=5))["body"] == "just two"
            try:
                extra = await b1.next_message(timeout=1)
                raise AssertionError(f"/one got a message for /two: {extra}")
            except asyncio.TimeoutError:
                pass
        finally:
            await close_all(alice, b1, b2)

    run(scenario())


def test_negative_priority_gets_no_bare_jid_messages(server):
    """RFC 6121 8.5.2.1.1: resources with negative priority never get bare-JID messages; store offline."""
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid + "/neg", bob_pw, presence=False)
        bob.send_presence(ppriority=-1)
        await bob.ping_server()
        body = "store me " + unique("m")
        try:
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
            await alice.ping_server()
            try:
                m = await bob.next_message(timeout=1.5)
                raise AssertionError(f"negative-priority resource got a bare-JID message: {m}")
            except asyncio.TimeoutError:
                pass
        finally:
            await close_all(alice, bob)
        bob = await login(server, bob_jid + "/pos", bob_pw)
        try:
            assert (await bob.next_message(timeout=5))["body"] == body
        finally:
            await bob.close()

    run(scenario())


def test_subscription_request_to_offline_user_delivered_later(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        try:
            alice.send_presence(pto=bob_jid, ptype="subscribe")
            await alice.ping_server()
        finally:
            await alice.close()
        bob = await login(server, bob_jid, bob_pw)
        try:
            p = await bob.wait_presence(lambda p: p["type"] == "subscribe", timeout=5)
            assert p["from"].bare == alice_jid
        finally:
            await bob.close()

    run(scenario())


def test_presence_probe_on_login(server):
    """With a mutual subscription, logging in shows the contact's current presence (RFC 6121 4.3)."""
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        try:
            alice.send_presence(pto=bob_jid, ptype="subscribe")
            await bob.wait_presence(lambda p: p["type"] == "subscribe")
            bob.send_presence(pto=alice_jid, ptype="subscribed")
            bob.send_presence(pto=alice_jid, ptype="subscribe")
            await alice.wait_presence(lambda p: p["type"] == "subscribe")
            alice.send_presence(pto=bob_jid, ptype="subscribed")
            alice.send_presence(pshow="dnd", pstatus="busy")
            await alice.ping_server()
            await bob.ping_server()
        finally:
            await bob.close()
        bob = await login(server, bob_jid, bob_pw)
        try:
            p = await bob.wait_presence(lambda p: p["from"].bare == alice_jid and p["type"] != "unavailable")
            assert p["show"] == "dnd" and p["status"] == "busy", p
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_message_to_remote_domain_bounces(server):
    """No server-to-server: a message to another domain bounces instead of vanishing."""
    alice_jid, alice_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        try:
            alice.send_message(mto="someone@remote.example", mbody="hello out there", mtype="chat")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                m = await asyncio.wait_for(alice.messages.get(), deadline - loop.time())
                if m["type"] == "error":
                    assert m["error"]["condition"] in (
                        "remote-server-not-found",
                        "service-unavailable",
                        "remote-server-timeout",
                        "not-allowed",  # Prosody: "Communication with remote domains is not enabled"
                    ), m
                    break
        finally:
            await alice.close()

    run(scenario())
