"""Server-side services: disco, version, time, vcard-temp, ping, XEP-0215 TURN credentials."""

import base64
import datetime
import hashlib
import hmac
import re
import time

import pytest

import harness
from clients import IqError, close_all, login, run
from conftest import TURN_SECRET

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VCARD = "vcard-temp"
NS_EXTDISCO = "urn:xmpp:extdisco:2"


@pytest.fixture
def user(server):
    return server.add_user()


def test_disco_info_server(server, user):
    async def scenario():
        c = await login(server, *user)
        try:
            iq = await c.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=server.domain)
            q = iq.xml.find(f"{{{NS_DISCO_INFO}}}query")
            ids = {(i.get("category"), i.get("type")) for i in q.findall(f"{{{NS_DISCO_INFO}}}identity")}
            feats = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
            assert ("server", "im") in ids, ids
            required = {
                NS_DISCO_INFO,
                "urn:xmpp:ping",
                "jabber:iq:version",
                "urn:xmpp:time",
                "vcard-temp",
                NS_EXTDISCO,
                "jabber:iq:register",
            }
            missing = required - feats
            assert not missing, f"missing features {sorted(missing)}; have {sorted(feats)}"
        finally:
            await c.close()

    run(scenario())


def test_version(server, user):
    async def scenario():
        c = await login(server, *user)
        try:
            iq = await c.iq("get", "<query xmlns='jabber:iq:version'/>", to=server.domain)
            q = iq.xml.find("{jabber:iq:version}query")
            name = q.findtext("{jabber:iq:version}name")
            version = q.findtext("{jabber:iq:version}version")
            assert name and name.strip(), iq
            assert version and version.strip(), iq
        finally:
            await c.close()

    run(scenario())


def test_time(server, user):
    async def scenario():
        c = await login(server, *user)
        try:
            iq = await c.iq("get", "<time xmlns='urn:xmpp:time'/>", to=server.domain)
            t = iq.xml.find("{urn:xmpp:time}time")
            tzo = t.findtext("{urn:xmpp:time}tzo")
            utc = t.findtext("{urn:xmpp:time}utc")
            assert re.fullmatch(r"[+-]\d\d:\d\d|Z", tzo or ""), tzo
            assert utc and utc.endswith("Z"), utc
            stamp = datetime.datetime.fromisoformat(utc.replace("Z", "+00:00"))
            skew = abs((stamp - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
            assert skew < 60, f"server time off by {skew}s"
        finally:
            await c.close()

    run(scenario())


def test_ping(server, user):
    async def scenario():
        c = await login(server, *user)
        try:
            iq = await c.ping_server()
            assert iq["type"] == "result"
            assert iq["from"] in (server.domain, "")
        finally:
            await c.close()

    run(scenario())


def test_vcard_roundtrip(server, user):
    other = server.add_user()
    fn = "Alice Example " + str(time.time_ns())

    async def scenario():
        alice = await login(server, *user)
        bob = await login(server, *other)
        try:
            await alice.iq(
                "set",
                f"<vCard xmlns='{NS_VCARD}'><FN>{fn}</FN><NICKNAME>ally</NICKNAME>"
                "<EMAIL><INTERNET/><USERID>alice@example.test</USERID></EMAIL></vCard>",
            )
            # own vCard: iq get without 'to'
            iq = await alice.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
            v = iq.xml.find(f"{{{NS_VCARD}}}vCard")
            assert v.findtext(f"{{{NS_VCARD}}}FN") == fn
            assert v.findtext(f"{{{NS_VCARD}}}NICKNAME") == "ally"
            assert v.findtext(f"{{{NS_VCARD}}}EMAIL/{{{NS_VCARD}}}USERID") == "alice@example.test"
            # someone else reads it at the bare JID
            iq = await bob.iq("get", f"<vCard xmlns='{NS_VCARD}'/>", to=alice.boundjid.bare)
            assert iq.xml.find(f"{{{NS_VCARD}}}vCard").findtext(f"{{{NS_VCARD}}}FN") == fn
            # and cannot overwrite it (a set 'to' another user is not allowed)
            with pytest.raises(IqError):
                await bob.iq("set", f"<vCard xmlns='{NS_VCARD}'><FN>hacked</FN></vCard>", to=alice.boundjid.bare)
            iq = await alice.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
            assert iq.xml.find(f"{{{NS_VCARD}}}vCard").findtext(f"{{{NS_VCARD}}}FN") == fn
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_vcard_empty_for_new_user(server, user):
    async def scenario():
        c = await login(server, *user)
        try:
            try:
                iq = await c.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
            except IqError as e:  # XEP-0054 allows item-not-found for no vCard
                assert e.condition == "item-not-found", e
                return
            v = iq.xml.find(f"{{{NS_VCARD}}}vCard")
            assert v is not None and v.findtext(f"{{{NS_VCARD}}}FN") in (None, "")
        finally:
            await c.close()

    run(scenario())


def test_extdisco_turn_credentials(server, user):
    async def scenario():
        c = await login(server, *user)
        try:
            t0 = int(time.time())
            iq = await c.iq("get", f"<services xmlns='{NS_EXTDISCO}'/>", to=server.domain)
            services = iq.xml.find(f"{{{NS_EXTDISCO}}}services")
            turns = [s for s in services.findall(f"{{{NS_EXTDISCO}}}service") if s.get("type") == "turn"]
            assert turns, f"no turn service: {iq}"
            for s in turns:
                username, password = s.get("username"), s.get("password")
                assert s.get("host") and s.get("port"), s.attrib
                assert username and password, s.attrib
                m = re.fullmatch(r"(\d+)(?::(.+))?", username)
                assert m, f"username {username!r} is not '<expiry>:<jid>'"
                expiry, who = int(m.group(1)), m.group(2)
                assert t0 < expiry <= t0 + 86400 + 120, f"expiry {expiry} vs now {t0}"
                if harness.TARGET == "conclave" or who is not None:
                    # (Prosody's mod_turn_external can only put a fixed name here, or none)
                    assert who in (c.boundjid.bare, c.boundjid.full), f"{username!r}: not '<expiry>:<requester JID>'"
                want = base64.b64encode(hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
                assert password == want, "password is not base64(HMAC-SHA1(secret, username))"
        finally:
            await c.close()

    run(scenario())


def test_extdisco_without_secret_has_no_credentials(server_factory):
    """With no TURN secret configured, no TURN credentials are handed out."""
    srv = server_factory({"turn.secret": ""})
    user = srv.add_user()

    async def scenario():
        c = await login(srv, *user)
        try:
            try:
                iq = await c.iq("get", f"<services xmlns='{NS_EXTDISCO}'/>", to=srv.domain)
            except IqError:
                return
            for s in iq.xml.iter(f"{{{NS_EXTDISCO}}}service"):
                assert not s.get("password"), s.attrib
        finally:
            await c.close()

    run(scenario())
