"""Further RFC 6120/6121 behaviours that clients rely on."""

import asyncio
import base64

import pytest

from clients import IqError, close_all, login, run
from harness import NS_BIND, NS_SASL, NS_TLS, RawStream, sasl_failure_condition, stanza_error_condition, unique


def test_stream_features_sequence(server):
    """After TLS: no STARTTLS again; after SASL: bind, and no SASL again."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        feats = r.open()
        assert feats.find(f"{{{NS_TLS}}}starttls") is not None
        r.starttls()
        feats = r.open()
        assert feats.find(f"{{{NS_TLS}}}starttls") is None, "STARTTLS offered twice"
        assert r.mechanisms(), "no SASL mechanisms after TLS"
        assert r.auth_plain(jid.split("@")[0], pw).tag == f"{{{NS_SASL}}}success"
        feats = r.open()
        assert feats.find(f"{{{NS_BIND}}}bind") is not None, "no bind feature after SASL"
        assert feats.find(f"{{{NS_SASL}}}mechanisms") is None, "SASL offered after success"


def test_direct_tls_offers_no_starttls(server):
    with RawStream(server, direct_tls=True) as r:
        feats = r.open()
        assert feats.find(f"{{{NS_TLS}}}starttls") is None
        assert r.mechanisms()


def test_sasl_abort_then_retry(server):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.tls_open()
        first = base64.b64encode(f"n,,n={jid.split('@')[0]},r=abcdefghijklmnop".encode()).decode()
        r.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-1'>{first}</auth>")
        r.wait_for(lambda e: e.tag == f"{{{NS_SASL}}}challenge")
        r.send(f"<abort xmlns='{NS_SASL}'/>")
        fail = r.wait_for(lambda e: e.tag == f"{{{NS_SASL}}}failure")
        assert sasl_failure_condition(fail) == "aborted", r.describe()
        res = r.auth_plain(jid.split("@")[0], pw)
        assert res.tag == f"{{{NS_SASL}}}success", r.describe()


def test_bind_server_generated_and_invalid_resource(server):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.open()
        r.starttls()
        r.open()
        r.auth_plain(jid.split("@")[0], pw)
        r.open()
        r.send(f"<iq type='set' id='bad'><bind xmlns='{NS_BIND}'><resource>{'x' * 1100}</resource></bind></iq>")
        el = r.wait_for(lambda e: e.get("id") == "bad")
        if el.get("type") == "result":
            # RFC 6120 7.7.2.1 / 7.6.2: the server may replace an unacceptable resourcepart
            got = el.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid").text
            assert got.startswith(jid + "/") and "x" * 1100 not in got, got
            return
        assert el.get("type") == "error", r.describe()
        assert stanza_error_condition(el) in ("bad-request", "not-allowed"), r.describe()
        bound = r.bind(None)  # server-generated resource
        assert bound.startswith(jid + "/") and len(bound) > len(jid) + 1, bound


def test_jid_malformed(server):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw)
        r.send("<message to='a@b@c' id='jm' type='chat'><body>x</body></message>")
        el = r.wait_for(lambda e: e.get("id") == "jm")
        assert el.get("type") == "error" and stanza_error_condition(el) == "jid-malformed", r.describe()
        r.send(f"<iq to='{'x' * 1100}@{server.domain}' id='jm2' type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = r.wait_for(lambda e: e.get("id") == "jm2")
        assert el.get("type") == "error" and stanza_error_condition(el) == "jid-malformed", r.describe()


def test_message_without_to_goes_to_own_account(server):
    """RFC 6120 10.3: no 'to' means the sender's bare JID."""
    jid, pw = server.add_user()

    async def scenario():
        a = await login(server, jid + "/one", pw)
        try:
            msg = a.make_message(mto="", mbody="note to self", mtype="chat")
            del msg["to"]
            msg.send()
            got = await a.next_message(timeout=5)
            assert got["body"] == "note to self"
        finally:
            await a.close()

    run(scenario())


def test_iq_to_unavailable_full_jid(server):
    """RFC 6121 8.5.3.2.1: IQ to a full JID with no such resource -> service-unavailable."""
    a_jid, a_pw = server.add_user()
    b_jid, _ = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        try:
            with pytest.raises(IqError) as ei:
                await a.iq("get", "<query xmlns='jabber:iq:version'/>", to=b_jid + "/nowhere")
            assert ei.value.condition in ("service-unavailable", "recipient-unavailable", "item-not-found"), ei.value.iq
        finally:
            await a.close()

    run(scenario())


