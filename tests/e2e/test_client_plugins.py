"""The persistent-chat features driven through slixmpp's own XEP plugins,
as a client would use them: archives paged with xep_0313 and xep_0059,
carbons (xep_0280), blocking (xep_0191), corrections (xep_0308),
reactions (xep_0444), replies (xep_0461) and direct MUC invitations
(xep_0249). Each test checks what the other client receives and what the
server keeps (the archive, the block list, the room).

Retractions (xep_0424), stream management (xep_0198) and upload
(xep_0363) have their own files."""

import pytest
from slixmpp import JID

from clients import close_all, login, run, until
from harness import unique
from test_mam import results_box
from test_muc import NS_MUC_USER, configure, join, muc_login, room_jid

NS_FULLTEXT = "{urn:xmpp:fulltext:0}fulltext"

pytestmark = pytest.mark.conclave_only


async def plugin_login(server, jid, pw, *plugins, **kw):
    c = await login(server, jid, pw, **kw)
    for p in plugins:
        c.register_plugin(p)
    return c


def events(c, name):
    """Every `name` event the client raises, in order."""
    box = []
    c.add_event_handler(name, box.append)
    return box


async def settle(*clients):
    """Each client's ping is answered after everything the server queued
    for it before: in order, the senders first, this waits until what they
    sent has reached the others (or was dropped)."""
    for c in clients:
        await c.ping_server()


async def archive(c, **kw):
    """The archived messages (the forwarded stanzas), oldest first, paged
    by the plugin's iterator."""
    return [m["mam_result"]["forwarded"]["stanza"] async for m in c.plugin["xep_0313"].iterate(rsm={"max": 50}, **kw)]


def stanza_id(msg, by):
    ids = [s.get("id") for s in msg.xml.findall("{urn:xmpp:sid:0}stanza-id") if s.get("by") == by]
    assert len(ids) == 1, f"expected one stanza-id by {by}, got {ids}"
    return ids[0]


