"""XEP-0424 message retraction: the archives keep a tombstone instead of
the retracted message (one-to-one: both users' archives; rooms: the room's
archive and history), the text is no longer found by full-text search,
and a retraction by anyone but the author changes nothing."""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from clients import close_all, login, run
from harness import unique
from test_mam import NS_FWD, NS_MAM, NS_SID, mam_query, results_box

NS_RETRACT = "urn:xmpp:message-retract:1"

pytestmark = pytest.mark.conclave_only


def archived(results):
    """The archived <message/> elements of a MAM result list."""
    return [r.xml.find(f"{{{NS_MAM}}}result/{{{NS_FWD}}}forwarded/{{jabber:client}}message") for r in results]


def bodies(messages):
    return [m.findtext("{jabber:client}body") for m in messages]


async def searchable(c, box, text, to=None):
    res, fin = await mam_query(c, box, to=to, fields={"{urn:xmpp:fulltext:0}fulltext": text})
    return [b for b in bodies(archived(res)) if b]


async def wait_for(pred, what):
    for _ in range(100):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


def test_one_to_one_retraction_tombstones_both_archives(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    secret = f"the launch code is {unique('x')}"

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        for c in (alice, bob):
            c.register_plugin("xep_0424")
        boxes = {c: results_box(c) for c in (alice, bob)}
        retractions = {alice: [], bob: []}
        for c in (alice, bob):
            c.add_event_handler("message_retract", retractions[c].append)
        try:
            m = alice.make_message(mto=bob_jid, mbody=secret, mtype="chat")
            m["id"] = "m-1"
            m.xml.append(ET.fromstring(f"<origin-id xmlns='{NS_SID}' id='origin-1'/>"))
            m.send()
            await bob.next_message(pred=lambda m: m["body"] == secret)

            # bob forges a retraction of alice's message: nothing changes
            bob.plugin["xep_0424"].send_retraction(alice_jid, "origin-1")
            await wait_for(lambda: retractions[alice], "the forged retraction was not delivered")
            for c in (alice, bob):
                assert await searchable(c, boxes[c], "launch code") == [secret]

            # alice retracts it (by origin-id): delivered, then tombstoned
            alice.plugin["xep_0424"].send_retraction(bob_jid, "origin-1")
            await wait_for(lambda: len(retractions[bob]) == 1, "the retraction was not delivered")
            for c in (alice, bob):
                res, _ = await mam_query(c, boxes[c])
                msgs = archived(res)
                assert secret not in bodies(msgs), "the retracted text is still archived"
                tombs = [x for x in msgs if x.find(f"{{{NS_RETRACT}}}retracted") is not None]
                assert len(tombs) == 1, "no tombstone"
                t = tombs[0]
                assert t.find(f"{{{NS_RETRACT}}}retracted").get("id") == "origin-1"
                assert t.find(f"{{{NS_RETRACT}}}retracted").get("stamp")
                assert t.find(f"{{{NS_SID}}}origin-id").get("id") == "origin-1"
                assert t.get("from").split("/")[0] == alice_jid and t.get("to").split("/")[0] == bob_jid
                assert t.find("{jabber:client}body") is None
                # the retraction itself stays in the archive, for clients
                # that were offline (§6)
                assert any(x.find(f"{{{NS_RETRACT}}}retract") is not None for x in msgs)
                assert await searchable(c, boxes[c], "launch code") == []
            # the account advertises tombstones
            info = await alice.plugin["xep_0030"].get_info(jid=alice_jid, timeout=10)
            assert f"{NS_RETRACT}#tombstone" in info["disco_info"]["features"]
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_own_retraction_in_a_room_tombstones_the_room_archive(server):
    room = f"{unique('room')}@conference.{server.domain}"
    secret = f"posted by mistake {unique('y')}"

    async def scenario():
        alice = await login(server, *server.add_user())
        bob = await login(server, *server.add_user())
        for c in (alice, bob):
            c.register_plugin("xep_0045")
            c.register_plugin("xep_0424")
        box = results_box(bob)
        try:
            await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=10)
            await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=10, maxstanzas=0)
            alice.send_message(mto=room, mbody=secret, mtype="groupchat")
            got = await bob.next_message(pred=lambda m: m["body"] == secret)
            sid = [s.get("id") for s in got.xml.findall(f"{{{NS_SID}}}stanza-id") if s.get("by") == room][0]

            # bob retracts alice's message: broadcast, but nothing changes
            bob.plugin["xep_0424"].send_retraction(room, sid, mtype="groupchat")
            await alice.next_message(pred=lambda m: m["retract"]["id"] == sid)
            assert await searchable(bob, box, "mistake", to=room) == [secret]

            alice.plugin["xep_0424"].send_retraction(room, sid, mtype="groupchat")
            await bob.next_message(pred=lambda m: m["retract"]["id"] == sid and m["from"].resource == "alice")
            res, _ = await mam_query(bob, box, to=room)
            msgs = archived(res)
            assert secret not in bodies(msgs)
            tombs = [x for x in msgs if x.find(f"{{{NS_RETRACT}}}retracted") is not None]
            assert len(tombs) == 1 and tombs[0].get("from") == f"{room}/alice"
            assert await searchable(bob, box, "mistake", to=room) == []

            # a newcomer's history no longer has it
            carol = await login(server, *server.add_user())
            carol.register_plugin("xep_0045")
            try:
                await carol.plugin["xep_0045"].join_muc_wait(room, "carol", timeout=10)
                await asyncio.sleep(0.5)
                seen = []
                while not carol.messages.empty():
                    seen.append(carol.messages.get_nowait()["body"])
                assert secret not in seen
                assert seen, "history was not replayed at all"
            finally:
                await close_all(carol)
        finally:
            await close_all(alice, bob)

    run(scenario())
