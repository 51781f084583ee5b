"""XEP-0424 message retraction: the archives keep a tombstone instead of
the retracted message (one-to-one: both users' archives; rooms: the room's
archive and history), the text is no longer found by full-text search,
and a retraction by anyone but the author changes nothing."""

import asyncio
import sqlite3
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


def send_retraction(c, to, target, own_id, mtype="chat"):
    """A retraction as Converse sends it: its own id, the XEP-0428
    fallback body and a store hint (XEP-0424 §4)."""
    m = c.make_message(mto=to, mtype=mtype, mbody="/me retracted a previous message, but it's unsupported by your client.")
    m["id"] = own_id
    m.xml.append(ET.fromstring(f"<retract xmlns='{NS_RETRACT}' id='{target}'/>"))
    m.xml.append(ET.fromstring(f"<fallback xmlns='urn:xmpp:fallback:0' for='{NS_RETRACT}'/>"))
    m.xml.append(ET.fromstring("<store xmlns='urn:xmpp:hints'/>"))
    m.send()


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

            # alice retracts it (by origin-id, as XEP-0424 before 0.4.2
            # named it): delivered, then tombstoned
            send_retraction(alice, bob_jid, "origin-1", "retract-1")
            await wait_for(lambda: len(retractions[bob]) == 1, "the retraction was not delivered")
            for c in (alice, bob):
                res, _ = await mam_query(c, boxes[c])
                msgs = archived(res)
                assert secret not in bodies(msgs), "the retracted text is still archived"
                tombs = [x for x in msgs if x.find(f"{{{NS_RETRACT}}}retracted") is not None]
                assert len(tombs) == 1, "no tombstone"
                t = tombs[0]
                # 0.4.2 §5: the tombstone names the retraction, by its id
                assert t.find(f"{{{NS_RETRACT}}}retracted").get("id") == "retract-1"
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


NS_CORRECT = "urn:xmpp:message-correct:0"


def send_chat(c, to, body, own_id, mtype="chat", replaces=None):
    """A message as Converse sends it: origin-id equal to its id; a
    correction (XEP-0308) names the original by its id."""
    m = c.make_message(mto=to, mbody=body, mtype=mtype)
    m["id"] = own_id
    m.xml.append(ET.fromstring(f"<origin-id xmlns='{NS_SID}' id='{own_id}'/>"))
    if replaces:
        m.xml.append(ET.fromstring(f"<replace xmlns='{NS_CORRECT}' id='{replaces}'/>"))
    m.send()


async def plugin_history(server, user, pw, **kw):
    """The archive as a fresh session reads it through slixmpp's own
    XEP-0313 plugin (a new device, or a browser opened anew)."""
    c = await login(server, user + "/fresh-" + unique("r"), pw)
    c.register_plugin("xep_0313")
    try:
        return [m["mam_result"]["forwarded"]["stanza"].xml async for m in c.plugin["xep_0313"].iterate(rsm={"max": 50}, **kw)]
    finally:
        await close_all(c)


def stored_stanzas(server):
    """Every stanza the store keeps in its archive and offline tables,
    read straight from the database file."""
    db = sqlite3.connect(f"file:{server.data_dir / 'conclave.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT stanza FROM archive UNION ALL SELECT stanza FROM offline")]
    finally:
        db.close()


def tombstone_of(messages, own_id):
    found = [m for m in messages if m.get("id") == own_id and m.find(f"{{{NS_RETRACT}}}retracted") is not None]
    assert len(found) == 1, f"no single tombstone for {own_id}: {[ET.tostring(m) for m in messages]}"
    return found[0]


