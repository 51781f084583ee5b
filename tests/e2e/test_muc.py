"""XEP-0045 group chat at conference.<host>, with occupant-id (XEP-0421)
and self-ping (XEP-0410), driven by slixmpp's xep_0045 plugin."""

import asyncio
import threading
import time
import collections

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import close_all, expect, login, run
from harness import NS_CLIENT, RawStream, unique

NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_OCC = "urn:xmpp:occupant-id:0"
NS_DELAY = "urn:xmpp:delay"
NS_DISCO = "http://jabber.org/protocol/disco#info"
NS_OWNER = "http://jabber.org/protocol/muc#owner"
NS_ADMIN = "http://jabber.org/protocol/muc#admin"

pytestmark = pytest.mark.conclave_only


def room_jid(server, name=None):
    return f"{name or unique('room')}@conference.{server.domain}"


async def muc_login(server, jid=None, pw=None, **kw):
    if jid is None:
        jid, pw = server.add_user()
    c = await login(server, jid, pw, **kw)
    c.register_plugin("xep_0045")
    # slixmpp's MUC plugin silences the generic presence event for room
    # JIDs after the first one; collect its own event instead.
    c.add_event_handler("groupchat_presence", c._on_presence)
    # Its invite event is also skipped for rooms it believes it is in
    # (even after a refused join), so match the stanza itself.
    c.invites = []
    c.register_handler(
        Callback(
            "test-invites",
            MatchXPath(f"{{jabber:client}}message/{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite"),
            c.invites.append,
        )
    )
    return c


async def join(c, room, nick, **kw):
    return await c.plugin["xep_0045"].join_muc_wait(room, nick, timeout=10, **kw)


