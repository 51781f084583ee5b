"""XEP-0163 PEP (XEP-0060 pubsub on every account) with publish-options,
access models, +notify notifications and the last item on presence;
XEP-0223 private nodes, XEP-0402 bookmarks with #compat to XEP-0048/0049,
XEP-0049 private storage, XEP-0084 avatars and XEP-0292 vCard4, driven by
slixmpp's plugins (raw IQs where the exact error matters)."""

import asyncio
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase

from clients import befriend, close_all, login, pep_login, run, until
from harness import RawStream, prosody_deviation, unique

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_DISCO = "http://jabber.org/protocol/disco#info"
NS_DELAY = "urn:xmpp:delay"
NS_PRIVATE = "jabber:iq:private"
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_AVATAR_DATA = "urn:xmpp:avatar:data"
NS_AVATAR_META = "urn:xmpp:avatar:metadata"
NS_VCARD4 = "urn:ietf:params:xml:ns:vcard-4.0"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"



# --- helpers -------------------------------------------------------------------


def form(form_type, fields, ftype="submit"):
    x = f"<x xmlns='jabber:x:data' type='{ftype}'>"
    x += f"<field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>"
    for var, value in fields.items():
        x += f"<field var='{var}'><value>{value}</value></field>"
    return x + "</x>"


def slix_form(c, form_type, fields):
    f = c.plugin["xep_0004"].make_form(ftype="submit")
    f.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in fields.items():
        f.add_field(var=var, value=value)
    return f


async def publish(c, node, item_id, payload, options=None, to=None):
    """Raw publish; returns the result IQ (raises IqError)."""
    item = f"<item id='{item_id}'>{payload}</item>" if item_id else f"<item>{payload}</item>"
    po = f"<publish-options>{form(PUBLISH_OPTIONS, options)}</publish-options>" if options else ""
    return await c.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'>{item}</publish>{po}</pubsub>", to=to)


async def items(c, owner, node, extra="", attrs=""):
    """Item ids and payloads of a node, as the server answers them (in publication order)."""
    r = await c.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}' {attrs}>{extra}</items></pubsub>", to=owner)
    out = []
    for i in r.xml.iter(f"{{{NS_PUBSUB}}}item"):
        payload = next(iter(i), None)
        out.append((i.get("id"), payload))
    return out


def ids(lst):
    return [i for i, _ in lst]


async def error_of(coro):
    """The (stanza condition, pubsub condition) an IQ fails with."""
    with pytest.raises(IqError) as e:
        await coro
    err = e.value.iq.xml.find("{jabber:client}error")
    cond = next(
        (c.tag.split("}")[1] for c in err if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not c.tag.endswith("}text")),
        None,
    )
    app = next((c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{NS_ERRORS}}}")), None)
    return cond, app


def events(c, node, kind="item"):
    """(id, payload) of every `kind` ('item' or 'retract') event received for node."""
    out = []
    for m in c.events:
        for its in m.xml.iter(f"{{{NS_EVENT}}}items"):
            if its.get("node") != node:
                continue
            for i in its.findall(f"{{{NS_EVENT}}}{kind}"):
                out.append((i.get("id"), next(iter(i), None)))
    return out


def users(server, n):
    return [server.add_user() for _ in range(n)]


# --- disco ---------------------------------------------------------------------------


@prosody_deviation("does not advertise pubsub#access-open, which it implements")
def test_bare_jid_disco_is_a_pep_service_with_publish_options(server):
    """ComplianceTester's OMEMO prerequisite: identity pubsub/pep and
    pubsub#publish-options on the account's bare JID."""
    (alice, apw), (bob, bpw) = users(server, 2)

    async def scenario():
        a = await login(server, alice, apw)
        try:
            for target in (alice, bob):
                info = await a.plugin["xep_0030"].get_info(jid=target, timeout=10)
                q = info["disco_info"]
                assert ("pubsub", "pep", None, None) in q["identities"], q["identities"]
                assert ("account", "registered", None, None) in q["identities"]
                feats = set(q["features"])
                for f in ("publish-options", "publish", "auto-create", "access-presence", "access-open",
                          "access-whitelist", "item-ids", "retract-items", "delete-nodes",
                          "persistent-items", "last-published", "config-node", "retrieve-items"):
                    assert f"{NS_PUBSUB}#{f}" in feats, f
                assert "urn:xmpp:bookmarks:1#compat" in feats
                # Not implemented, so not advertised.
                assert f"{NS_PUBSUB}#subscribe" not in feats
                assert f"{NS_PUBSUB}#access-roster" not in feats
            sinfo = await a.plugin["xep_0030"].get_info(jid=server.domain, timeout=10)
            assert "urn:xmpp:bookmarks:1#compat" in set(sinfo["disco_info"]["features"])
            assert NS_PRIVATE in set(sinfo["disco_info"]["features"])
        finally:
            await close_all(a)

    run(scenario())