def test_iq_routed_between_users(server):
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        b = await login(server, b_jid, b_pw)
        try:
            # slixmpp answers jabber:iq:version itself (xep_0092)
            iq = await a.iq("get", "<query xmlns='jabber:iq:version'/>", to=b.boundjid.full)
            assert iq["from"] == b.boundjid.full
            assert iq.xml.find("{jabber:iq:version}query/{jabber:iq:version}name") is not None
        finally:
            await close_all(a, b)

    run(scenario())


def test_roster_push_to_other_resources(server):
    jid, pw = server.add_user()
    contact = f"{unique('c')}@{server.domain}"

    async def scenario():
        r1 = await login(server, jid + "/one", pw)
        r2 = await login(server, jid + "/two", pw)
        pushes = []
        r2.add_event_handler("roster_update", lambda iq: pushes.append(iq))
        try:
            await r2.iq("get", "<query xmlns='jabber:iq:roster'/>")  # r2 is now an interested resource
            await r1.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{contact}' name='C'/></query>")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not any(contact in str(p) for p in pushes):
                assert loop.time() < deadline, "no roster push reached the other resource"
                await asyncio.sleep(0.1)
        finally:
            await close_all(r1, r2)

    run(scenario())


def test_unavailable_broadcast_on_abrupt_disconnect(server):
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        b = await login(server, b_jid, b_pw)
        try:
            a.send_presence(pto=b_jid, ptype="subscribe")
            await b.wait_presence(lambda p: p["type"] == "subscribe")
            b.send_presence(pto=a_jid, ptype="subscribed")
            await a.wait_presence(lambda p: p["from"].bare == b_jid and p["type"] == "available")
            a.presences.clear()
            b.abort()  # TCP drop, no </stream:stream>, no unavailable presence
            p = await a.wait_presence(lambda p: p["from"].bare == b_jid and p["type"] == "unavailable", timeout=10)
            assert p["from"].resource in (b.boundjid.resource, ""), p
        finally:
            await close_all(a, b)

    run(scenario())


def test_unsubscribe_flow(server):
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def sub_state(c, jid):
        iq = await c.iq("get", "<query xmlns='jabber:iq:roster'/>")
        for item in iq.xml.iter("{jabber:iq:roster}item"):
            if item.get("jid") == jid:
                return item.get("subscription")
        return None

    async def wait_state(c, jid, want):
        for _ in range(50):
            if await sub_state(c, jid) == want:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{c.boundjid.bare}: {jid} is {await sub_state(c, jid)!r}, want {want!r}")

    async def scenario():
        a = await login(server, a_jid, a_pw)
        b = await login(server, b_jid, b_pw)
        try:
            a.send_presence(pto=b_jid, ptype="subscribe")
            await b.wait_presence(lambda p: p["type"] == "subscribe")
            b.send_presence(pto=a_jid, ptype="subscribed")
            await wait_state(a, b_jid, "to")
            await wait_state(b, a_jid, "from")
            a.send_presence(pto=b_jid, ptype="unsubscribe")
            await wait_state(a, b_jid, "none")
            await wait_state(b, a_jid, "none")
            # b's available presence is no longer sent to a; a gets unavailable from b
            await a.wait_presence(lambda p: p["from"].bare == b_jid and p["type"] == "unavailable")
        finally:
            await close_all(a, b)

    run(scenario())


def test_headline_and_error_messages_not_stored_offline(server):
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        try:
            a.send_message(mto=b_jid, mbody="headline", mtype="headline")
            a.send_message(mto=b_jid, mbody="normal", mtype="normal")
            await a.ping_server()
        finally:
            await a.close()
        b = await login(server, b_jid, b_pw)
        try:
            got = []
            try:
                while True:
                    got.append((await b.next_message(timeout=1.5))["body"])
            except asyncio.TimeoutError:
                pass
            assert "normal" in got, got
            assert "headline" not in got, f"headline message stored offline: {got}"
        finally:
            await b.close()

    run(scenario())