async def refused_join(c, room, nick, password=None):
    """Sends a join and returns the error condition the room answers with.
    (Raw, because slixmpp's join helper can miss a quick refusal.)"""
    pw = f"<password>{password}</password>" if password else ""
    box = []
    c.register_handler(
        Callback(
            f"test-refusal-{nick}",
            MatchXPath("{jabber:client}presence"),
            lambda p: box.append(p) if p["type"] == "error" and p["from"] == f"{room}/{nick}" else None,
        )
    )
    c.send_raw(f"<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>{pw}</x></presence>")
    for _ in range(100):
        if box:
            return box[0]["error"]["condition"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no refusal for {nick} in {room}")


def statuses(stanza):
    x = stanza.xml.find(f"{{{NS_MUC_USER}}}x")
    return set() if x is None else {s.get("code") for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def occupant_id(stanza):
    e = stanza.xml.find(f"{{{NS_OCC}}}occupant-id")
    return None if e is None else e.get("id")


async def configure(c, room, **fields):
    xs = "".join(
        f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items()
    )
    await c.iq(
        "set",
        f"<query xmlns='{NS_OWNER}'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        f"{xs}</x></query>",
        to=room,
    )


async def groupchat_bodies(c, n, timeout=10):
    got = []
    for _ in range(n):
        m = await c.next_message(timeout=timeout, pred=lambda m: m["type"] == "groupchat")
        got.append(m)
    return got


def test_room_with_50_occupants_each_gets_every_message_once(server):
    room = room_jid(server)
    n = 50

    async def scenario():
        # Guests (SASL ANONYMOUS) need no accounts: meetings' audience.
        clients = await asyncio.gather(
            *(muc_login(server, server.guest_domain, "", presence=False) for _ in range(n))
        )
        try:
            for i, c in enumerate(clients):
                await join(c, room, f"guest{i:02d}", maxstanzas=0)
            senders = clients[:5]
            sent = []
            for i, c in enumerate(senders):
                for k in range(2):
                    body = f"m-{i}-{k}-" + unique("b")
                    sent.append(body)
                    c.send_message(mto=room, mbody=body, mtype="groupchat")
            results = await asyncio.gather(*(groupchat_bodies(c, len(sent), timeout=20) for c in clients))
            for c, msgs in zip(clients, results):
                counts = collections.Counter(m["body"] for m in msgs)
                assert set(counts) == set(sent), f"{c.boundjid}: missing {set(sent) - set(counts)}"
                assert all(v == 1 for v in counts.values()), f"duplicates: {counts}"
            # and nothing more arrives
            await asyncio.sleep(0.5)
            for c in clients:
                extra = [m for m in list(c.messages._queue) if m["type"] == "groupchat" and m["body"]]
                assert not extra, f"{c.boundjid} got extra {[m['body'] for m in extra]}"
        finally:
            await close_all(*clients)

    run(scenario(), timeout=120)


@pytest.mark.parametrize("kind", ["groupchat", "chat"])
def test_reader_that_stops_reading_gets_every_stanza_whole(server, kind):
    """A receiver that stops reading fills the server's socket, so writes go
    out in part and are finished later. Room messages are written in three
    parts (the body around the recipient's address), direct ones in one;
    every byte must arrive once, in order, over TLS (RawStream's STARTTLS).
    8 MB: more than the server's send buffer (4 MB at most by default) and
    a receive buffer that is never read from (so never grown) hold together."""
    room = room_jid(server)
    rjid, rpw = server.add_user()
    n = 80

    def body(i):
        return f"{i}:" + "x" * (100_000 + 37 * i)

    async def sender():
        s = await muc_login(server)
        try:
            if kind == "groupchat":
                await join(s, room, "sender")
            for i in range(n):
                s.send_message(mto=room if kind == "groupchat" else rjid, mbody=body(i), mtype=kind)
            await s.ping_server()
        finally:
            await s.close()

    with RawStream(server, timeout=30) as r:
        r.login(rjid.split("@")[0], rpw)
        r.send("<presence/>")

        def raw_join():
            r.send(
                f"<presence to='{room}/raw'><x xmlns='http://jabber.org/protocol/muc'>"
                "<history maxstanzas='0'/></x></presence>"
            )
            r.wait_for(
                lambda e: e.tag == f"{{{NS_CLIENT}}}presence"
                and e.get("from") == f"{room}/raw"
                and any(st.get("code") == "110" for st in e.iter(f"{{{NS_MUC_USER}}}status"))
            )

        # The reader pauses while the senders write (so the server's writes
        # go out in part), then reads: a reader that took nothing for
        # limits.send_stall_secs would be closed instead (test_backpressure).
        if kind == "groupchat":
            raw_join()
        sending = threading.Thread(target=run, args=(sender(),))
        sending.start()
        time.sleep(2)
        got = []
        while len(got) < n:
            el = r.wait_for(
                lambda e: e.tag == f"{{{NS_CLIENT}}}message"
                and e.get("type") == kind
                and e.find(f"{{{NS_CLIENT}}}body") is not None,
                timeout=30,
            )
            # The room writes each occupant's address into its copy.
            assert el.get("to") == (r.jid if kind == "groupchat" else rjid), el.attrib
            got.append(el.findtext(f"{{{NS_CLIENT}}}body"))
        assert [g.split(":")[0] for g in got] == [str(i) for i in range(n)]
        assert got == [body(i) for i in range(n)]
        assert r.parse_error is None, r.parse_error
        sending.join(timeout=30)
        assert not sending.is_alive()


def test_creation_join_presence_subject_and_occupant_id(server):
    room = room_jid(server)

    async def scenario():
        alice = await muc_login(server)
        bob = await muc_login(server)
        try:
            own, subject, occupants, history = await join(alice, room, "alice")
            assert {"110", "201"} <= statuses(own), statuses(own)
            item = own.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
            assert item.get("affiliation") == "owner" and item.get("role") == "moderator"
            alice_occ = occupant_id(own)
            assert alice_occ
            own_b, _, occupants_b, _ = await join(bob, room, "bob")
            assert "110" in statuses(own_b) and "201" not in statuses(own_b)
            # bob sees alice, and her occupant id is the same for everyone
            # bob sees alice, with the same occupant id everyone sees, and
            # (semi-anonymous by default) without her real JID
            seen = [p for p in bob.presences if p["from"].bare == room and p["from"].resource == "alice"]
            assert seen, "bob never saw alice's presence"
            for p in seen:
                assert occupant_id(p) == alice_occ
                it = p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
                assert it.get("jid") is None
            # subject change by an occupant, seen by both
            bob.plugin["xep_0045"].set_subject(room, "Lunch plans")
            await asyncio.sleep(0.3)
            # a message carries the sender's occupant id and unknown payloads pass through
            msg = alice.make_message(mto=room, mbody="hello room", mtype="groupchat")
            import xml.etree.ElementTree as ET
            msg.xml.append(ET.fromstring("<custom xmlns='urn:example:x' a='1'><inner>v</inner></custom>"))
            msg.send()
            got = await bob.next_message(pred=lambda m: m["body"] == "hello room")
            assert got["from"] == f"{room}/alice"
            assert occupant_id(got) == alice_occ
            c = got.xml.find("{urn:example:x}custom")
            assert c is not None and c.get("a") == "1" and c.find("{urn:example:x}inner").text == "v"
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_history_on_join(server):
    room = room_jid(server)

    async def scenario():
        alice = await muc_login(server)
        bob = await muc_login(server)
        try:
            await join(alice, room, "alice")
            for i in range(3):
                alice.send_message(mto=room, mbody=f"h{i}", mtype="groupchat")
            await groupchat_bodies(alice, 3)
            _, _, _, history = await join(bob, room, "bob", maxstanzas=2)
            bodies = [m["body"] for m in history]
            assert bodies == ["h1", "h2"], bodies
            assert all(m.xml.find(f"{{{NS_DELAY}}}delay") is not None for m in history)
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_moderation_kick_ban_voice_seen_by_others(server):
    room = room_jid(server)

    async def scenario():
        owner = await muc_login(server)
        bob = await muc_login(server)
        carol_jid, carol_pw = server.add_user()
        carol = await muc_login(server, carol_jid, carol_pw)
        dave = await muc_login(server)
        try:
            await join(owner, room, "owner")
            await join(bob, room, "bob")
            await join(carol, room, "carol")
            # kick bob: everyone sees 307
            await owner.plugin["xep_0045"].set_role(room, "bob", "none", reason="spam")
            for c in (owner, carol):
                p = await c.wait_presence(lambda p: p["from"] == f"{room}/bob" and p["type"] == "unavailable")
                assert "307" in statuses(p)
            p = await bob.wait_presence(lambda p: p["from"] == f"{room}/bob" and p["type"] == "unavailable")
            assert {"307", "110"} <= statuses(p)
            # ban carol: 301, and she cannot come back
            await owner.plugin["xep_0045"].set_affiliation(room, "outcast", jid=carol_jid)
            p = await owner.wait_presence(lambda p: p["from"] == f"{room}/carol" and p["type"] == "unavailable")
            assert "301" in statuses(p)
            assert await refused_join(carol, room, "carol2") == "forbidden"
            # moderated room: a newcomer is a visitor until given voice
            await configure(owner, room, **{"muc#roomconfig_moderatedroom": "1"})
            await join(dave, room, "dave")
            dave.send_message(mto=room, mbody="may I?", mtype="groupchat")
            await asyncio.sleep(0.5)
            assert not [m for m in list(owner.messages._queue) if m["body"] == "may I?"]
            await owner.plugin["xep_0045"].set_role(room, "dave", "participant")
            p = await owner.wait_presence(
                lambda p: p["from"] == f"{room}/dave"
                and p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item").get("role") == "participant"
            )
            dave.send_message(mto=room, mbody="now I may", mtype="groupchat")
            m = await owner.next_message(pred=lambda m: m["body"] == "now I may")
            assert m["from"] == f"{room}/dave"
            # a participant cannot kick
            with pytest.raises(IqError) as e:
                await dave.plugin["xep_0045"].set_role(room, "owner", "none")
            assert e.value.condition in ("forbidden", "not-allowed")
        finally:
            await close_all(owner, bob, carol, dave)

    run(scenario())


def test_password_members_only_and_invitation(server):
    room = room_jid(server)

    async def scenario():
        owner = await muc_login(server)
        bob_jid, bob_pw = server.add_user()
        bob = await muc_login(server, bob_jid, bob_pw)
        try:
            await join(owner, room, "owner")
            await configure(
                owner,
                room,
                **{"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3cret"},
            )
            assert await refused_join(bob, room, "bob") == "not-authorized"
            await join(bob, room, "bob", password="s3cret")
            bob.plugin["xep_0045"].leave_muc(room, "bob")
            await asyncio.sleep(0.3)
            await configure(
                owner,
                room,
                **{"muc#roomconfig_passwordprotectedroom": "0", "muc#roomconfig_membersonly": "1"},
            )
            assert await refused_join(bob, room, "bob") == "registration-required"
            # a mediated invitation from the owner makes bob a member
            owner.plugin["xep_0045"].invite(room, bob_jid, reason="join us")
            for _ in range(50):
                found = [m for m in bob.invites if m.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite") is not None]
                if found:
                    break
                await asyncio.sleep(0.1)
            assert found, "invitation not received"
            assert found[0]["from"] == room
            await join(bob, room, "bob")
        finally:
            await close_all(owner, bob)

    run(scenario())


def test_members_only_invitations_come_from_moderators_and_reach_a_full_jid(server):
    """In a members-only room a member may not invite (an invitation makes
    a member); the owner's invitation to a full JID reaches that very
    session although it never sent available presence (a Jitsi client
    waiting in a lobby does not), and makes it a member who gets in."""
    room = room_jid(server)

    async def scenario():
        owner = await muc_login(server)
        member_jid, member_pw = server.add_user()
        member = await muc_login(server, member_jid, member_pw)
        guest = await muc_login(server, server.guest_domain, "", presence=False)
        try:
            await join(owner, room, "owner")
            await join(member, room, "member")
            await owner.iq(
                "set",
                f"<query xmlns='{NS_ADMIN}'><item affiliation='member' jid='{member_jid}'/></query>",
                to=room,
            )
            await configure(owner, room, **{"muc#roomconfig_membersonly": "1"})
            assert await refused_join(guest, room, "guest") == "registration-required"
            invite = (
                f"<message to='{room}'><x xmlns='{NS_MUC_USER}'>"
                f"<invite to='{guest.boundjid.full}'/></x></message>"
            )
            refused = expect(
                member, "{jabber:client}message", lambda m: m["type"] == "error" and m["from"] == room
            )
            member.send_raw(invite)
            assert (await refused)["error"]["condition"] == "forbidden"
            invited = expect(guest, f"{{jabber:client}}message/{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite")
            owner.send_raw(invite)
            got = await invited
            assert got["from"] == room
            assert got.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite").get("from") == owner.boundjid.bare
            await join(guest, room, "guest")
        finally:
            await close_all(owner, member, guest)

    run(scenario())


def test_persistent_room_survives_restart(server_factory):
    srv = server_factory()
    room = room_jid(srv)
    alice_jid, alice_pw = srv.add_user()

    async def setup():
        alice = await muc_login(srv, alice_jid, alice_pw)
        try:
            await join(alice, room, "alice")
            await configure(
                alice,
                room,
                **{"muc#roomconfig_persistentroom": "1", "muc#roomconfig_roomname": "Team room"},
            )
            alice.plugin["xep_0045"].set_subject(room, "Quarterly plan")
            await asyncio.sleep(0.5)
        finally:
            await alice.close()

    run(setup())
    srv.stop()
    srv.start()

    async def check():
        alice = await muc_login(srv, alice_jid, alice_pw)
        try:
            info = await alice.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=room)
            q = info.xml.find(f"{{{NS_DISCO}}}query")
            assert q.find(f"{{{NS_DISCO}}}identity").get("name") == "Team room"
            feats = {f.get("var") for f in q.findall(f"{{{NS_DISCO}}}feature")}
            assert "muc_persistent" in feats and "http://jabber.org/protocol/muc" in feats
            own, subject, _, _ = await join(alice, room, "alice")
            assert subject["subject"] == "Quarterly plan"
            # still the owner after the restart
            item = own.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
            assert item.get("affiliation") == "owner"
            items = await alice.iq("get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=f"conference.{srv.domain}")
            jids = {i.get("jid") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")}
            assert room in jids
        finally:
            await alice.close()

    run(check())


def test_self_ping_nick_change_and_private_message(server):
    room = room_jid(server)

    async def scenario():
        alice = await muc_login(server)
        bob = await muc_login(server)
        try:
            await join(alice, room, "alice")
            await join(bob, room, "bob")
            # XEP-0410: the room answers a ping to one's own occupant JID
            await alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=f"{room}/alice")
            outsider = await muc_login(server)
            try:
                with pytest.raises(IqError) as e:
                    await outsider.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=f"{room}/alice")
                assert e.value.condition == "not-acceptable"
            finally:
                await outsider.close()
            # a private message arrives from the sender's occupant JID
            alice.send_message(mto=f"{room}/bob", mbody="psst", mtype="chat")
            m = await bob.next_message(pred=lambda m: m["body"] == "psst")
            assert m["from"] == f"{room}/alice"
            # nick change: 303 with the new nick, then the new presence
            alice.send_presence(pto=f"{room}/alicia")
            p = await bob.wait_presence(lambda p: p["from"] == f"{room}/alice" and p["type"] == "unavailable")
            assert "303" in statuses(p)
            assert p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item").get("nick") == "alicia"
            await bob.wait_presence(lambda p: p["from"] == f"{room}/alicia" and p["type"] != "unavailable")
            # nick in use
            assert await refused_join(await muc_login(server), room, "bob") == "conflict"
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_disconnect_leaves_the_room(server):
    room = room_jid(server)

    async def scenario():
        alice = await muc_login(server)
        bob = await muc_login(server)
        try:
            await join(alice, room, "alice")
            await join(bob, room, "bob")
            bob.abort()
            p = await alice.wait_presence(lambda p: p["from"] == f"{room}/bob" and p["type"] == "unavailable")
            assert p is not None
        finally:
            await close_all(alice)

    run(scenario())


def test_service_disco_and_destroy(server):
    room = room_jid(server)

    async def scenario():
        alice = await muc_login(server)
        bob = await muc_login(server)
        try:
            info = await alice.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=f"conference.{server.domain}")
            q = info.xml.find(f"{{{NS_DISCO}}}query")
            ident = q.find(f"{{{NS_DISCO}}}identity")
            assert (ident.get("category"), ident.get("type")) == ("conference", "text")
            feats = {f.get("var") for f in q.findall(f"{{{NS_DISCO}}}feature")}
            assert {"http://jabber.org/protocol/muc", NS_OCC} <= feats
            items = await alice.iq("get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=server.domain)
            jids = {i.get("jid") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")}
            assert f"conference.{server.domain}" in jids
            await join(alice, room, "alice")
            await join(bob, room, "bob")
            # a participant may not destroy
            with pytest.raises(IqError) as e:
                await bob.plugin["xep_0045"].destroy(room)
            assert e.value.condition == "forbidden"
            await alice.plugin["xep_0045"].destroy(room, reason="done")
            p = await bob.wait_presence(lambda p: p["from"] == f"{room}/bob" and p["type"] == "unavailable")
            assert p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}destroy") is not None
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_a_refused_destroy_leaves_an_empty_persistent_room(server):
    """Only the owner's destroy ends a room: a stranger's, refused with
    forbidden, must not make the server forget a persistent room that
    nobody is in at the moment."""
    room = room_jid(server)

    async def scenario():
        owner = await muc_login(server)
        stranger = await muc_login(server)
        try:
            await join(owner, room, "owner")
            await configure(owner, room, **{"muc#roomconfig_persistentroom": "1", "muc#roomconfig_roomname": "Kept"})
            left = owner.wait_presence(lambda p: p["from"] == f"{room}/owner" and p["type"] == "unavailable")
            owner.plugin["xep_0045"].leave_muc(room, "owner")
            await left
            with pytest.raises(IqError) as e:
                await stranger.iq("set", f"<query xmlns='{NS_OWNER}'><destroy/></query>", to=room)
            assert e.value.condition == "forbidden"
            info = await stranger.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=room)
            assert info.xml.find(f"{{{NS_DISCO}}}query/{{{NS_DISCO}}}identity").get("name") == "Kept"
        finally:
            await close_all(owner, stranger)

    run(scenario())


def test_each_conference_service_lists_its_own_rooms(server_factory):
    """With two hosts, conference.<host>'s disco#items lists the public
    rooms of that service only."""
    srv = server_factory({"hosts": ["localhost", "example.test"]})
    room = room_jid(srv)

    async def scenario():
        alice = await muc_login(srv)
        try:
            await join(alice, room, "alice")
            disco_items = "<query xmlns='http://jabber.org/protocol/disco#items'/>"

            async def listed(service):
                items = await alice.iq("get", disco_items, to=service)
                return {i.get("jid") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")}

            assert room in await listed(f"conference.{srv.domain}")
            assert room not in await listed("conference.example.test")
        finally:
            await close_all(alice)

    run(scenario())


def test_moderator_retracts_a_message_and_the_archive_keeps_a_tombstone(server):
    room = room_jid(server)
    NS_MAM = "urn:xmpp:mam:2"

    async def scenario():
        mod = await muc_login(server)
        bob = await muc_login(server)
        carol = await muc_login(server)
        for c in (mod, bob):
            c.register_plugin("xep_0425")
        retractions = []
        carol.register_handler(
            Callback("test-retract", MatchXPath("{jabber:client}message/{urn:xmpp:message-retract:1}retract"), retractions.append)
        )
        results = []
        carol.register_handler(
            Callback("test-mam-results", MatchXPath(f"{{jabber:client}}message/{{{NS_MAM}}}result"), results.append)
        )
        try:
            await join(mod, room, "mod")
            await join(bob, room, "bob")
            await join(carol, room, "carol")
            bob.send_message(mto=room, mbody="something regrettable", mtype="groupchat")
            m = await mod.next_message(pred=lambda m: m["body"] == "something regrettable")
            sid = [s.get("id") for s in m.xml.findall("{urn:xmpp:sid:0}stanza-id") if s.get("by") == room][0]
            # a participant may not moderate
            with pytest.raises(IqError) as e:
                await bob.plugin["xep_0425"].moderate(JID(room), sid, reason="mine")
            assert e.value.condition == "forbidden"
            await mod.plugin["xep_0425"].moderate(JID(room), sid, reason="off topic")
            for _ in range(50):
                if retractions:
                    break
                await asyncio.sleep(0.05)
            assert retractions, "occupants were not told"
            r = retractions[0].xml.find("{urn:xmpp:message-retract:1}retract")
            assert r.get("id") == sid
            assert r.find("{urn:xmpp:message-moderate:1}moderated").get("by") == f"{room}/mod"
            # the archive holds a tombstone, not the message
            await carol.iq("set", f"<query xmlns='{NS_MAM}' queryid='t'/>", to=room)
            stanzas = [x.xml.find(f".//{{{NS_MAM}}}result/{{urn:xmpp:forward:0}}forwarded/{{jabber:client}}message") for x in results]
            tomb = [x for x in stanzas if x.find("{urn:xmpp:message-retract:1}retracted") is not None]
            assert len(tomb) == 1 and tomb[0].find("{jabber:client}body") is None
            assert all(x.find("{jabber:client}body") is None or x.find("{jabber:client}body").text != "something regrettable" for x in stanzas)
            # and an unknown id is item-not-found
            with pytest.raises(IqError) as e:
                await mod.plugin["xep_0425"].moderate(JID(room), "no-such-id")
            assert e.value.condition == "item-not-found"
        finally:
            await close_all(mod, bob, carol)

    run(scenario())


def test_rooms_per_user_and_occupancies_per_session_are_capped(server_factory):
    """A public server caps what one account can make it hold: rooms a user
    created (muc.max_rooms_per_user) and rooms one session is in
    (muc.max_occupancies_per_session). Past either, a join is refused at
    once with the XEP-0045 / RFC 6120 condition, and leaving frees a place."""
    srv = server_factory({"muc.max_rooms_per_user": 3, "muc.max_occupancies_per_session": 4})

    async def scenario():
        alice = await muc_login(srv)
        bob = await muc_login(srv)
        try:
            mine = [room_jid(srv) for _ in range(3)]
            for r in mine:
                await join(alice, r, "alice")
            # a fourth new room: alice may not create it
            assert await refused_join(alice, room_jid(srv), "alice") == "not-allowed"
            # bob made one; alice may still join existing rooms up to 4
            theirs = room_jid(srv)
            await join(bob, theirs, "bob")
            await join(alice, theirs, "alice")
            other = room_jid(srv)
            await join(bob, other, "bob")
            assert await refused_join(alice, other, "alice") == "resource-constraint"
            # re-sending presence in a room she is in is not a new occupancy
            alice.send_presence(pto=f"{theirs}/alice", pstatus="still here")
            # leaving one frees a place
            alice.plugin["xep_0045"].leave_muc(theirs, "alice")
            await asyncio.sleep(0.3)
            await join(alice, other, "alice")
            # a temporary room that emptied no longer counts against its
            # creator: alice may create another
            alice.plugin["xep_0045"].leave_muc(mine[0], "alice")
            await asyncio.sleep(0.3)
            await join(alice, room_jid(srv), "alice")
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_iq_between_guest_occupants_as_in_a_two_person_meeting(server):
    """Jitsi's peer-to-peer mode: two guests in a meeting room send Jingle IQs
    to each other's occupant JIDs (XEP-0045 §7.2.x lets a room pass IQs between
    occupants). Each sees the other's occupant JID as the sender, the answer
    comes back to the asker with the same id, and an IQ to a nick that is not
    in the room is refused at once with item-not-found."""
    room = room_jid(server)
    jingle = (
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='p2p1' "
        "initiator='x'><content name='audio' creator='initiator'>"
        "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></content></jingle>"
    )

    async def scenario():
        alice = await muc_login(server, server.guest_domain, "")
        bob = await muc_login(server, server.guest_domain, "")
        try:
            await join(alice, room, "aaaa1111")
            await join(bob, room, "bbbb2222")
            seen = []

            def on_jingle(iq):
                seen.append(iq)
                iq.reply().send()

            bob.register_handler(
                Callback("test-jingle", MatchXPath("{jabber:client}iq/{urn:xmpp:jingle:1}jingle"), on_jingle)
            )
            res = await alice.iq("set", jingle, to=f"{room}/bbbb2222")
            assert res["type"] == "result"
            assert res["from"] == f"{room}/bbbb2222"
            assert len(seen) == 1
            got = seen[0]
            assert got["from"] == f"{room}/aaaa1111"
            j = got.xml.find("{urn:xmpp:jingle:1}jingle")
            assert j is not None and j.get("sid") == "p2p1" and j.get("action") == "session-initiate"
            assert j.find("{urn:xmpp:jingle:1}content") is not None
            with pytest.raises(IqError) as e:
                await alice.iq("set", jingle, to=f"{room}/nobody", timeout=3)
            assert e.value.iq["error"]["condition"] == "item-not-found"
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_room_made_non_anonymous_as_lib_jitsi_meet_does(server):
    """lib-jitsi-meet (ChatRoom.ts createNonAnonymousRoom), on status 201, asks
    for the owner form with an (odd) submit form inside the get, looks for the
    muc#roomconfig_whois field, and submits whois=anyone alone. From then on the
    others see its real JID in the muc#user item, which is how it recognises
    participants (occupants without one are ignored)."""
    room = room_jid(server)

    async def scenario():
        alice = await muc_login(server, server.guest_domain, "")
        bob = await muc_login(server, server.guest_domain, "")
        try:
            own, _, _, _ = await join(alice, room, "aaaa1111")
            assert "201" in statuses(own)
            form = await alice.iq(
                "get", f"<query xmlns='{NS_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>", to=room
            )
            fields = {
                f.get("var") for f in form.xml.iter("{jabber:x:data}field")
            }
            assert "muc#roomconfig_whois" in fields, fields
            await configure(alice, room, **{"muc#roomconfig_whois": "anyone"})
            await join(bob, room, "bbbb2222")
            seen = await bob.wait_presence(
                lambda p: p["from"] == f"{room}/aaaa1111"
                and p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item") is not None
                and p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item").get("jid")
            )
            item = seen.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
            assert item.get("jid") == str(alice.boundjid), item.attrib
        finally:
            await close_all(alice, bob)

    run(scenario())


NS_MAM = "urn:xmpp:mam:2"
NS_JITMEET = "http://jitsi.org/jitmeet"
NS_NICK = "http://jabber.org/protocol/nick"
NS_DATA = "jabber:x:data"
LOBBY_FIELD = "conclave#roomconfig_lobby"


def lobby_of(room):
    return room.replace("@conference.", "@lobby.")


def xep0115_ver(query):
    """XEP-0115 §5.1 over a disco#info <query/>, written here from the spec
    (identities as category/type/lang/name sorted, features sorted, then
    each extension form: FORM_TYPE, fields by var, values sorted)."""
    import base64
    import hashlib

    lang = "{http://www.w3.org/XML/1998/namespace}lang"
    ids = sorted(
        f"{i.get('category')}/{i.get('type') or ''}/{i.get(lang) or ''}/{i.get('name') or ''}"
        for i in query.findall(f"{{{NS_DISCO}}}identity")
    )
    s = "".join(i + "<" for i in ids)
    s += "".join(f + "<" for f in sorted(f.get("var") for f in query.findall(f"{{{NS_DISCO}}}feature")))
    forms = []
    for x in query.findall(f"{{{NS_DATA}}}x"):
        fields = {f.get("var"): sorted(v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")) for f in x.findall(f"{{{NS_DATA}}}field")}
        forms.append(fields)
    for fields in sorted(forms, key=lambda f: f.get("FORM_TYPE", [""])[0]):
        s += fields["FORM_TYPE"][0] + "<"
        for var in sorted(v for v in fields if v != "FORM_TYPE"):
            s += var + "<" + "".join(v + "<" for v in fields[var])
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def test_stock_slixmpp_finds_the_lobby_and_the_caps_ver_hashes_it(server, monkeypatch):
    """slixmpp exactly as shipped (its own TLS, certificate checked against
    the trust store pointed at the server's own): the host's disco#info
    names the lobby service as lib-jitsi-meet looks for it (identity
    component/lobbyrooms named lobby.<host>), the lobby service answers
    disco#info, and the caps ver in the stream features is the XEP-0115
    hash of the host's disco#info, every identity included."""
    cert = server.data_dir / "tls" / "cert.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    jid, pw = server.add_user()

    async def scenario():
        from clients import Client

        c = Client(server, jid, pw, tls="stock")
        vers = []
        c.register_handler(
            Callback(
                "test-caps-feature",
                MatchXPath("{http://etherx.jabber.org/streams}features/{http://jabber.org/protocol/caps}c"),
                lambda f: vers.append(f.xml.find("{http://jabber.org/protocol/caps}c").attrib),
            )
        )
        await c.login(timeout=10)
        try:
            assert vers, "no caps in the stream features"
            info = await c.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=server.domain)
            q = info.xml.find(f"{{{NS_DISCO}}}query")
            ids = {(i.get("category"), i.get("type"), i.get("name")) for i in q.findall(f"{{{NS_DISCO}}}identity")}
            assert ("component", "lobbyrooms", f"lobby.{server.domain}") in ids, ids
            assert ("server", "im", "Conclave") in ids, ids
            caps = vers[-1]
            assert caps["hash"] == "sha-1"
            assert caps["ver"] == xep0115_ver(q), (caps, ids)
            # the caps node answers the same
            node = f"{caps['node']}#{caps['ver']}"
            info = await c.iq("get", f"<query xmlns='{NS_DISCO}' node='{node}'/>", to=server.domain)
            assert xep0115_ver(info.xml.find(f"{{{NS_DISCO}}}query")) == caps["ver"]
            lobby = await c.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=f"lobby.{server.domain}")
            lq = lobby.xml.find(f"{{{NS_DISCO}}}query")
            assert lq.find(f"{{{NS_DISCO}}}identity").get("category") == "conference"
        finally:
            await c.close()

    run(scenario())


async def lobby_refusal(c, room, nick):
    """Joins `room` expecting a refusal; returns (condition, the lobby room
    its error names or None, its text)."""
    box = asyncio.get_running_loop().create_future()
    name = f"test-lobby-refusal-{nick}"

    def on(p):
        if p["type"] == "error" and p["from"] == f"{room}/{nick}" and not box.done():
            box.set_result(p)

    c.register_handler(Callback(name, MatchXPath("{jabber:client}presence"), on))
    try:
        c.send_raw(f"<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        p = await asyncio.wait_for(box, 10)
    finally:
        c.remove_handler(name)
    named = p.xml.find(f"{{jabber:client}}error/{{{NS_JITMEET}}}lobbyroom")
    return p["error"]["condition"], None if named is None else named.text, p["error"]["text"]


async def owner_form_fields(c, room):
    form = await c.iq("get", f"<query xmlns='{NS_OWNER}'/>", to=room)
    return {f.get("var") for f in form.xml.iter(f"{{{NS_DATA}}}field")}


def test_a_chat_room_has_a_lobby_only_when_its_owner_gives_it_one(server_factory):
    """Members-only alone keeps strangers out without a word of a lobby, and
    its lobby room may not be entered (not-allowed, with the text on which
    lib-jitsi-meet tries the main room). With conclave#roomconfig_lobby the
    refusal names the lobby; a stranger who already created as many rooms
    as allowed may still wait there (a lobby room is no one's creation);
    its chat is not archived (no stanza-id, no MAM); owners may not
    reconfigure it; and when the main room is destroyed the lobby goes too,
    with nowhere to go."""
    srv = server_factory({"muc.max_rooms_per_user": 1})
    room = room_jid(srv)
    lobby = lobby_of(room)

    async def scenario():
        owner = await muc_login(srv)
        stranger = await muc_login(srv, srv.guest_domain, "", presence=False)
        try:
            await join(owner, room, "owner")
            assert LOBBY_FIELD in await owner_form_fields(owner, room)
            await configure(owner, room, **{"muc#roomconfig_membersonly": "1"})
            cond, named, _ = await lobby_refusal(stranger, room, "stranger")
            assert (cond, named) == ("registration-required", None)
            cond, _, text = await lobby_refusal(stranger, lobby, "stranger")
            assert (cond, text) == ("not-allowed", "Room creation is restricted")

            await configure(owner, room, **{LOBBY_FIELD: "1"})
            info = await owner.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=room)
            fields = {f.get("var"): f.findtext(f"{{{NS_DATA}}}value") for f in info.xml.iter(f"{{{NS_DATA}}}field")}
            assert fields.get("muc#roominfo_lobbyroom") == lobby, fields
            cond, named, _ = await lobby_refusal(stranger, room, "stranger")
            assert (cond, named) == ("registration-required", lobby)

            # the stranger's one room allowed is taken; the lobby is still open to it
            await join(stranger, room_jid(srv), "mine")
            own, _, _, _ = await join(stranger, lobby, "stranger")
            item = own.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
            assert (item.get("affiliation"), item.get("role")) == ("none", "participant")
            own, _, _, _ = await join(owner, lobby, "owner")
            item = own.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
            assert (item.get("affiliation"), item.get("role")) == ("owner", "moderator")
            heard = expect(stranger, "{jabber:client}message", lambda m: m["body"] == "one moment please")
            owner.send_message(mto=lobby, mbody="one moment please", mtype="groupchat")
            m = await heard
            assert m.xml.find("{urn:xmpp:sid:0}stanza-id") is None, "a lobby message was archived"
            with pytest.raises(IqError) as e:
                await owner.iq("set", f"<query xmlns='{NS_MAM}'/>", to=lobby)
            assert e.value.condition == "service-unavailable"
            info = await owner.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=lobby)
            feats = {f.get("var") for f in info.xml.iter(f"{{{NS_DISCO}}}feature")}
            assert NS_MAM not in feats and "muc_hidden" in feats and "muc_temporary" in feats, feats
            with pytest.raises(IqError) as e:
                await owner.iq("get", f"<query xmlns='{NS_OWNER}'/>", to=lobby)
            assert e.value.condition == "not-allowed"

            # the main room is destroyed: so is the lobby, with no venue
            gone = expect(
                stranger,
                f"{{jabber:client}}presence/{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}destroy",
                lambda p: p["from"] == f"{lobby}/stranger",
            )
            await owner.iq("set", f"<query xmlns='{NS_OWNER}'><destroy/></query>", to=room)
            p = await gone
            assert p.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}destroy").get("jid") is None
            cond, _, _ = await lobby_refusal(stranger, lobby, "again")
            assert cond == "not-allowed"
        finally:
            await close_all(owner, stranger)

    run(scenario())


