"""Retention: one setting for archives, offline messages and uploads; rooms
may keep less; applied with a clock the test controls."""

import asyncio
import time

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import close_all, login, run
from harness import unique

NS_MAM = "urn:xmpp:mam:2"
NS_DISCO = "http://jabber.org/protocol/disco#info"
RETENTION_FT = "https://conclave.chat/protocol/retention"
ROOM_FIELD = "{https://conclave.chat/protocol/retention}room-archive-days"
DAY = 86400

pytestmark = pytest.mark.conclave_only


async def archive_bodies(c, to=None):
    box = []
    c.register_handler(Callback(f"t-{unique('h')}", MatchXPath(f"{{jabber:client}}message/{{{NS_MAM}}}result"), box.append))
    await c.iq("set", f"<query xmlns='{NS_MAM}'/>", to=to)
    return [
        m.xml.find(f".//{{jabber:client}}message/{{jabber:client}}body").text
        for m in box
        if m.xml.find(f".//{{jabber:client}}message/{{jabber:client}}body") is not None
    ]


async def set_room(c, room, **fields):
    xs = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    await c.iq(
        "set",
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>{xs}</x></query>",
        to=room,
    )


def test_retention_expires_archives_offline_and_room_overrides(server_factory):
    srv = server_factory({"retention.days": 7})
    alice_jid, alice_pw = srv.add_user()
    bob_jid, bob_pw = srv.add_user()
    carol_jid, carol_pw = srv.add_user()
    room = f"{unique('room')}@conference.{srv.domain}"

    async def setup():
        alice = await login(srv, alice_jid, alice_pw)
        bob = await login(srv, bob_jid, bob_pw)
        alice.register_plugin("xep_0045")
        try:
            info = await alice.iq("get", f"<query xmlns='{NS_DISCO}'/>", to=srv.domain)
            forms = [x for x in info.xml.iter("{jabber:x:data}x")]
            ret = [f for f in forms if any(v.text == RETENTION_FT for v in f.iter("{jabber:x:data}value"))]
            assert ret, "retention is not advertised in disco"
            fields = {f.get("var"): f.find("{jabber:x:data}value").text for f in ret[0].iter("{jabber:x:data}field")}
            assert fields["archive-days"] == "7" and fields["offline-days"] == "7" and fields["upload-days"] == "7"
            alice.send_message(mto=bob_jid, mbody="kept a week", mtype="chat")
            await bob.next_message()
            alice.send_message(mto=carol_jid, mbody="waiting for carol", mtype="chat")
            await alice.ping_server()
            await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=10)
            await set_room(alice, room, **{"muc#roomconfig_persistentroom": "1", ROOM_FIELD: "1"})
            with pytest.raises(IqError) as e:
                await set_room(alice, room, **{ROOM_FIELD: "30"})
            assert e.value.condition == "not-acceptable", "a room may not keep more than the operator allows"
            alice.send_message(mto=room, mbody="kept a day", mtype="groupchat")
            await alice.next_message(pred=lambda m: m["body"] == "kept a day")
            assert await archive_bodies(alice, to=room) == ["kept a day"]
        finally:
            await close_all(alice, bob)

    run(setup())
    now = int(time.time())
    r = srv.cli("retention", "apply", "--now", str(now + 2 * DAY))
    assert r.returncode == 0, r.stderr

    async def after_two_days():
        alice = await login(srv, alice_jid, alice_pw)
        try:
            assert await archive_bodies(alice, to=room) == [], "the room's own retention was not applied"
            assert await archive_bodies(alice) == ["kept a week", "waiting for carol"]
        finally:
            await alice.close()

    run(after_two_days())
    r = srv.cli("retention", "apply", "--now", str(now + 8 * DAY))
    assert r.returncode == 0, r.stderr
    # carol's one offline message is past a week now
    assert ", 1 offline messages," in r.stdout, r.stdout

    async def after_a_week():
        alice = await login(srv, alice_jid, alice_pw)
        carol = await login(srv, carol_jid, carol_pw)
        try:
            assert await archive_bodies(alice) == []
            await asyncio.sleep(0.5)
            assert not [m for m in list(carol.messages._queue) if m["body"] == "waiting for carol"], "offline message outlived retention"
        finally:
            await close_all(alice, carol)

    run(after_a_week())