@pytest.mark.parametrize("names", ["correction", "original"])
def test_retracting_a_corrected_message_takes_the_whole_chain(server, names):
    """Converse's sequence: send, correct, retract. Whichever message of the
    chain the retraction names, neither text survives anywhere: both
    archives, the full-text index, the database."""
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    before, after = f"first draft {unique('pre')}", f"second draft {unique('post')}"

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        try:
            send_chat(alice, bob_jid, before, "m-1")
            await bob.next_message(pred=lambda m: m["body"] == before)
            send_chat(alice, bob_jid, after, "c-1", replaces="m-1")
            await bob.next_message(pred=lambda m: m["body"] == after)
            send_retraction(alice, bob_jid, "c-1" if names == "correction" else "m-1", "r-1")
            await bob.next_message(pred=lambda m: m["id"] == "r-1")
            # the same retraction again changes nothing
            send_retraction(alice, bob_jid, "c-1" if names == "correction" else "m-1", "r-2")
            await bob.next_message(pred=lambda m: m["id"] == "r-2")
        finally:
            await close_all(alice, bob)
        for jid, pw in ((bob_jid, bob_pw), (alice_jid, alice_pw)):
            msgs = await plugin_history(server, jid, pw)
            texts = [ET.tostring(m, encoding="unicode") for m in msgs]
            assert not any(before in t or after in t for t in texts), texts
            orig, fix = tombstone_of(msgs, "m-1"), tombstone_of(msgs, "c-1")
            for t in (orig, fix):
                r = t.find(f"{{{NS_RETRACT}}}retracted")
                assert r.get("id") == "r-1", ET.tostring(t)
                assert t.find(f"{{{NS_SID}}}origin-id") is not None
                assert t.find(f"{{{NS_SID}}}stanza-id") is not None
                assert t.get("from").split("/")[0] == alice_jid
            # the correction's tombstone still says what it corrected
            assert fix.find(f"{{{NS_CORRECT}}}replace").get("id") == "m-1"
            assert orig.find(f"{{{NS_CORRECT}}}replace") is None
            # both retractions stay archived, for clients that were offline
            assert {m.get("id") for m in msgs if m.find(f"{{{NS_RETRACT}}}retract") is not None} == {"r-1", "r-2"}
            c = await login(server, jid, pw)
            box = results_box(c)
            try:
                for word in (before.split()[-1], after.split()[-1], "draft"):
                    assert await searchable(c, box, word) == [], word
            finally:
                await close_all(c)
        kept = stored_stanzas(server)
        assert kept and not any(before in s or after in s for s in kept)

    run(scenario())


def test_a_chain_queued_for_an_offline_recipient_is_dropped(server):
    """bob is offline: the message and its correction wait in his offline
    queue. After the retraction he receives the retraction alone, and the
    store keeps neither text."""
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    before, after = f"queued {unique('pre')}", f"queued fix {unique('post')}"

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        try:
            send_chat(alice, bob_jid, before, "m-1")
            send_chat(alice, bob_jid, after, "c-1", replaces="m-1")
            send_chat(alice, bob_jid, "an unrelated note", "n-1")
            send_retraction(alice, bob_jid, "c-1", "r-1")
            # a round trip: everything alice sent before it was handled
            await alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=server.domain)
        finally:
            await close_all(alice)
        assert not any(before in s or after in s for s in stored_stanzas(server))
        bob = await login(server, bob_jid, bob_pw)
        try:
            got = [await bob.next_message() for _ in range(2)]
            assert [m["id"] for m in got] == ["n-1", "r-1"], [str(m) for m in got]
            await asyncio.sleep(0.3)
            assert bob.messages.empty()
        finally:
            await close_all(bob)

    run(scenario())