# --- publish, retrieve, retract ----------------------------------------------------


def test_publish_retrieve_and_retract(server):
    (alice, apw), = users(server, 1)
    node = "urn:test:list"

    async def scenario():
        a = await pep_login(server, alice, apw)
        try:
            ps = a.plugin["xep_0060"]
            opts = slix_form(a, PUBLISH_OPTIONS, {"pubsub#max_items": "10"})
            for n in (1, 2, 3):
                r = await ps.publish(None, node, id=f"i{n}", payload=ET.fromstring(f"<n xmlns='urn:test'>{n}</n>"), options=opts)
                assert r["pubsub"]["publish"]["item"]["id"] == f"i{n}"
            got = await ps.get_items(alice, node)
            assert [i["id"] for i in got["pubsub"]["items"]] == ["i1", "i2", "i3"]
            assert ids(await items(a, alice, node, attrs="max_items='2'")) == ["i2", "i3"]
            one = await items(a, alice, node, extra="<item id='i1'/>")
            assert ids(one) == ["i1"] and one[0][1].text == "1"
            # A server-chosen id comes back in the answer.
            r = await publish(a, node, None, "<n xmlns='urn:test'>4</n>")
            new_id = r.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item").get("id")
            assert new_id
            # Republishing an id replaces the item and makes it the newest.
            await publish(a, node, "i1", "<n xmlns='urn:test'>one again</n>")
            got = await items(a, alice, node)
            assert ids(got) == ["i2", "i3", new_id, "i1"]
            assert got[-1][1].text == "one again"
            await ps.retract(None, node, "i2")
            assert ids(await items(a, alice, node)) == ["i3", new_id, "i1"]
            assert await error_of(ps.retract(None, node, "i2")) == ("item-not-found", None)
            assert await error_of(items(a, alice, "urn:test:nothing")) == ("item-not-found", None)
            # Ids that do not exist are not in the answer (XEP-0060 §6.5.9.12).
            assert await items(a, alice, node, extra="<item id='nope'/>") == []
            assert ids(await items(a, alice, node, extra="<item id='nope'/><item id='i3'/>")) == ["i3"]
            # A node with the defaults keeps one item (XEP-0163's singleton).
            for n in (1, 2):
                await publish(a, "urn:test:single", f"s{n}", "<s xmlns='urn:test'/>")
            assert ids(await items(a, alice, "urn:test:single")) == ["s2"]
        finally:
            await close_all(a)

    run(scenario())


# --- notifications -------------------------------------------------------------------