def test_without_the_lobby_service_no_room_names_one(server_factory):
    """[muc] lobby = false: the host names no lobby service, its domain is
    not served, and a room with the lobby option names none."""
    srv = server_factory({"muc.lobby": False})
    room = room_jid(srv)

    async def scenario():
        owner = await muc_login(srv)
        stranger = await muc_login(srv, srv.guest_domain, "", presence=False)
        try:
            info = await owner.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=srv.domain)
            types = {i.get("type") for i in info.xml.iter(f"{{{NS_DISCO}}}identity")}
            assert "lobbyrooms" not in types, types
            items = await owner.iq("get", "<query xmlns='http://jabber.org/protocol/disco#items'/>", to=srv.domain)
            assert f"lobby.{srv.domain}" not in {i.get("jid") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")}
            await join(owner, room, "owner")
            assert LOBBY_FIELD not in await owner_form_fields(owner, room)
            await configure(owner, room, **{"muc#roomconfig_membersonly": "1", LOBBY_FIELD: "1"})
            cond, named, _ = await lobby_refusal(stranger, room, "stranger")
            assert (cond, named) == ("registration-required", None)
            info = await owner.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=room)
            assert "muc#roominfo_lobbyroom" not in {f.get("var") for f in info.xml.iter(f"{{{NS_DATA}}}field")}
        finally:
            await close_all(owner, stranger)

    run(scenario())