def test_a_retraction_of_someone_elses_correction_changes_nothing(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    text, fixed = f"mine {unique('a')}", f"mine too {unique('b')}"

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        try:
            send_chat(alice, bob_jid, text, "m-1")
            send_chat(alice, bob_jid, fixed, "c-1", replaces="m-1")
            await bob.next_message(pred=lambda m: m["body"] == fixed)
            # bob names alice's messages, in his own conversation with her
            send_retraction(bob, alice_jid, "c-1", "x-1")
            send_retraction(bob, alice_jid, "m-1", "x-2")
            await alice.next_message(pred=lambda m: m["id"] == "x-2")
        finally:
            await close_all(alice, bob)
        for jid, pw in ((bob_jid, bob_pw), (alice_jid, alice_pw)):
            msgs = await plugin_history(server, jid, pw)
            assert [m.findtext("{jabber:client}body") for m in msgs if m.get("id") in ("m-1", "c-1")] == [text, fixed]
            assert not any(m.find(f"{{{NS_RETRACT}}}retracted") is not None for m in msgs)

    run(scenario())


async def room_with(server, *names):
    room = f"{unique('room')}@conference.{server.domain}"
    clients = []
    for name in names:
        c = await login(server, *server.add_user())
        c.register_plugin("xep_0045")
        await c.plugin["xep_0045"].join_muc_wait(room, name, timeout=10, maxstanzas=0)
        clients.append(c)
    return room, clients


def room_sid(msg, room):
    return [s.get("id") for s in msg.xml.findall(f"{{{NS_SID}}}stanza-id") if s.get("by") == room][0]


@pytest.mark.parametrize("how", ["own-retraction", "moderation"])
def test_a_corrected_room_message_goes_whole(server, how):
    """In a room: alice posts, corrects, then retracts the correction by
    its room stanza-id (XEP-0424 §4 for groupchat); or the room's owner
    moderates the original (XEP-0425). The room archive, its search and
    a newcomer's history lose both texts."""
    before, after = f"room draft {unique('pre')}", f"room fix {unique('post')}"

    async def scenario():
        room, (owner, alice) = await room_with(server, "owner", "alice")
        try:
            send_chat(alice, room, before, "m-1", mtype="groupchat")
            orig = await owner.next_message(pred=lambda m: m["body"] == before)
            send_chat(alice, room, after, "c-1", mtype="groupchat", replaces="m-1")
            fix = await owner.next_message(pred=lambda m: m["body"] == after)
            if how == "own-retraction":
                send_retraction(alice, room, room_sid(fix, room), "r-1", mtype="groupchat")
                await owner.next_message(pred=lambda m: m["id"] == "r-1")
            else:
                await owner.iq(
                    "set",
                    f"<moderate xmlns='urn:xmpp:message-moderate:1' id='{room_sid(orig, room)}'>"
                    f"<retract xmlns='{NS_RETRACT}'/><reason>off topic</reason></moderate>",
                    to=room,
                )
            res = await plugin_history(server, *server.add_user(), jid=room)
            texts = [ET.tostring(m, encoding="unicode") for m in res]
            assert not any(before in t or after in t for t in texts), texts
            tombs = [m for m in res if m.find(f"{{{NS_RETRACT}}}retracted") is not None]
            assert len(tombs) == 2, texts
            assert all(t.get("from") == f"{room}/alice" for t in tombs)
            fix_tomb = next(t for t in tombs if t.get("id") == "c-1")
            assert fix_tomb.find(f"{{{NS_CORRECT}}}replace").get("id") == "m-1"
            assert all(t.find("{urn:xmpp:occupant-id:0}occupant-id") is not None for t in tombs)
            if how == "own-retraction":
                assert all(t.find(f"{{{NS_RETRACT}}}retracted").get("id") == "r-1" for t in tombs)
            else:
                announced = {t.find(f"{{{NS_RETRACT}}}retracted").get("id") for t in tombs}
                assert len(announced) == 1 and None not in announced
            box = results_box(owner)
            for word in ("draft", "fix"):
                assert await searchable(owner, box, word, to=room) == [], word
            # a newcomer's history has neither
            room2, (carol,) = room, [await login(server, *server.add_user())]
            carol.register_plugin("xep_0045")
            try:
                await carol.plugin["xep_0045"].join_muc_wait(room2, "carol", timeout=10)
                await asyncio.sleep(0.5)
                seen = []
                while not carol.messages.empty():
                    seen.append(carol.messages.get_nowait()["body"])
                assert before not in seen and after not in seen, seen
            finally:
                await close_all(carol)
            kept = stored_stanzas(server)
            assert not any(before in s or after in s for s in kept)
        finally:
            await close_all(owner, alice)

    run(scenario())