def test_notifications_reach_interested_contacts_and_own_resources(server):
    (alice, apw), (bob, bpw), (carol, cpw) = users(server, 3)
    node = "urn:test:mood"

    async def scenario():
        a1 = await pep_login(server, alice + "/one", apw, interests=[node])
        a2 = await pep_login(server, alice + "/two", apw, interests=[node])
        a3 = await pep_login(server, alice + "/three", apw)  # no +notify
        b = await pep_login(server, bob, bpw, interests=[node])
        b_quiet = await pep_login(server, bob + "/quiet", bpw, interests=["urn:test:other"])
        c = await pep_login(server, carol, cpw, interests=[node])  # no subscription
        try:
            await befriend(a1, b)
            await publish(a1, node, "m1", "<mood xmlns='urn:test'>happy</mood>")
            assert await until(lambda: events(b, node) and events(a2, node) and events(a1, node))
            (iid, payload), = events(b, node)
            assert iid == "m1" and payload.text == "happy"
            msg = b.events[0]
            assert msg["from"] == alice and msg["type"] == "headline"
            assert msg["to"] == b.boundjid.full
            assert a2.events[0]["to"] == a2.boundjid.full
            await asyncio.sleep(0.5)
            assert not events(a3, node), "a resource without +notify was notified"
            assert not events(b_quiet, node), "a resource without +notify was notified"
            assert not events(c, node), "a stranger was notified of a presence-access node"
            # Retractions are notified (notify='true' asked, and the default).
            await a1.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><retract node='{node}' notify='true'><item id='m1'/></retract></pubsub>")
            assert await until(lambda: events(b, node, "retract") == [("m1", None)])
            # An open node reaches contacts too; a whitelist one only the owner.
            await publish(a1, node, "m2", "<mood xmlns='urn:test'>calm</mood>",
                          options=None)
            assert await until(lambda: len(events(b, node)) == 2)
            await a1.iq("set", f"<pubsub xmlns='{NS_OWNER}'><delete node='{node}'/></pubsub>")
            assert await until(lambda: any(m.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}delete") is not None for m in b.events))
            await publish(a1, node, "w1", "<mood xmlns='urn:test'>secret</mood>", options={"pubsub#access_model": "whitelist"})
            assert await until(lambda: ("w1" in ids(events(a2, node))))
            await asyncio.sleep(0.5)
            assert "w1" not in ids(events(b, node)), "a whitelist node notified a contact"
        finally:
            await close_all(a1, a2, a3, b, b_quiet, c)

    run(scenario())


@prosody_deviation("sends the last published item twice for one initial presence")
def test_last_published_item_on_presence(server):
    (alice, apw), (bob, bpw) = users(server, 2)
    node = "urn:test:tune"

    async def scenario():
        a = await pep_login(server, alice, apw)
        b = await login(server, bob, bpw)
        try:
            await befriend(a, b)
            await close_all(b)
            await publish(a, node, "t1", "<tune xmlns='urn:test'>old</tune>")
            await publish(a, node, "t2", "<tune xmlns='urn:test'>new</tune>")
            # bob comes online wanting tunes: he gets the last one, stamped.
            b = await pep_login(server, bob, bpw, interests=[node])
            assert await until(lambda: events(b, node))
            assert ids(events(b, node)) == ["t2"]
            assert b.events[0].xml.find(f"{{{NS_DELAY}}}delay") is not None
            # So does alice's own new resource.
            a2 = await pep_login(server, alice + "/new", apw, interests=[node])
            assert await until(lambda: ids(events(a2, node)) == ["t2"])
            # Presence again (same caps) is not initial: nothing more.
            b.send_presence(pstatus="still here")
            await b.ping_server()
            await asyncio.sleep(0.5)
            assert ids(events(b, node)) == ["t2"]
            # A node that says never is not sent.
            await publish(a, "urn:test:quiet", "q1", "<q xmlns='urn:test'/>",
                          options={"pubsub#send_last_published_item": "never"})
            b2 = await pep_login(server, bob + "/two", bpw, interests=[node, "urn:test:quiet"])
            assert await until(lambda: events(b2, node))
            await asyncio.sleep(0.3)
            assert not events(b2, "urn:test:quiet")
            await close_all(a2, b2)
        finally:
            await close_all(a, b)

    run(scenario())


def test_new_subscriber_gets_the_last_item(server):
    (alice, apw), (bob, bpw) = users(server, 2)
    node = "urn:test:location"

    async def scenario():
        a = await pep_login(server, alice, apw)
        b = await pep_login(server, bob, bpw, interests=[node])
        try:
            await publish(a, node, "here", "<geo xmlns='urn:test'>here</geo>")
            await asyncio.sleep(0.3)
            assert not events(b, node)
            await befriend(a, b)
            assert await until(lambda: ids(events(b, node)) == ["here"])
        finally:
            await close_all(a, b)

    run(scenario())


# --- access models ---------------------------------------------------------------------


@prosody_deviation("refuses reads with forbidden, not XEP-0060 §6.5.9's not-authorized/presence-subscription-required and not-allowed/closed-node")
def test_access_models_are_enforced(server):
    (alice, apw), (bob, bpw), (carol, cpw) = users(server, 3)

    async def scenario():
        a = await pep_login(server, alice, apw)
        b = await login(server, bob, bpw)
        c = await login(server, carol, cpw)
        try:
            await befriend(a, b)
            await publish(a, "urn:test:presence", "p", "<p xmlns='urn:test'/>")
            await publish(a, "urn:test:open", "o", "<o xmlns='urn:test'/>", options={"pubsub#access_model": "open"})
            await publish(a, "urn:test:white", "w", "<w xmlns='urn:test'/>", options={"pubsub#access_model": "whitelist"})
            # presence: the contact reads, a stranger may not.
            assert ids(await items(b, alice, "urn:test:presence")) == ["p"]
            assert await error_of(items(c, alice, "urn:test:presence")) == ("not-authorized", "presence-subscription-required")
            # open: anyone.
            assert ids(await items(c, alice, "urn:test:open")) == ["o"]
            # whitelist: the owner only.
            assert await error_of(items(b, alice, "urn:test:white")) == ("not-allowed", "closed-node")
            assert ids(await items(a, alice, "urn:test:white")) == ["w"]
            # Only the owner publishes, configures or deletes.
            assert await error_of(publish(b, "urn:test:open", "x", "<x xmlns='urn:test'/>", to=alice)) == ("forbidden", None)
            assert await error_of(b.iq("get", f"<pubsub xmlns='{NS_OWNER}'><configure node='urn:test:open'/></pubsub>", to=alice)) == ("forbidden", None)
            assert await error_of(b.iq("set", f"<pubsub xmlns='{NS_OWNER}'><delete node='urn:test:open'/></pubsub>", to=alice)) == ("forbidden", None)
            assert ids(await items(c, alice, "urn:test:open")) == ["o"]
        finally:
            await close_all(a, b, c)

    run(scenario())


# --- publish-options and configuration ---------------------------------------------------


def test_publish_options_preconditions(server):
    (alice, apw), = users(server, 1)
    node = "urn:test:keys"

    async def scenario():
        a = await pep_login(server, alice, apw)
        try:
            ps = a.plugin["xep_0060"]
            await publish(a, node, "k1", "<k xmlns='urn:test'>1</k>")  # default: presence
            # The node exists with access presence: asking for open conflicts
            # and nothing is published.
            assert await error_of(publish(a, node, "k2", "<k xmlns='urn:test'>2</k>", options={"pubsub#access_model": "open"})) == (
                "conflict", "precondition-not-met")
            # Unknown fields fail the precondition too (XEP-0060 §7.1.5).
            assert await error_of(publish(a, node, "k2", "<k xmlns='urn:test'>2</k>", options={"pubsub#title": "x"})) == (
                "conflict", "precondition-not-met")
            assert ids(await items(a, alice, node)) == ["k1"]
            # A matching precondition passes.
            await publish(a, node, "k3", "<k xmlns='urn:test'>3</k>", options={"pubsub#access_model": "presence", "pubsub#persist_items": "true"})
            # What slixmpp-omemo does on precondition-not-met: configure, then publish again.
            cfg = await ps.get_node_config(None, node)
            fields = cfg["pubsub_owner"]["configure"]["form"].get_values()
            assert fields["pubsub#access_model"] == "presence"
            assert fields["pubsub#max_items"] == "1"
            await ps.set_node_config(None, node, slix_form(a, NODE_CONFIG, {"pubsub#access_model": "open", "pubsub#max_items": "max"}))
            await publish(a, node, "k4", "<k xmlns='urn:test'>4</k>", options={"pubsub#access_model": "open", "pubsub#max_items": "max"})
            assert ids(await items(a, alice, node)) == ["k3", "k4"]
            # A new node takes its configuration from the options.
            await publish(a, "urn:test:fresh", "f", "<f xmlns='urn:test'/>", options={"pubsub#access_model": "whitelist", "pubsub#max_items": "5"})
            cfg = await ps.get_node_config(None, "urn:test:fresh")
            fields = cfg["pubsub_owner"]["configure"]["form"].get_values()
            assert fields["pubsub#access_model"] == "whitelist"
            assert fields["pubsub#max_items"] == "5"
        finally:
            await close_all(a)

    run(scenario())


@prosody_deviation("refuses a bad node configuration with bad-request, not not-acceptable (XEP-0060 §8.2.5.2)")
def test_node_configuration_purge_and_delete(server):
    (alice, apw), = users(server, 1)
    node = "urn:test:cfg"

    async def scenario():
        a = await pep_login(server, alice, apw)
        try:
            for n in range(5):
                await publish(a, node, f"c{n}", "<c xmlns='urn:test'/>", options={"pubsub#max_items": "max"})
            assert len(await items(a, alice, node)) == 5
            # Lowering max_items trims the oldest.
            await a.iq("set", f"<pubsub xmlns='{NS_OWNER}'><configure node='{node}'>{form(NODE_CONFIG, {'pubsub#max_items': '2'})}</configure></pubsub>")
            assert ids(await items(a, alice, node)) == ["c3", "c4"]
            # A bad value is refused and changes nothing.
            assert await error_of(a.iq("set", f"<pubsub xmlns='{NS_OWNER}'><configure node='{node}'>{form(NODE_CONFIG, {'pubsub#access_model': 'roster'})}</configure></pubsub>")) == (
                "not-acceptable", None)
            assert await error_of(a.iq("set", f"<pubsub xmlns='{NS_OWNER}'><configure node='{node}'>{form(NODE_CONFIG, {'pubsub#max_items': '100000'})}</configure></pubsub>")) == (
                "not-acceptable", None)
            assert ids(await items(a, alice, node)) == ["c3", "c4"]
            # The default configuration is there to read.
            r = await a.iq("get", f"<pubsub xmlns='{NS_OWNER}'><default/></pubsub>")
            assert r.xml.find(f".//{{jabber:x:data}}field[@var='pubsub#access_model']/{{jabber:x:data}}value").text == "presence"
            await a.iq("set", f"<pubsub xmlns='{NS_OWNER}'><purge node='{node}'/></pubsub>")
            assert await items(a, alice, node) == []
            await a.plugin["xep_0060"].delete_node(None, node)
            assert await error_of(items(a, alice, node)) == ("item-not-found", None)
            assert await error_of(a.plugin["xep_0060"].delete_node(None, node)) == ("item-not-found", None)
            # Explicit creation: twice is a conflict.
            await a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><create node='urn:test:made'/><configure>{form(NODE_CONFIG, {'pubsub#access_model': 'open'})}</configure></pubsub>")
            assert await items(a, alice, "urn:test:made") == []
            assert await error_of(a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><create node='urn:test:made'/></pubsub>")) == ("conflict", None)
        finally:
            await close_all(a)

    run(scenario())


@pytest.mark.conclave_only
def test_bad_requests_get_the_xep_errors_and_change_nothing(server_factory):
    srv = server_factory({"pep.max_item_bytes": 2048, "pep.max_nodes": 2})
    (alice, apw), = users(srv, 1)

    async def scenario():
        a = await pep_login(srv, alice, apw)
        try:
            big = "<b xmlns='urn:test'>" + "x" * 3000 + "</b>"
            assert await error_of(publish(a, "urn:test:big", "b", big)) == ("not-acceptable", "payload-too-big")
            assert await error_of(items(a, alice, "urn:test:big")) == ("item-not-found", None)
            assert await error_of(publish(a, "urn:test:two", "t", "<a xmlns='urn:test'/><b xmlns='urn:test'/>")) == ("bad-request", "invalid-payload")
            assert await error_of(a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish node='urn:test:n'/></pubsub>")) == ("bad-request", "item-required")
            assert await error_of(a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><publish><item><a xmlns='urn:test'/></item></publish></pubsub>")) == ("bad-request", "nodeid-required")
            assert await error_of(items(a, alice, "urn:test:n", attrs="max_items='many'")) == ("bad-request", None)
            assert await error_of(a.iq("set", f"<pubsub xmlns='{NS_PUBSUB}'><subscribe node='urn:test:n' jid='{alice}'/></pubsub>", to=alice)) == (
                "feature-not-implemented", "unsupported")
            # Node quota.
            await publish(a, "urn:test:one", "1", "<a xmlns='urn:test'/>")
            await publish(a, "urn:test:two", "1", "<a xmlns='urn:test'/>")
            assert await error_of(publish(a, "urn:test:three", "1", "<a xmlns='urn:test'/>")) == ("not-allowed", "max-nodes-exceeded")
            assert await error_of(items(a, alice, "urn:test:three")) == ("item-not-found", None)
            # Publishing to an existing node still works at the quota.
            await publish(a, "urn:test:one", "2", "<a xmlns='urn:test'/>")
        finally:
            await close_all(a)

    run(scenario())


@pytest.mark.conclave_only
def test_an_accounts_items_are_held_to_a_byte_quota(server_factory):
    srv = server_factory({"pep.max_item_bytes": 2048, "pep.quota_bytes": 4096})
    (alice, apw), = users(srv, 1)
    node = "urn:test:quota"
    blob = "<b xmlns='urn:test'>" + "x" * 1480 + "</b>"

    async def scenario():
        a = await pep_login(srv, alice, apw)
        try:
            many = {"pubsub#max_items": "max"}
            await publish(a, node, "q1", blob, options=many)
            await publish(a, node, "q2", blob, options=many)
            assert await error_of(publish(a, node, "q3", blob, options=many)) == ("resource-constraint", None)
            # Replacing an item counts only the new one.
            await publish(a, node, "q2", blob, options=many)
            assert ids(await items(a, alice, node)) == ["q1", "q2"]
            # Freeing space makes room again.
            await a.plugin["xep_0060"].retract(None, node, "q1")
            await publish(a, node, "q3", blob, options=many)
        finally:
            await close_all(a)

    run(scenario())


# --- caps ------------------------------------------------------------------------------------


def test_caps_are_verified_before_they_are_shared(server):
    """The server asks a client for the disco#info behind its caps; a verified
    answer serves every session announcing the same string, an answer that
    does not match its hash serves only the session that gave it."""
    (alice, apw), (bob, bpw) = users(server, 2)
    node = f"urn:test:{unique('caps')}"

    async def scenario():
        a1 = await pep_login(server, alice + "/one", apw, interests=[node])
        a2 = await pep_login(server, alice + "/two", apw, interests=[node])
        try:
            assert len(a1.caps_queries) == 1
            assert a2.caps_queries == [], "known caps were asked again"
            await publish(a1, node, "x", "<x xmlns='urn:test'/>")
            assert await until(lambda: events(a2, node))
        finally:
            await close_all(a1, a2)

    run(scenario())

    def raw_login(user, pw):
        s = RawStream(server)
        s.login(user.split("@")[0], pw, resource=unique("r"))
        return s

    def bogus_caps(s):
        s.send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test:client' ver='bogus='/></presence>")
        q = s.wait_for(lambda e: e.tag == "{jabber:client}iq" and e.get("type") == "get")
        query = q.find(f"{{{NS_DISCO}}}query")
        assert query.get("node") == "urn:test:client#bogus="
        s.send(f"<iq type='result' id='{q.get('id')}' to='{q.get('from')}'><query xmlns='{NS_DISCO}' node='urn:test:client#bogus='>"
               f"<identity category='client' type='pc'/><feature var='{node}+notify'/></query></iq>")

    r1 = raw_login(bob, bpw)
    r2 = raw_login(bob, bpw)
    try:
        bogus_caps(r1)
        # Not shared: the second session with the same string is asked too.
        bogus_caps(r2)
    finally:
        r1.close()
        r2.close()


# --- XEP-0223, XEP-0402 and #compat, XEP-0049 -------------------------------------------


class Prefs(ElementBase):
    name = "prefs"
    namespace = "urn:test:prefs"
    plugin_attrib = "prefs"
    interfaces = {"theme"}
    sub_interfaces = interfaces


@prosody_deviation("refuses whitelist reads with forbidden, not not-allowed/closed-node")
def test_private_pep_node_xep_0223(server):
    (alice, apw), (bob, bpw) = users(server, 2)

    async def scenario():
        a = await pep_login(server, alice, apw, plugins=["xep_0223"])
        b = await login(server, bob, bpw)
        try:
            await befriend(a, b)
            prefs = Prefs()
            prefs["theme"] = "dark"
            await a.plugin["xep_0223"].store(prefs, node="urn:test:prefs", id="current")
            got = await a.plugin["xep_0223"].retrieve("urn:test:prefs")
            assert [i["id"] for i in got["pubsub"]["items"]] == ["current"]
            assert got.xml.find(".//{urn:test:prefs}theme").text == "dark"
            assert await error_of(items(b, alice, "urn:test:prefs")) == ("not-allowed", "closed-node")
        finally:
            await close_all(a, b)

    run(scenario())


def conferences_0048(result):
    return {c["jid"]: c for c in result["private"]["bookmarks"]["conferences"]}


def test_bookmarks_0402_round_trip_and_compat_with_0048_0049(server):
    (alice, apw), = users(server, 1)
    room1 = f"{unique('room')}@conference.{server.domain}"
    room2 = f"{unique('room')}@conference.{server.domain}"

    async def scenario():
        # A XEP-0402 client (notified of bookmark changes) and a legacy one.
        new = await pep_login(server, alice + "/new", apw, interests=[NS_BOOKMARKS], plugins=["xep_0223", "xep_0402"])
        old = await login(server, alice + "/old", apw)
        old.register_plugin("xep_0048")
        try:
            from slixmpp.plugins.xep_0402.stanza import Conference
            new.plugin["xep_0223"].node_profiles[NS_BOOKMARKS] = {
                "pubsub#max_items": "max", "pubsub#send_last_published_item": "never"}
            conf = Conference()
            conf["name"] = "Room one"
            conf["autojoin"] = True
            conf["nick"] = "al"
            conf.xml.append(ET.fromstring(f"<extensions xmlns='{NS_BOOKMARKS}'><state xmlns='urn:test:client' minimized='true'/></extensions>"))
            await new.plugin["xep_0223"].store(conf, node=NS_BOOKMARKS, id=room1)
            got = await new.plugin["xep_0060"].get_items(alice, NS_BOOKMARKS)
            (item,) = got["pubsub"]["items"]
            assert item["id"] == room1 and item["conference"]["nick"] == "al"
            # The node is private (whitelist) and keeps many items.
            cfg = await new.plugin["xep_0060"].get_node_config(None, NS_BOOKMARKS)
            fields = cfg["pubsub_owner"]["configure"]["form"].get_values()
            assert fields["pubsub#access_model"] == "whitelist"
            assert fields["pubsub#max_items"] == "max"
            # The legacy client reads it as XEP-0048 bookmarks in XEP-0049.
            legacy = conferences_0048(await old.plugin["xep_0048"].get_bookmarks(method="xep_0049"))
            assert set(legacy) == {room1}
            assert legacy[room1]["nick"] == "al" and legacy[room1]["autojoin"] and legacy[room1]["name"] == "Room one"
            # The legacy client writes back its list plus a room: only the new
            # room is notified, and room1 keeps its extensions.
            new.events.clear()
            from slixmpp.plugins.xep_0048.stanza import Bookmarks
            bm = Bookmarks()
            bm.add_conference(room1, "al", name="Room one", autojoin=True)
            bm.add_conference(room2, "ally", name="Room two")
            await old.plugin["xep_0048"].set_bookmarks(bm, method="xep_0049")
            assert await until(lambda: ids(events(new, NS_BOOKMARKS)) == [room2])
            got = dict(await items(new, alice, NS_BOOKMARKS))
            assert set(got) == {room1, room2}
            assert got[room1].find(f"{{{NS_BOOKMARKS}}}extensions") is not None
            assert got[room2].find(f"{{{NS_BOOKMARKS}}}nick").text == "ally"
            assert got[room2].get("autojoin") in (None, "false", "0")
            # Dropping room1 from the legacy list retracts it, notified.
            bm = Bookmarks()
            bm.add_conference(room2, "ally", name="Room two")
            await old.plugin["xep_0048"].set_bookmarks(bm, method="xep_0049")
            assert await until(lambda: ids(events(new, NS_BOOKMARKS, "retract")) == [room1])
            assert ids(await items(new, alice, NS_BOOKMARKS)) == [room2]
            # XEP-0402 retraction shows in the legacy view.
            await new.plugin["xep_0060"].retract(None, NS_BOOKMARKS, room2, notify=True)
            assert conferences_0048(await old.plugin["xep_0048"].get_bookmarks(method="xep_0049")) == {}
        finally:
            await close_all(new, old)

    run(scenario())


@prosody_deviation("stores reserved namespaces (XEP-0049 §3 lets servers refuse them)")
def test_private_xml_storage_xep_0049(server):
    (alice, apw), (bob, bpw) = users(server, 2)

    async def scenario():
        a = await login(server, alice, apw)
        b = await login(server, bob, bpw)
        try:
            prefs = "<prefs xmlns='urn:test:prefs'><theme>dark</theme></prefs>"
            notes = "<storage xmlns='storage:rosternotes'><note jid='x@y'>hi</note></storage>"
            await a.iq("set", f"<query xmlns='{NS_PRIVATE}'>{prefs}</query>")
            await a.iq("set", f"<query xmlns='{NS_PRIVATE}'>{notes}</query>")
            r = await a.iq("get", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:test:prefs'/></query>")
            assert r.xml.find(f"{{{NS_PRIVATE}}}query/{{urn:test:prefs}}prefs/{{urn:test:prefs}}theme").text == "dark"
            r = await a.iq("get", f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:rosternotes'/></query>")
            assert r.xml.find(f".//{{storage:rosternotes}}note").text == "hi"
            # Nothing stored: the empty element comes back.
            r = await a.iq("get", f"<query xmlns='{NS_PRIVATE}'><other xmlns='urn:test:other'/></query>")
            other = r.xml.find(f"{{{NS_PRIVATE}}}query/{{urn:test:other}}other")
            assert other is not None and len(other) == 0
            # Replace.
            await a.iq("set", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:test:prefs'><theme>light</theme></prefs></query>")
            r = await a.iq("get", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:test:prefs'/></query>")
            assert r.xml.find(".//{urn:test:prefs}theme").text == "light"
            # Reserved namespaces, empty queries and other users' storage are refused.
            for ns in ("jabber:client", "jabber:iq:roster", "vcard-temp", "http://jabber.org/protocol/x"):
                assert await error_of(a.iq("set", f"<query xmlns='{NS_PRIVATE}'><x xmlns='{ns}'/></query>")) == ("not-acceptable", None)
            assert await error_of(a.iq("set", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:test:prefs'/><x xmlns='jabber:x:data'/></query>")) == ("not-acceptable", None)
            assert await error_of(a.iq("get", f"<query xmlns='{NS_PRIVATE}'/>")) == ("not-acceptable", None)
            assert await error_of(b.iq("get", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:test:prefs'/></query>", to=alice)) == ("forbidden", None)
            # The refused set changed nothing.
            r = await a.iq("get", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:test:prefs'/></query>")
            assert r.xml.find(".//{urn:test:prefs}theme").text == "light"
            # bob's storage is his own.
            r = await b.iq("get", f"<query xmlns='{NS_PRIVATE}'><prefs xmlns='urn:test:prefs'/></query>")
            assert len(r.xml.find(f"{{{NS_PRIVATE}}}query/{{urn:test:prefs}}prefs")) == 0
        finally:
            await close_all(a, b)

    run(scenario())


# --- avatars and vCard4 ------------------------------------------------------------------


@prosody_deviation("refuses presence-access reads with forbidden, not not-authorized/presence-subscription-required")
def test_avatar_0084_and_vcard4_0292_by_pep(server):
    (alice, apw), (bob, bpw), (carol, cpw) = users(server, 3)

    async def scenario():
        a = await pep_login(server, alice, apw, plugins=["xep_0084", "xep_0292"])
        b = await pep_login(server, bob, bpw, plugins=["xep_0084", "xep_0292"])
        c = await login(server, carol, cpw)
        c.register_plugin("xep_0060")
        c.register_plugin("xep_0084")
        try:
            await befriend(a, b)
            data = bytes(range(256)) * 8
            open_access = slix_form(a, PUBLISH_OPTIONS, {"pubsub#access_model": "open"})
            av = a.plugin["xep_0084"]
            await av.publish_avatar(data, options=open_access)
            avatar_id = av.generate_id(data)
            await av.publish_avatar_metadata(
                [{"id": avatar_id, "type": "image/png", "bytes": len(data)}],
                options=slix_form(a, PUBLISH_OPTIONS, {"pubsub#access_model": "open"}))
            # bob's client wants metadata (+notify, by the plugin): notified.
            assert await until(lambda: ids(events(b, NS_AVATAR_META)) == [avatar_id])
            # Anyone may fetch open avatars.
            got = await c.plugin["xep_0084"].retrieve_avatar(alice, avatar_id)
            assert got["pubsub"]["items"]["item"]["avatar_data"]["value"] == data
            await a.plugin["xep_0292"].publish_vcard(full_name="Alice Liddell", nickname="al")
            v = await b.plugin["xep_0292"].retrieve_vcard(alice)
            card = v.xml.find(f".//{{{NS_VCARD4}}}vcard")
            assert card.find(f"{{{NS_VCARD4}}}fn/{{{NS_VCARD4}}}text").text == "Alice Liddell"
            assert await until(lambda: ids(events(b, NS_VCARD4)) == ["current"])
            # The vCard node has the default presence access: carol may not read it.
            assert await error_of(items(c, alice, NS_VCARD4)) == ("not-authorized", "presence-subscription-required")
        finally:
            await close_all(a, b, c)

    run(scenario())


# --- storage ---------------------------------------------------------------------------------


@pytest.mark.conclave_only
def test_removing_an_account_removes_its_pep_data(server):
    user = unique("gone")
    alice, apw = server.add_user(user)

    async def scenario():
        a = await pep_login(server, alice, apw)
        try:
            await publish(a, "urn:test:kept", "k", "<k xmlns='urn:test'>secret-marker</k>", options={"pubsub#access_model": "open"})
            await a.iq("set", f"<query xmlns='{NS_PRIVATE}'><p xmlns='urn:test:p'>private-marker</p></query>")
        finally:
            await close_all(a)

    run(scenario())
    r = server.cli("user", "remove", alice)
    assert r.returncode == 0, r.stderr
    alice, apw = server.add_user(user)

    async def again():
        a = await login(server, alice, apw)
        try:
            assert await error_of(items(a, alice, "urn:test:kept")) == ("item-not-found", None)
            r = await a.iq("get", f"<query xmlns='{NS_PRIVATE}'><p xmlns='urn:test:p'/></query>")
            assert len(r.xml.find(f"{{{NS_PRIVATE}}}query/{{urn:test:p}}p")) == 0
            assert not (r.xml.find(f"{{{NS_PRIVATE}}}query/{{urn:test:p}}p").text or "")
        finally:
            await close_all(a)

    run(again())
