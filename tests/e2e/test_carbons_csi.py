"""XEP-0280 Message Carbons and XEP-0352 Client State Indication."""

import asyncio

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import close_all, login, run

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FWD = "urn:xmpp:forward:0"

pytestmark = pytest.mark.conclave_only


def collect(c, xpath):
    box = []
    c.register_handler(Callback(f"test-{xpath}", MatchXPath(xpath), box.append))
    return box


async def until(pred, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


def test_carbons_copy_sent_and_received_chats(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        a1 = await login(server, alice_jid + "/one", alice_pw)
        a2 = await login(server, alice_jid + "/two", alice_pw)
        a3 = await login(server, alice_jid + "/three", alice_pw)  # never enables carbons
        bob = await login(server, bob_jid, bob_pw)
        try:
            for c in (a1, a2):
                await c.iq("set", f"<enable xmlns='{NS_CARBONS}'/>")
            rcv2 = collect(a2, f"{{jabber:client}}message/{{{NS_CARBONS}}}received")
            sent2 = collect(a2, f"{{jabber:client}}message/{{{NS_CARBONS}}}sent")
            any3 = collect(a3, f"{{jabber:client}}message/{{{NS_CARBONS}}}received")
            # bob -> alice/one: alice/two gets a received copy
            bob.send_message(mto=a1.boundjid.full, mbody="to one", mtype="chat")
            m = await a1.next_message()
            assert m["body"] == "to one"
            assert await until(lambda: rcv2)
            c = rcv2[0]
            assert c["from"] == alice_jid and c["to"] == a2.boundjid.full
            inner = c.xml.find(f"{{{NS_CARBONS}}}received/{{{NS_FWD}}}forwarded/{{jabber:client}}message")
            assert inner.find("{jabber:client}body").text == "to one"
            assert inner.get("from").startswith(bob_jid)
            # alice/one -> bob: alice/two gets a sent copy, not alice/one itself
            a1.send_message(mto=bob_jid, mbody="from one", mtype="chat")
            assert (await bob.next_message())["body"] == "from one"
            assert await until(lambda: sent2)
            inner = sent2[0].xml.find(f"{{{NS_CARBONS}}}sent/{{{NS_FWD}}}forwarded/{{jabber:client}}message")
            assert inner.find("{jabber:client}body").text == "from one"
            # <private/> with no-copy opts out
            msg = bob.make_message(mto=a1.boundjid.full, mbody="secret", mtype="chat")
            import xml.etree.ElementTree as ET
            msg.xml.append(ET.fromstring(f"<private xmlns='{NS_CARBONS}'/>"))
            msg.xml.append(ET.fromstring("<no-copy xmlns='urn:xmpp:hints'/>"))
            msg.send()
            assert (await a1.next_message())["body"] == "secret"
            await asyncio.sleep(0.5)
            assert len(rcv2) == 1, "a private message was carbon-copied"
            assert not any3, "a resource without carbons got copies"
            # after disable, no more copies
            await a2.iq("set", f"<disable xmlns='{NS_CARBONS}'/>")
            bob.send_message(mto=a1.boundjid.full, mbody="after disable", mtype="chat")
            await a1.next_message()
            await asyncio.sleep(0.5)
            assert len(rcv2) == 1
        finally:
            await close_all(a1, a2, a3, bob)

    run(scenario())


def test_csi_holds_presence_until_active_or_a_message(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        try:
            # mutual subscription so that bob's presence reaches alice
            alice.send_presence(pto=bob_jid, ptype="subscribe")
            await bob.wait_presence(lambda p: p["type"] == "subscribe")
            bob.send_presence(pto=alice_jid, ptype="subscribed")
            await alice.wait_presence(lambda p: p["from"].bare == bob_jid and p["type"] == "available")
            order = []
            alice.add_event_handler("presence", lambda p: order.append(("presence", p["status"])) if p["from"].bare == bob_jid else None)
            alice.add_event_handler("message", lambda m: order.append(("message", m["body"])))
            alice.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
            await asyncio.sleep(0.3)
            bob.send_presence(pstatus="busy")
            await asyncio.sleep(0.7)
            assert not [o for o in order if o == ("presence", "busy")], "presence was not held while inactive"
            # an important stanza flushes what was held, in order
            bob.send_message(mto=alice_jid, mbody="ping", mtype="chat")
            assert await until(lambda: ("message", "ping") in order)
            assert order.index(("presence", "busy")) < order.index(("message", "ping"))
            # held again, then released by <active/>
            bob.send_presence(pstatus="away now")
            await asyncio.sleep(0.7)
            assert ("presence", "away now") not in order
            alice.send_raw("<active xmlns='urn:xmpp:csi:0'/>")
            assert await until(lambda: ("presence", "away now") in order)
        finally:
            await close_all(alice, bob)

    run(scenario())
