"""XEP-0191 blocking, enforced on routing in both directions."""

import asyncio

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import close_all, login, run

NS_BLOCK = "urn:xmpp:blocking"

pytestmark = pytest.mark.conclave_only


def test_block_and_unblock(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid + "/a", alice_pw)
        alice2 = await login(server, alice_jid + "/b", alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        pushes = []
        alice2.register_handler(Callback("test-push", MatchXPath(f"{{jabber:client}}iq/{{{NS_BLOCK}}}block"), pushes.append))
        errors = []
        alice.add_event_handler("message_error", errors.append)
        try:
            await alice2.iq("get", f"<blocklist xmlns='{NS_BLOCK}'/>")
            await alice.iq("set", f"<block xmlns='{NS_BLOCK}'><item jid='{bob_jid}'/></block>")
            res = await alice.iq("get", f"<blocklist xmlns='{NS_BLOCK}'/>")
            assert [i.get("jid") for i in res.xml.iter(f"{{{NS_BLOCK}}}item")] == [bob_jid]
            for _ in range(40):
                if pushes:
                    break
                await asyncio.sleep(0.05)
            assert pushes, "the other resource got no block push"
            # bob's messages and IQs do not reach alice
            bob.send_message(mto=alice_jid, mbody="can you hear me", mtype="chat")
            with pytest.raises(IqError) as e:
                await bob.iq("get", "<query xmlns='jabber:iq:version'/>", to=alice.boundjid.full)
            assert e.value.condition == "service-unavailable"
            # alice's message to bob is refused with <blocked/>
            alice.send_message(mto=bob_jid, mbody="no", mtype="chat")
            for _ in range(40):
                if errors:
                    break
                await asyncio.sleep(0.05)
            assert errors and errors[0]["error"]["condition"] == "not-acceptable"
            assert errors[0].xml.find("{jabber:client}error/{urn:xmpp:blocking:errors}blocked") is not None
            await asyncio.sleep(0.3)
            assert not [m for m in list(alice.messages._queue) if m["body"] == "can you hear me"]
            # nor do they wait offline for her
            await close_all(alice, alice2)
            bob.send_message(mto=alice_jid, mbody="offline attempt", mtype="chat")
            await bob.ping_server()
            alice = await login(server, alice_jid, alice_pw)
            await asyncio.sleep(0.5)
            assert not [m for m in list(alice.messages._queue) if m["body"] == "offline attempt"]
            # unblock everything: messages flow again
            await alice.iq("set", f"<unblock xmlns='{NS_BLOCK}'/>")
            bob.send_message(mto=alice_jid, mbody="hello again", mtype="chat")
            assert (await alice.next_message(pred=lambda m: m["body"] == "hello again"))["body"] == "hello again"
        finally:
            await close_all(alice, alice2, bob)

    run(scenario())


def test_spam_report_reaches_admins(server_factory):
    srv = server_factory(start=False)
    admin_jid, admin_pw = srv.add_user()
    srv.overrides["admins"] = [admin_jid]
    srv.start()
    alice_jid, alice_pw = srv.add_user()
    spammer_jid, _ = srv.add_user()

    async def scenario():
        admin = await login(srv, admin_jid, admin_pw)
        alice = await login(srv, alice_jid, alice_pw)
        try:
            await alice.iq(
                "set",
                f"<block xmlns='{NS_BLOCK}'><item jid='{spammer_jid}'><report xmlns='urn:xmpp:reporting:1' "
                "reason='urn:xmpp:reporting:spam'><text>buy now</text></report></item></block>",
            )
            m = await admin.next_message()
            assert alice_jid in m["body"] and spammer_jid in m["body"] and "spam" in m["body"]
            assert m.xml.find("{urn:xmpp:reporting:1}report") is not None
        finally:
            await close_all(admin, alice)

    run(scenario())