def test_mam_paging_filters_and_fulltext_through_the_plugin(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()
    carol_jid, carol_pw = server.add_user()
    n = 30

    def body(i):
        return f"note {i:02d}" + (" on the quarterly budget" if i == 17 else "")

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        carol = await login(server, carol_jid, carol_pw)
        bob = await plugin_login(server, bob_jid, bob_pw, "xep_0313")
        try:
            # 30 from alice with one from carol after every 8th; each waits
            # for its delivery, so bob's archive order is known.
            from_alice, everyone = [], []
            for i in range(n):
                m = alice.make_message(mto=bob_jid, mbody=body(i), mtype="chat")
                m["id"] = f"a{i}"
                m.send()
                got = await bob.next_message(pred=lambda m, i=i: m["id"] == f"a{i}")
                from_alice.append(stanza_id(got, bob_jid))
                everyone.append(from_alice[-1])
                if i % 8 == 7:
                    carol.send_message(mto=bob_jid, mbody=f"carol {i}", mtype="chat")
                    got = await bob.next_message(pred=lambda m, i=i: m["body"] == f"carol {i}")
                    everyone.append(stanza_id(got, bob_jid))
            assert len(everyone) == n + 3

            # forward paging with RSM pages of 7, filtered on alice
            mam = bob.plugin["xep_0313"]
            pages = []
            async for page in mam.retrieve(with_jid=JID(alice_jid), iterator=True, rsm={"max": 7}):
                fin = page["mam_fin"]
                results = page["mam"]["results"]
                pages.append(
                    (
                        [r["mam_result"]["id"] for r in results],
                        [r["mam_result"]["forwarded"]["stanza"]["body"] for r in results],
                        fin["rsm"]["first"],
                        fin["rsm"]["last"],
                        fin["rsm"]["count"],
                        fin["complete"],
                    )
                )
            assert [len(p[0]) for p in pages] == [7, 7, 7, 7, 2]
            assert [i for p in pages for i in p[0]] == from_alice
            assert [b for p in pages for b in p[1]] == [body(i) for i in range(n)]
            for ids, _, first, last, count, _ in pages:
                assert (first, last) == (ids[0], ids[-1])
                assert count == str(n)
            assert [p[5] for p in pages] == [""] * 4 + ["true"], "complete only on the last page"

            # no filter: carol's are there too, in delivery order
            assert [m["mam_result"]["id"] async for m in mam.iterate(rsm={"max": 10})] == everyone
            # the filter matches the bare JID of the other side
            carols = await archive(bob, with_jid=JID(carol_jid))
            assert [m["body"] for m in carols] == ["carol 7", "carol 15", "carol 23"]
            assert all(m["from"].bare == carol_jid for m in carols)

            # backwards from the end (RSM <before/>): newest first
            newest = [m["mam_result"]["id"] async for m in mam.iterate(with_jid=JID(alice_jid), reverse=True, rsm={"max": 4})]
            assert newest == from_alice[::-1]
            # paging backwards, the page that reaches the oldest is the complete one
            flags = []
            async for page in mam.retrieve(with_jid=JID(alice_jid), iterator=True, reverse=True, rsm={"max": 8}):
                flags.append((len(page["mam"]["results"]), page["mam_fin"]["complete"]))
            assert flags == [(8, ""), (8, ""), (8, ""), (6, "true")]
            # and a stop after a given number of messages
            some = [m["mam_result"]["id"] async for m in mam.iterate(with_jid=JID(alice_jid), rsm={"max": 5}, total=12)]
            assert some == from_alice[:12]

            # one page by the plugin's retrieve (no iterator): the first 3
            res = await mam.retrieve(with_jid=JID(alice_jid), rsm={"max": 3}, timeout=10)
            assert [r["mam_result"]["id"] for r in res["mam"]["results"]] == from_alice[:3]
            assert res["mam_fin"]["complete"] == ""

            # full text: the plugin's query stanza with the extra form
            # field the server's form lists
            fields = await mam.get_fields(timeout=10)
            assert NS_FULLTEXT in fields.get_fields()
            box = results_box(bob)
            q = bob.make_iq_set()
            qid = unique("ft")
            q["mam"]["queryid"] = qid
            q["mam"]["with"] = JID(alice_jid)
            q["mam"].set_custom_field(NS_FULLTEXT, "Quarterly BUDGET")
            q["mam"]["rsm"]["max"] = "10"
            fin = await q.send(timeout=10)
            found = [m for m in box if m["mam_result"]["queryid"] == qid]
            assert [m["mam_result"]["forwarded"]["stanza"]["body"] for m in found] == [body(17)]
            assert [m["mam_result"]["id"] for m in found] == [from_alice[17]]
            assert fin["mam_fin"]["complete"] == "true"
            assert fin["mam_fin"]["rsm"]["count"] == "1"
        finally:
            await close_all(alice, bob, carol)

    run(scenario(), timeout=120)


def test_carbons_enabled_by_the_plugin_on_two_resources(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        a = await plugin_login(server, alice_jid + "/A", alice_pw, "xep_0280")
        b = await plugin_login(server, alice_jid + "/B", alice_pw, "xep_0280")
        bob = await plugin_login(server, bob_jid, bob_pw, "xep_0280")  # never enables
        try:
            await a.plugin["xep_0280"].enable(timeout=10)
            await b.plugin["xep_0280"].enable(timeout=10)
            sent = {c: events(c, "carbon_sent") for c in (a, b, bob)}
            received = {c: events(c, "carbon_received") for c in (a, b, bob)}

            # A -> bob: bob gets it, B gets a sent copy, A none
            m = a.make_message(mto=bob_jid, mbody="from A", mtype="chat")
            m["id"] = "from-a-1"
            m.send()
            got = await bob.next_message()
            assert (got["body"], got["id"], got["from"]) == ("from A", "from-a-1", a.boundjid)
            await settle(bob, a, b)
            assert [len(sent[c]) for c in (a, b, bob)] == [0, 1, 0]
            copy = sent[b][0]
            assert copy["from"] == JID(alice_jid) and copy["to"] == b.boundjid
            inner = copy["carbon_sent"]
            assert (inner["body"], inner["id"], inner["from"], inner["to"]) == ("from A", "from-a-1", a.boundjid, JID(bob_jid))

            # bob answers A: A gets it, B a received copy, A no copy
            m = bob.make_message(mto=got["from"], mbody="to A", mtype="chat")
            m["id"] = "to-a-1"
            m.send()
            direct = await a.next_message()
            assert (direct["body"], direct["id"], direct["from"]) == ("to A", "to-a-1", bob.boundjid)
            await settle(bob, a, b)
            assert [len(received[c]) for c in (a, b, bob)] == [0, 1, 0]
            inner = received[b][0]["carbon_received"]
            assert (inner["body"], inner["id"], inner["from"], inner["to"]) == ("to A", "to-a-1", bob.boundjid, a.boundjid)
            assert not [m for m in list(b.messages._queue) if m["body"] == "to A"], "B got the message itself"

            # disabled through the plugin: no more copies for B
            await b.plugin["xep_0280"].disable(timeout=10)
            bob.send_message(mto=a.boundjid, mbody="to A again", mtype="chat")
            assert (await a.next_message())["body"] == "to A again"
            a.send_message(mto=bob_jid, mbody="from A again", mtype="chat")
            assert (await bob.next_message())["body"] == "from A again"
            await settle(bob, a, b)
            assert (len(sent[b]), len(received[b])) == (1, 1)
        finally:
            await close_all(a, b, bob)

    run(scenario())


def test_blocking_through_the_plugin(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await plugin_login(server, alice_jid + "/one", alice_pw, "xep_0191", "xep_0313")
        other = await plugin_login(server, alice_jid + "/two", alice_pw, "xep_0191")
        bob = await plugin_login(server, bob_jid, bob_pw, "xep_0313")
        pushed_block, pushed_unblock = events(other, "blocked"), events(other, "unblocked")
        bob_errors = events(bob, "message_error")
        alice_errors = events(alice, "message_error")
        try:
            # asking for the list makes this resource get pushes
            assert await other.plugin["xep_0191"].get_blocked_jids(timeout=10) == set()
            await alice.plugin["xep_0191"].block(JID(bob_jid), timeout=10)
            assert await alice.plugin["xep_0191"].get_blocked_jids(timeout=10) == {JID(bob_jid)}
            blocklist = await alice.plugin["xep_0191"].get_blocked(timeout=10)
            assert [i["jid"] for i in blocklist["blocklist"]["items"]] == [JID(bob_jid)]
            assert await until(lambda: pushed_block)
            assert [i["jid"] for i in pushed_block[0]["block"]["items"]] == [JID(bob_jid)]

            # bob's message is not delivered; bob learns only that alice is unavailable
            m = bob.make_message(mto=alice_jid, mbody="are you there", mtype="chat")
            m["id"] = "blocked-1"
            m.send()
            await settle(bob, alice, other)
            assert await until(lambda: bob_errors)
            err = bob_errors[0]
            assert (err["id"], err["from"], err["error"]["condition"]) == ("blocked-1", JID(alice_jid), "service-unavailable")
            for c in (alice, other):
                assert not [x for x in list(c.messages._queue) if x["body"] == "are you there"]
            # alice's message to bob is refused with <blocked/>
            m = alice.make_message(mto=bob_jid, mbody="nope", mtype="chat")
            m["id"] = "refused-1"
            m.send()
            assert await until(lambda: alice_errors)
            assert (alice_errors[0]["id"], alice_errors[0]["error"]["condition"]) == ("refused-1", "not-acceptable")
            assert alice_errors[0].xml.find("{jabber:client}error/{urn:xmpp:blocking:errors}blocked") is not None
            # neither message is in either archive
            for c in (alice, bob):
                assert [x["body"] for x in await archive(c)] == []

            # unblocked through the plugin: delivery resumes
            await alice.plugin["xep_0191"].unblock(JID(bob_jid), timeout=10)
            assert await alice.plugin["xep_0191"].get_blocked_jids(timeout=10) == set()
            assert await until(lambda: pushed_unblock)
            assert [i["jid"] for i in pushed_unblock[0]["unblock"]["items"]] == [JID(bob_jid)]
            m = bob.make_message(mto=alice_jid, mbody="and now?", mtype="chat")
            m["id"] = "after-1"
            m.send()
            # (alice's queue also holds the error echoing her refused message)
            got = await alice.next_message(pred=lambda m: m["type"] == "chat")
            assert (got["body"], got["id"], got["from"]) == ("and now?", "after-1", bob.boundjid)
            assert len(bob_errors) == 1
            assert [x["body"] for x in await archive(alice)] == ["and now?"]
        finally:
            await close_all(alice, other, bob)

    run(scenario())


def test_correction_through_the_plugin_is_delivered_and_archived(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await plugin_login(server, alice_jid, alice_pw, "xep_0308", "xep_0313")
        bob = await plugin_login(server, bob_jid, bob_pw, "xep_0308", "xep_0313")
        corrections = events(bob, "message_correction")
        try:
            original = alice.make_message(mto=bob_jid, mbody="teh meeting is at 10", mtype="chat")
            original.send()
            assert original["id"], "the plugin turns on message ids"
            got = await bob.next_message()
            assert (got["id"], got["body"]) == (original["id"], "teh meeting is at 10")
            assert not bob.plugin["xep_0308"].is_correction(got)

            fixed = alice.plugin["xep_0308"].correct_message(original, "the meeting is at 11")
            assert await until(lambda: corrections)
            c = corrections[0]
            assert bob.plugin["xep_0308"].is_correction(c)
            assert (c["replace"]["id"], c["body"], c["id"]) == (original["id"], "the meeting is at 11", fixed["id"])
            assert c["id"] != original["id"]
            assert c["from"] == alice.boundjid and c["type"] == "chat"

            # both archives keep the original and the correction, in order
            for who in (alice, bob):
                msgs = await archive(who, with_jid=JID(bob_jid if who is alice else alice_jid))
                assert [(m["id"], m["body"], m["replace"]["id"]) for m in msgs] == [
                    (original["id"], "teh meeting is at 10", ""),
                    (fixed["id"], "the meeting is at 11", original["id"]),
                ]
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_reactions_through_the_plugin_are_delivered_and_archived(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await plugin_login(server, alice_jid, alice_pw, "xep_0444", "xep_0313")
        bob = await plugin_login(server, bob_jid, bob_pw, "xep_0444", "xep_0313")
        reactions = events(alice, "reactions")
        try:
            m = alice.make_message(mto=bob_jid, mbody="lunch at noon?", mtype="chat")
            m["id"] = "lunch-1"
            m.send()
            assert (await bob.next_message())["id"] == "lunch-1"

            bob.plugin["xep_0444"].send_reactions(JID(alice_jid), "lunch-1", ["👍", "🍕"])
            assert await until(lambda: reactions)
            r = reactions[0]
            assert r["from"] == bob.boundjid
            assert r["reactions"]["id"] == "lunch-1"
            assert [x["value"] for x in r["reactions"]] == ["👍", "🍕"]
            # a new set replaces the old one (XEP-0444 §3.2): an empty set removes all
            bob.plugin["xep_0444"].send_reactions(JID(alice_jid), "lunch-1", [])
            assert await until(lambda: len(reactions) == 2)
            assert reactions[1]["reactions"]["id"] == "lunch-1" and list(reactions[1]["reactions"]) == []

            for who, peer in ((alice, bob_jid), (bob, alice_jid)):
                msgs = await archive(who, with_jid=JID(peer))
                assert [m["body"] for m in msgs] == ["lunch at noon?", "", ""]
                assert [(m["reactions"]["id"], [x["value"] for x in m["reactions"]]) for m in msgs[1:]] == [
                    ("lunch-1", ["👍", "🍕"]),
                    ("lunch-1", []),
                ]
                assert all(m["from"].bare == bob_jid for m in msgs[1:])
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_reactions_reach_the_other_devices_as_carbons(server):
    """A reaction is a body-less message of type normal (as the plugin sends
    it): the reacting user's other devices and the other user's other
    devices still see it live, as they see it in the archive."""
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        a1, a2 = [await plugin_login(server, f"{alice_jid}/{r}", alice_pw, "xep_0280", "xep_0444") for r in ("a1", "a2")]
        b1, b2 = [await plugin_login(server, f"{bob_jid}/{r}", bob_pw, "xep_0280", "xep_0444") for r in ("b1", "b2")]
        clients = (a1, a2, b1, b2)
        try:
            for c in clients:
                await c.plugin["xep_0280"].enable(timeout=10)
            m = a1.make_message(mto=bob_jid, mbody="ship it?", mtype="chat")
            m["id"] = "ship-1"
            m.send()
            got = await b1.next_message()
            await settle(a1, a2, b2)  # (a2's carbon of it is in)
            sent = {c: events(c, "carbon_sent") for c in clients}
            received = {c: events(c, "carbon_received") for c in clients}
            direct = {c: events(c, "reactions") for c in clients}
            # b1 reacts to the device that wrote (a full JID)
            b1.plugin["xep_0444"].send_reactions(got["from"], "ship-1", ["🚀"])
            await settle(b1, a1, a2, b2)
            assert [len(direct[c]) for c in clients] == [1, 0, 0, 0]
            assert [len(sent[c]) for c in clients] == [0, 0, 0, 1]
            assert [len(received[c]) for c in clients] == [0, 1, 0, 0]
            for copy in (sent[b2][0]["carbon_sent"], received[a2][0]["carbon_received"]):
                assert (copy["from"], copy["to"]) == (b1.boundjid, a1.boundjid)
                assert (copy["reactions"]["id"], [x["value"] for x in copy["reactions"]]) == ("ship-1", ["🚀"])
        finally:
            await close_all(*clients)

    run(scenario())


def test_reply_through_the_plugin_is_delivered_and_archived(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await plugin_login(server, alice_jid, alice_pw, "xep_0461", "xep_0313")
        bob = await plugin_login(server, bob_jid, bob_pw, "xep_0461", "xep_0313")
        replies = events(alice, "message_reply")
        try:
            m = alice.make_message(mto=bob_jid, mbody="who brings the cake?", mtype="chat")
            m["id"] = "cake-1"
            m.send()
            asked = await bob.next_message()

            bob.plugin["xep_0461"].send_reply(
                asked["from"], "cake-1", fallback=asked["body"], quoted_nick="alice",
                mto=JID(alice_jid), mbody="I do", mtype="chat",
            )
            assert await until(lambda: replies)
            r = replies[0]
            assert (r["reply"]["to"], r["reply"]["id"]) == (alice.boundjid, "cake-1")
            assert r["body"] == "> alice:\n> who brings the cake?\nI do"
            assert r["reply"].get_fallback_body() == "> alice:\n> who brings the cake?\n"
            assert r["reply"].strip_fallback_content() == "I do"

            for who, peer in ((alice, bob_jid), (bob, alice_jid)):
                msgs = await archive(who, with_jid=JID(peer))
                assert [m["body"] for m in msgs] == ["who brings the cake?", r["body"]]
                kept = msgs[1]
                assert (kept["reply"]["to"], kept["reply"]["id"]) == (alice.boundjid, "cake-1")
                assert kept["reply"].strip_fallback_content() == "I do"
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_direct_invitation_through_the_plugin_and_joining(server):
    room = room_jid(server)

    async def scenario():
        alice = await muc_login(server)
        alice.register_plugin("xep_0249")
        bob_jid, bob_pw = server.add_user()
        bob = await muc_login(server, bob_jid, bob_pw)
        bob.register_plugin("xep_0249")
        invites = events(bob, "groupchat_direct_invite")
        try:
            await join(alice, room, "alice")
            await configure(
                alice, room,
                **{"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3cret"},
            )
            alice.plugin["xep_0249"].send_invitation(JID(bob_jid), JID(room), password="s3cret", reason="standup")
            assert await until(lambda: invites)
            inv = invites[0]
            assert inv["from"] == alice.boundjid
            assert (inv["groupchat_invite"]["jid"], inv["groupchat_invite"]["password"], inv["groupchat_invite"]["reason"]) == (
                room, "s3cret", "standup",
            )
            # it is a direct invitation, not one mediated by the room
            assert inv.xml.find(f"{{{NS_MUC_USER}}}x") is None

            # bob joins with what the invitation carried; alice sees him
            await join(bob, inv["groupchat_invite"]["jid"], "bob", password=inv["groupchat_invite"]["password"])
            assert await alice.wait_presence(lambda p: p["from"] == JID(f"{room}/bob") and p["type"] == "available")
            assert "bob" in alice.plugin["xep_0045"].get_roster(room)
            bob.send_message(mto=room, mbody="here", mtype="groupchat")
            got = await alice.next_message(pred=lambda m: m["type"] == "groupchat" and m["body"] == "here")
            assert got["from"] == JID(f"{room}/bob")

            # an invitation to someone offline waits for them
            await close_all(bob)
            alice.plugin["xep_0249"].send_invitation(JID(bob_jid), JID(room), reason="later")
            await settle(alice)
            bob = await login(server, bob_jid, bob_pw, presence=False)
            bob.register_plugin("xep_0249")
            late = events(bob, "groupchat_direct_invite")
            bob.send_presence()
            assert await until(lambda: late)
            assert (late[0]["groupchat_invite"]["jid"], late[0]["groupchat_invite"]["reason"]) == (room, "later")
            assert late[0]["groupchat_invite"]["password"] == ""
            assert late[0]["delay"]["stamp"] is not None
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_correction_reaction_and_reply_in_a_room_through_the_plugins(server):
    room = room_jid(server)
    plugins = ("xep_0308", "xep_0444", "xep_0461", "xep_0313")

    async def scenario():
        alice = await muc_login(server)
        bob = await muc_login(server)
        for c in (alice, bob):
            for p in plugins:
                c.register_plugin(p)
        corrections, reactions, replies = events(bob, "message_correction"), events(alice, "reactions"), events(alice, "message_reply")
        try:
            await join(alice, room, "alice")
            await join(bob, room, "bob", maxstanzas=0)
            original = alice.make_message(mto=room, mbody="standup at 9", mtype="groupchat")
            original.send()
            got = await bob.next_message(pred=lambda m: m["type"] == "groupchat" and m["body"] == "standup at 9")
            assert got["id"] == original["id"]
            sid = stanza_id(got, room)

            # in a room, reactions and replies name the room's stanza-id
            # (one at a time, so that the archive's order is known)
            alice.plugin["xep_0308"].correct_message(original, "standup at 9:30")
            assert await until(lambda: corrections)
            r = bob.make_message(mto=room, mtype="groupchat")
            bob.plugin["xep_0444"].set_reactions(r, sid, ["☕"])
            r.send()
            assert await until(lambda: reactions)
            bob.plugin["xep_0461"].send_reply(
                JID(f"{room}/alice"), sid, mto=JID(room), mtype="groupchat", mbody="see you there"
            )
            assert await until(lambda: replies)
            await settle(bob, alice)
            c = [x for x in corrections if x["from"] == JID(f"{room}/alice")]
            assert [(x["replace"]["id"], x["body"]) for x in c] == [(original["id"], "standup at 9:30")]
            mine = [x for x in reactions if x["from"] == JID(f"{room}/bob")]
            assert [(x["reactions"]["id"], [v["value"] for v in x["reactions"]]) for x in mine] == [(sid, ["☕"])]
            assert [(x["reply"]["id"], x["reply"]["to"], x["body"]) for x in replies] == [
                (sid, JID(f"{room}/alice"), "see you there")
            ]

            # the room's archive has all four, from the right occupants
            msgs = await archive(bob, jid=JID(room))
            assert [(m["from"], m["body"]) for m in msgs] == [
                (JID(f"{room}/alice"), "standup at 9"),
                (JID(f"{room}/alice"), "standup at 9:30"),
                (JID(f"{room}/bob"), ""),
                (JID(f"{room}/bob"), "see you there"),
            ]
            assert msgs[1]["replace"]["id"] == original["id"]
            assert (msgs[2]["reactions"]["id"], [v["value"] for v in msgs[2]["reactions"]]) == (sid, ["☕"])
            assert (msgs[3]["reply"]["id"], msgs[3]["reply"]["to"]) == (sid, JID(f"{room}/alice"))
        finally:
            await close_all(alice, bob)

    run(scenario())
