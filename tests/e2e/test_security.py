"""Isolation between accounts and stanza-semantics rules that prevent abuse."""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from clients import IqError, close_all, login, run
from harness import NS_STREAM, RawStream, stanza_error_condition, unique


async def roster_jids(c):
    iq = await c.iq("get", "<query xmlns='jabber:iq:roster'/>")
    return {i.get("jid"): i.get("subscription") for i in iq.xml.iter("{jabber:iq:roster}item")}


async def drain(c, seconds):
    """Collect every stanza-ish event for a while: messages and presences."""
    await asyncio.sleep(seconds)
    msgs = []
    while not c.messages.empty():
        msgs.append(c.messages.get_nowait())
    return msgs


def test_cannot_read_or_write_someone_elses_roster(server):
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        b = await login(server, b_jid, b_pw)
        try:
            secret = f"{unique('secret')}@{server.domain}"
            await a.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{secret}'/></query>")
            with pytest.raises(IqError) as ei:
                await b.iq("get", "<query xmlns='jabber:iq:roster'/>", to=a_jid)
            assert ei.value.condition in ("forbidden", "service-unavailable", "not-allowed"), ei.value.iq
            assert secret not in str(ei.value.iq)
            with pytest.raises(IqError):
                await b.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{b_jid}' name='evil'/></query>", to=a_jid)
            assert b_jid not in await roster_jids(a)
        finally:
            await close_all(a, b)

    run(scenario())


def test_spoofed_roster_push_ignored(server):
    """Roster pushes only come from the user's own account; a contact cannot inject one."""
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        b = await login(server, b_jid, b_pw)
        pushes = []
        a.add_event_handler("roster_update", lambda iq: pushes.append(iq))
        try:
            iq = b.Iq()
            iq["type"] = "set"
            iq["to"] = a.boundjid.full
            iq.append(ET.fromstring(f"<query xmlns='jabber:iq:roster'><item jid='{b_jid}' subscription='both'/></query>"))
            try:
                await iq.send(timeout=5)
            except Exception:  # error or timeout: either way it must not be applied
                pass
            # whatever reached alice's client, her server-side roster is untouched
            assert b_jid not in await roster_jids(a)
            for p in pushes:
                assert p["from"].bare in ("", a_jid), f"roster push accepted from {p['from']}"
        finally:
            await close_all(a, b)

    run(scenario())


def test_unsolicited_subscribed_is_ignored(server):
    """RFC 6121 3.1.5/3.1.6: 'subscribed' without a pending request does not create a subscription."""
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        b = await login(server, b_jid, b_pw)
        try:
            b.send_presence(pto=a_jid, ptype="subscribed")
            await b.ping_server()
            await a.ping_server()
            await asyncio.sleep(0.3)
            sub = (await roster_jids(a)).get(b_jid)
            assert sub in (None, "none"), f"unsolicited 'subscribed' gave alice subscription={sub!r}"
            # and b's presence changes do not leak to a
            a.presences.clear()
            b.send_presence(pshow="away", pstatus="secret status")
            await b.ping_server()
            await asyncio.sleep(0.5)
            leaked = [p for p in a.presences if p["from"].bare == b_jid and p["type"] != "subscribed"]
            assert not leaked, f"presence leaked without subscription: {leaked}"
        finally:
            await close_all(a, b)

    run(scenario())


def test_no_error_reply_to_error_stanzas(server):
    """RFC 6120 8.3.1: never answer an error stanza with an error (no bounce loops)."""
    a_jid, a_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        try:
            ghost = f"{unique('ghost')}@{server.domain}"
            m = a.make_message(mto=ghost, mbody="x", mtype="error")
            m["error"]["condition"] = "undefined-condition"
            m["error"]["type"] = "cancel"
            m.send()
            iq = a.Iq()
            iq["type"] = "result"
            iq["to"] = server.domain
            iq["id"] = "never-requested"
            iq.send()
            await a.ping_server()
            got = await drain(a, 1.0)
            assert not got, f"server answered an error/result stanza: {[str(x) for x in got]}"
        finally:
            await a.close()

    run(scenario())


def test_iq_with_invalid_type(server):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw)
        r.send(f"<iq type='bogus' id='t1' to='{server.domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = r.wait_for(lambda e: e.get("id") == "t1" or e.tag == f"{{{NS_STREAM}}}error")
        if el.tag == f"{{{NS_STREAM}}}error":
            return  # closing the stream is also an acceptable reaction
        assert el.get("type") == "error" and stanza_error_condition(el) == "bad-request", r.describe()


def test_iq_get_with_two_payloads(server):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw)
        r.send(
            f"<iq type='get' id='t2' to='{server.domain}'><ping xmlns='urn:xmpp:ping'/>"
            "<query xmlns='jabber:iq:version'/></iq>"
        )
        el = r.wait_for(lambda e: e.get("id") == "t2")
        assert el.get("type") == "error" and stanza_error_condition(el) == "bad-request", r.describe()


def test_unknown_top_level_element(server):
    """RFC 6120 4.9.3.25: an unknown first-level child -> unsupported-stanza-type."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw)
        r.try_send("<foo xmlns='jabber:client'/>")
        assert r.stream_error() == "unsupported-stanza-type", r.describe()


def test_recreated_account_does_not_inherit_data(server):
    """A removed account's offline messages, roster and vCard do not go to a new account of the same name."""
    a_jid, a_pw = server.add_user()
    name = unique("reuse")
    b_jid, b_pw = server.add_user(name)

    async def populate():
        b = await login(server, b_jid, b_pw)
        try:
            await b.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{a_jid}' name='old'/></query>")
            await b.iq("set", "<vCard xmlns='vcard-temp'><FN>Old Owner</FN></vCard>")
        finally:
            await b.close()
        a = await login(server, a_jid, a_pw)
        try:
            a.send_message(mto=b_jid, mbody="for the old owner", mtype="chat")  # stored offline
            await a.ping_server()
        finally:
            await a.close()
        # no initial presence: the offline message stays stored while the account is removed
        b = await login(server, b_jid, b_pw, presence=False)
        try:
            await b.iq("set", "<query xmlns='jabber:iq:register'><remove/></query>", to=server.domain)
        except Exception:
            pass  # the server may close the stream right after the result
        finally:
            await b.close()

    run(populate())
    b_jid2, b_pw2 = server.add_user(name)
    assert b_jid2 == b_jid

    async def check():
        b = await login(server, b_jid, b_pw2)
        try:
            roster = await roster_jids(b)
            assert a_jid not in roster, f"new account inherited roster: {roster}"
            try:
                iq = await b.iq("get", "<vCard xmlns='vcard-temp'/>")
                assert "Old Owner" not in str(iq), "new account inherited the vCard"
            except IqError:
                pass
            got = await drain(b, 1.0)
            bodies = [m["body"] for m in got if m["body"]]
            assert "for the old owner" not in bodies, f"offline message for the removed account delivered: {bodies}"
        finally:
            await b.close()

    run(check())
