"""XEP-0313 message archives with stanza ids (XEP-0359), RSM paging and
full-text search ({urn:xmpp:fulltext:0}fulltext)."""

import asyncio

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import close_all, login, run
from harness import RawStream, unique

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_SID = "urn:xmpp:sid:0"
NS_FWD = "urn:xmpp:forward:0"

pytestmark = pytest.mark.conclave_only


def results_box(c):
    box = []
    c.register_handler(
        Callback("test-mam", MatchXPath(f"{{jabber:client}}message/{{{NS_MAM}}}result"), box.append)
    )
    return box


async def mam_query(c, box, to=None, fields=None, rsm="", qid=None):
    """One query; returns (results, fin element)."""
    qid = qid or unique("q")
    form = ""
    if fields:
        form = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>"
        for k, v in fields.items():
            form += f"<field var='{k}'><value>{v}</value></field>"
        form += "</x>"
    res = await c.iq("set", f"<query xmlns='{NS_MAM}' queryid='{qid}'>{form}<set xmlns='{NS_RSM}'>{rsm}</set></query>", to=to, timeout=30)
    fin = res.xml.find(f"{{{NS_MAM}}}fin")
    mine = [m for m in box if m.xml.find(f"{{{NS_MAM}}}result").get("queryid") == qid]
    return mine, fin


def body_of(result_msg):
    m = result_msg.xml.find(f"{{{NS_MAM}}}result/{{{NS_FWD}}}forwarded/{{jabber:client}}message")
    b = m.find("{jabber:client}body")
    return None if b is None else b.text


def test_paging_over_10000_messages_and_fulltext(server_factory):
    srv = server_factory({"limits.max_offline_messages": 20000, "limits.session_queue": 20000})
    alice_jid, alice_pw = srv.add_user()
    bob_jid, _ = srv.add_user()
    n = 10_000
    with RawStream(srv) as r:
        r.login(alice_jid.split("@")[0], alice_pw, resource="bulk")
        batch = []
        for i in range(n):
            text = f"msg {i:05d}" + (" about the quarterly budget" if i == 4321 else "")
            batch.append(f"<message to='{bob_jid}' type='chat' id='m{i}'><body>{text}</body></message>")
        r.send("".join(batch))
        r.send("<iq type='get' id='done'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert r.wait_for(lambda e: e.get("id") == "done", timeout=120).get("type") == "result"

    async def scenario():
        alice = await login(srv, alice_jid, alice_pw)
        box = results_box(alice)
        try:
            bodies, ids, after = [], [], ""
            while True:
                rsm = "<max>100</max>" + (f"<after>{after}</after>" if after else "")
                res, fin = await mam_query(alice, box, fields={"with": bob_jid}, rsm=rsm)
                bodies += [body_of(m) for m in res]
                ids += [m.xml.find(f"{{{NS_MAM}}}result").get("id") for m in res]
                assert fin.find(f"{{{NS_RSM}}}set/{{{NS_RSM}}}count").text == str(n)
                if fin.get("complete") == "true":
                    break
                after = fin.find(f"{{{NS_RSM}}}set/{{{NS_RSM}}}last").text
            assert len(bodies) == n and len(set(ids)) == n
            assert [b[:9] for b in bodies] == [f"msg {i:05d}" for i in range(n)], "order or content differs"
            # the last page, by RSM <before/>
            res, fin = await mam_query(alice, box, rsm="<max>5</max><before/>")
            assert [body_of(m)[:9] for m in res] == [f"msg {i:05d}" for i in range(n - 5, n)]
            # full-text search finds the one message, case-insensitively
            res, fin = await mam_query(alice, box, fields={"{urn:xmpp:fulltext:0}fulltext": "Quarterly BUDGET"})
            assert [body_of(m) for m in res] == ["msg 04321 about the quarterly budget"]
            # an unknown RSM id is item-not-found
            from slixmpp.exceptions import IqError
            with pytest.raises(IqError) as e:
                await mam_query(alice, box, rsm="<after>no-such-id</after>")
            assert e.value.condition == "item-not-found"
        finally:
            await alice.close()

    run(scenario(), timeout=300)


def test_received_messages_carry_stanza_id_and_bob_finds_them(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        box = results_box(bob)
        try:
            import xml.etree.ElementTree as ET
            msg = alice.make_message(mto=bob_jid, mbody="archived hello", mtype="chat")
            msg.xml.append(ET.fromstring(f"<stanza-id xmlns='{NS_SID}' by='{bob_jid}' id='forged'/>"))
            msg.send()
            got = await bob.next_message()
            sids = [s for s in got.xml.findall(f"{{{NS_SID}}}stanza-id") if s.get("by") == bob_jid]
            assert len(sids) == 1 and sids[0].get("id") != "forged", "a forged stanza-id was kept"
            res, fin = await mam_query(bob, box, fields={"with": alice_jid})
            assert [m.xml.find(f"{{{NS_MAM}}}result").get("id") for m in res] == [sids[0].get("id")]
            assert body_of(res[0]) == "archived hello"
            # the form lists the full-text field
            form = await bob.iq("get", f"<query xmlns='{NS_MAM}'/>")
            vars_ = {f.get("var") for f in form.xml.iter("{jabber:x:data}field")}
            assert "{urn:xmpp:fulltext:0}fulltext" in vars_
            # someone else's archive is forbidden
            from slixmpp.exceptions import IqError
            with pytest.raises(IqError) as e:
                await alice.iq("set", f"<query xmlns='{NS_MAM}'/>", to=bob_jid)
            assert e.value.condition == "forbidden"
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_preferences_never_stops_archiving(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        box = results_box(alice)
        try:
            await alice.iq("set", f"<prefs xmlns='{NS_MAM}' default='never'><always/><never/></prefs>")
            p = await alice.iq("get", f"<prefs xmlns='{NS_MAM}'/>")
            assert p.xml.find(f"{{{NS_MAM}}}prefs").get("default") == "never"
            alice.send_message(mto=bob_jid, mbody="off the record", mtype="chat")
            await bob.next_message()
            res, _ = await mam_query(alice, box)
            assert not [m for m in res if body_of(m) == "off the record"]
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_encrypted_messages_archived_as_ciphertext_and_not_searchable(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        box = results_box(bob)
        try:
            import xml.etree.ElementTree as ET
            msg = alice.make_message(mto=bob_jid, mbody="I sent you an OMEMO encrypted message", mtype="chat")
            msg.xml.append(ET.fromstring(
                "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>AAAA</iv></header><payload>Y2lwaGVydGV4dA==</payload></encrypted>"
            ))
            msg.send()
            await bob.next_message()
            res, _ = await mam_query(bob, box, fields={"{urn:xmpp:fulltext:0}fulltext": "OMEMO"})
            assert res == [], "an encrypted message's fallback text was indexed"
            res, _ = await mam_query(bob, box, fields={"with": alice_jid})
            enc = res[0].xml.find(f"{{{NS_MAM}}}result/{{{NS_FWD}}}forwarded/{{jabber:client}}message/{{eu.siacs.conversations.axolotl}}encrypted")
            assert enc is not None and enc.find("{eu.siacs.conversations.axolotl}payload").text == "Y2lwaGVydGV4dA=="
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_room_archive(server):
    room = f"{unique('room')}@conference.{server.domain}"

    async def scenario():
        alice = await login(server, *server.add_user())
        bob = await login(server, *server.add_user())
        for c in (alice, bob):
            c.register_plugin("xep_0045")
        box = results_box(bob)
        try:
            await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=10)
            alice.send_message(mto=room, mbody="for the record", mtype="groupchat")
            await asyncio.sleep(0.3)
            await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=10, maxstanzas=0)
            bob.send_message(mto=room, mbody="noted", mtype="groupchat")
            got = await alice.next_message(pred=lambda m: m["body"] == "noted")
            sid = [s for s in got.xml.findall(f"{{{NS_SID}}}stanza-id") if s.get("by") == room]
            assert len(sid) == 1
            res, fin = await mam_query(bob, box, to=room)
            assert [body_of(m) for m in res] == ["for the record", "noted"]
            inner = res[0].xml.find(f"{{{NS_MAM}}}result/{{{NS_FWD}}}forwarded/{{jabber:client}}message")
            assert inner.get("from") == f"{room}/alice"
            assert res[1].xml.find(f"{{{NS_MAM}}}result").get("id") == sid[0].get("id")
        finally:
            await close_all(alice, bob)

    run(scenario())
