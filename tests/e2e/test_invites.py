"""Invitations: XEP-0401 ad-hoc commands, XEP-0445 pre-authenticated
registration while open registration is off, XEP-0379 mutual subscription,
the HTTPS landing page and `conclave invite`."""

import asyncio
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

import harness
from clients import can_login, close_all, login, run, until
from harness import RawStream, unique

pytestmark = pytest.mark.conclave_only

NS_CMD = "http://jabber.org/protocol/commands"
NS_XDATA = "jabber:x:data"
NS_ROSTER = "jabber:iq:roster"
NS_REG = "jabber:iq:register"
NS_PARS = "urn:xmpp:pars:0"
TOKEN_RE = re.compile(r"preauth=([0-9a-f]{32})")


def invite_server(server_factory, **extra):
    admin = unique("admin")
    cfg = {"registration.allow": False, "admins": [f"{admin}@{harness.DOMAIN}"], **extra}
    srv = server_factory(cfg)
    srv.admin = srv.add_user(admin)
    return srv


def result_fields(iq) -> dict:
    x = iq.xml.find(f"{{{NS_CMD}}}command/{{{NS_XDATA}}}x")
    assert x is not None, iq
    return {f.get("var"): [v.text for v in f.findall(f"{{{NS_XDATA}}}value")] for f in x.findall(f"{{{NS_XDATA}}}field")}


async def create_account_invite(c, srv, username: str = "", subscribe: bool = False) -> dict:
    node = "urn:xmpp:invite#create-account"
    r = await c.iq("set", f"<command xmlns='{NS_CMD}' node='{node}' action='execute'/>", to=srv.domain)
    cmd = r.xml.find(f"{{{NS_CMD}}}command")
    assert cmd.get("status") == "executing", r
    vars_ = [f.get("var") for f in cmd.iter(f"{{{NS_XDATA}}}field")]
    assert "username" in vars_ and "roster-subscription" in vars_, r
    sub = "1" if subscribe else "0"
    r = await c.iq(
        "set",
        f"<command xmlns='{NS_CMD}' node='{node}' sessionid='{cmd.get('sessionid')}' action='complete'>"
        f"<x xmlns='{NS_XDATA}' type='submit'><field var='username'><value>{username}</value></field>"
        f"<field var='roster-subscription'><value>{sub}</value></field></x></command>",
        to=srv.domain,
    )
    assert r.xml.find(f"{{{NS_CMD}}}command").get("status") == "completed", r
    return result_fields(r)


async def contact_invite(c, srv) -> tuple[str, str]:
    """urn:xmpp:invite#invite: completed at once; (uri, token)."""
    r = await c.iq("set", f"<command xmlns='{NS_CMD}' node='urn:xmpp:invite#invite' action='execute'/>",
                   to=srv.domain)
    assert r.xml.find(f"{{{NS_CMD}}}command").get("status") == "completed", r
    (uri,) = result_fields(r)["uri"]
    return uri, TOKEN_RE.search(uri).group(1)


def send_preauth_subscribe(c, to: str, token: str) -> None:
    """XEP-0379 §3.4: a subscription request carrying the token."""
    p = c.Presence()
    p["to"] = to
    p["type"] = "subscribe"
    p.append(ET.fromstring(f"<preauth xmlns='{NS_PARS}' token='{token}'/>"))
    p.send()


def raw_preauth(r: RawStream, token: str) -> ET.Element:
    r.send(f"<iq type='set' id='pa' to='{r.server.domain}'><preauth xmlns='{NS_PARS}' token='{token}'/></iq>")
    return r.wait_for(lambda e: e.get("id") == "pa")


def raw_register(r: RawStream, user: str, pw: str, id_: str = "reg") -> ET.Element:
    r.send(f"<iq type='set' id='{id_}'><query xmlns='{NS_REG}'><username>{user}</username>"
           f"<password>{pw}</password></query></iq>")
    return r.wait_for(lambda e: e.get("id") == id_)


def register_with_token(srv, token: str, user: str, pw: str) -> tuple[ET.Element, ET.Element | None]:
    """preauth then register on one fresh stream; the register reply is None if preauth failed."""
    with RawStream(srv) as r:
        r.tls_open()
        pa = raw_preauth(r, token)
        if pa.get("type") != "result":
            return pa, None
        return pa, raw_register(r, user, pw)


def users(srv) -> list[str]:
    r = srv.cli("user", "list")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_admin_invitation_registers_once_while_registration_is_off(server_factory):
    srv = invite_server(server_factory)
    user, pw = unique("inv"), "pw-" + unique()

    async def make():
        c = await login(srv, *srv.admin)
        try:
            return await create_account_invite(c, srv)
        finally:
            await close_all(c)

    f = run(make())
    assert f["FORM_TYPE"] == ["urn:xmpp:invite#invitation"], f
    (uri,) = f["uri"]
    token = TOKEN_RE.search(uri).group(1)
    assert uri == f"xmpp:{srv.domain}?register;preauth={token}", uri
    assert f["landing-url"] == [f"https://{srv.domain}:{srv.http_port}/invite/{token}"], f
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", f["expire"][0]), f

    with RawStream(srv) as r:
        feats = r.tls_open()
        assert feats.find("{urn:xmpp:invite}register") is not None, r.describe()
        assert feats.find("{urn:xmpp:ibr-token:0}register") is not None, r.describe()
        assert feats.find("{http://jabber.org/features/iq-register}register") is None, r.describe()
        # No token: open registration is still refused.
        el = raw_register(r, unique("nope"), "pw", "plain")
        assert el.get("type") == "error" and harness.stanza_error_condition(el) == "not-allowed", r.describe()
        # A token that is not one: XEP-0445's item-not-found, and still no registration.
        bad = raw_preauth(r, "0" * 32)
        assert harness.stanza_error_condition(bad) == "item-not-found", r.describe()
        el = raw_register(r, unique("nope"), "pw", "after-bad")
        assert harness.stanza_error_condition(el) == "not-allowed", r.describe()
        # The real one.
        pa = raw_preauth(r, token)
        assert pa.get("type") == "result", r.describe()
        # A username that is not a valid localpart: refused, token kept.
        el = raw_register(r, "bad@name", pw, "badname")
        assert harness.stanza_error_condition(el) == "not-acceptable", r.describe()
        el = raw_register(r, user, pw)
        assert el.get("type") == "result", r.describe()

    assert run(can_login(srv, f"{user}@{srv.domain}", pw))

    # Second use: the token is gone; nothing is created.
    other = unique("second")
    pa, reg = register_with_token(srv, token, other, "pw-x")
    assert pa.get("type") == "error" and harness.stanza_error_condition(pa) == "item-not-found", ET.tostring(pa)
    assert reg is None
    assert f"{other}@{srv.domain}" not in users(srv)
    assert sorted(users(srv)) == sorted([srv.admin[0], f"{user}@{srv.domain}"])
    # The token is a credential: never in the log.
    assert token not in srv.log_text()


def test_racing_registrations_with_one_token_create_one_account(server_factory):
    srv = invite_server(server_factory)
    r = srv.cli("invite", "create")
    assert r.returncode == 0, r.stderr
    token = TOKEN_RE.search(r.stdout).group(1)
    a, b = RawStream(srv), RawStream(srv)
    with a, b:
        for s in (a, b):
            s.tls_open()
            assert raw_preauth(s, token).get("type") == "result", s.describe()
        ua, ub = unique("racea"), unique("raceb")
        # Both requests are on the wire before either answer is read.
        for s, u in ((a, ua), (b, ub)):
            s.send(f"<iq type='set' id='reg'><query xmlns='{NS_REG}'><username>{u}</username>"
                   f"<password>pw</password></query></iq>")
        ra = a.wait_for(lambda e: e.get("id") == "reg")
        rb = b.wait_for(lambda e: e.get("id") == "reg")
    types = sorted([ra.get("type"), rb.get("type")])
    assert types == ["error", "result"], (ET.tostring(ra), ET.tostring(rb))
    loser = ra if ra.get("type") == "error" else rb
    assert harness.stanza_error_condition(loser) == "forbidden", ET.tostring(loser)
    created = [u for u in (ua, ub) if f"{u}@{srv.domain}" in users(srv)]
    assert len(created) == 1, users(srv)


def test_expired_and_revoked_invitations_fail(server_factory):
    srv = invite_server(server_factory)
    r = srv.cli("invite", "create", "--ttl", "1")
    assert r.returncode == 0, r.stderr
    expired = TOKEN_RE.search(r.stdout).group(1)
    r = srv.cli("invite", "create", "--user", "fixed" + unique())
    assert r.returncode == 0, r.stderr
    revoked = TOKEN_RE.search(r.stdout).group(1)
    time.sleep(2.1)
    pa, _ = register_with_token(srv, expired, unique("late"), "pw")
    assert harness.stanza_error_condition(pa) == "item-not-found", ET.tostring(pa)

    listed = srv.cli("invite", "list")
    assert listed.returncode == 0, listed.stderr
    assert revoked not in listed.stdout and expired not in listed.stdout, "tokens are never listed"
    line = next(ln for ln in listed.stdout.splitlines() if "user=fixed" in ln)
    r = srv.cli("invite", "revoke", line.split()[0])
    assert r.returncode == 0, r.stderr
    pa, _ = register_with_token(srv, revoked, "whatever", "pw")
    assert harness.stanza_error_condition(pa) == "item-not-found", ET.tostring(pa)
    assert users(srv) == [srv.admin[0]]


def test_cli_invitation_works_while_the_server_runs(server_factory):
    srv = invite_server(server_factory)
    name = unique("cli")
    r = srv.cli("invite", "create", "--user", name)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    token = TOKEN_RE.search(r.stdout).group(1)
    assert lines[0] == f"https://{srv.domain}:{srv.http_port}/invite/{token}", r.stdout
    assert lines[1] == f"xmpp:{name}@{srv.domain}?register;preauth={token}", r.stdout
    # The name is fixed: another one is refused and the token stays usable.
    with RawStream(srv) as s:
        s.tls_open()
        assert raw_preauth(s, token).get("type") == "result", s.describe()
        # The registration form names the fixed user.
        s.send(f"<iq type='get' id='form'><query xmlns='{NS_REG}'/></iq>")
        form = s.wait_for(lambda e: e.get("id") == "form")
        assert form.find(f"{{{NS_REG}}}query/{{{NS_REG}}}username").text == name, s.describe()
        el = raw_register(s, unique("other"), "pw-1", "other")
        assert harness.stanza_error_condition(el) == "not-acceptable", s.describe()
        el = raw_register(s, name, "pw-1")
        assert el.get("type") == "result", s.describe()
    assert run(can_login(srv, f"{name}@{srv.domain}", "pw-1"))


def roster_items(c) -> dict:
    return {str(j): c.client_roster[j]["subscription"] for j in c.client_roster}


def test_contact_invitation_subscribes_both_ways(server_factory):
    srv = invite_server(server_factory, **{"invites.users_may_invite": True})
    alice_jid, alice_pw = srv.add_user()
    new_user, new_pw = unique("friend"), "pw-" + unique()
    new_jid = f"{new_user}@{srv.domain}"

    async def scenario():
        alice = await login(srv, alice_jid, alice_pw)
        try:
            await alice.get_roster()
            uri, token = await contact_invite(alice, srv)
            assert uri == f"xmpp:{alice_jid}?roster;preauth={token};ibr=y", uri
            pa, reg = await asyncio.to_thread(register_with_token, srv, token, new_user, new_pw)
            assert reg is not None and reg.get("type") == "result", (ET.tostring(pa), reg)
            # Alice's client gets the roster push.
            ok = await until(lambda: roster_items(alice).get(new_jid) == "both")
            assert ok, roster_items(alice)
            friend = await login(srv, new_jid, new_pw)
            try:
                await friend.get_roster()
                assert roster_items(friend).get(alice_jid) == "both", roster_items(friend)
                # Subscribed both ways: alice sees the friend come online.
                await alice.wait_presence(lambda p: p["from"].bare == new_jid and p["type"] == "available")
            finally:
                await close_all(friend)
            await alice.get_roster()
            assert roster_items(alice).get(new_jid) == "both", roster_items(alice)
        finally:
            await close_all(alice)

    run(scenario())


def test_existing_account_takes_up_a_contact_invitation(server_factory):
    """XEP-0379 §3.4: a subscription request carrying the token is approved both ways."""
    srv = invite_server(server_factory, **{"invites.users_may_invite": True})
    alice_jid, alice_pw = srv.add_user()
    bob_jid, bob_pw = srv.add_user()
    carol_jid, carol_pw = srv.add_user()

    async def scenario():
        alice = await login(srv, alice_jid, alice_pw)
        bob = await login(srv, bob_jid, bob_pw)
        try:
            _, token = await contact_invite(alice, srv)
            await bob.get_roster()
            send_preauth_subscribe(bob, alice_jid, token)
            assert await until(lambda: roster_items(bob).get(alice_jid) == "both"), roster_items(bob)
            await alice.get_roster()
            assert roster_items(alice).get(bob_jid) == "both", roster_items(alice)
        finally:
            await close_all(alice, bob)
        # Used once: a third account with the same token only asks, as usual.
        carol = await login(srv, carol_jid, carol_pw)
        try:
            await carol.get_roster()
            send_preauth_subscribe(carol, alice_jid, token)
            await carol.ping_server()
            await carol.get_roster()
            assert roster_items(carol).get(alice_jid) == "none", roster_items(carol)
        finally:
            await close_all(carol)

    run(scenario())


def test_users_invitations_register_no_accounts_by_default(server_factory):
    """Without invites.users_may_invite a user's invitation only subscribes
    existing accounts (no ibr=y, preauth refused); create-account is for admins."""
    srv = invite_server(server_factory)
    jid, pw = srv.add_user()
    bob_jid, bob_pw = srv.add_user()

    async def scenario():
        c = await login(srv, jid, pw)
        bob = await login(srv, bob_jid, bob_pw)
        try:
            with pytest.raises(Exception) as e:
                await c.iq("set", f"<command xmlns='{NS_CMD}' node='urn:xmpp:invite#create-account' "
                                  "action='execute'/>", to=srv.domain)
            assert e.value.iq["error"]["condition"] == "forbidden"
            uri, token = await contact_invite(c, srv)
            assert uri == f"xmpp:{jid}?roster;preauth={token}", uri
            pa, reg = await asyncio.to_thread(register_with_token, srv, token, unique("no"), "pw")
            assert harness.stanza_error_condition(pa) == "item-not-found" and reg is None, ET.tostring(pa)
            # The landing page offers no registration, and a POST creates nothing.
            status, _, body = await asyncio.to_thread(http, srv, "GET", f"/invite/{token}")
            assert status == 200 and "<form" not in body and uri in body, body
            name = unique("web")
            status, _, _ = await asyncio.to_thread(
                http, srv, "POST", f"/invite/{token}", {"username": name, "password": "p", "confirm": "p"})
            assert status == 404
            # An existing account takes it up.
            await bob.get_roster()
            send_preauth_subscribe(bob, jid, token)
            assert await until(lambda: roster_items(bob).get(jid) == "both"), roster_items(bob)
        finally:
            await close_all(c, bob)

    run(scenario())
    assert sorted(users(srv)) == sorted([srv.admin[0], jid, bob_jid])


# --- the HTTPS landing page ----------------------------------------------------------


def http(srv, method: str, path: str, form: dict | None = None):
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(f"https://{harness.LOOPBACK}:{srv.http_port}{path}", data=data, method=method)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=harness.insecure_ssl_context()),
        urllib.request.ProxyHandler({}),
    )
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def test_landing_page_shows_and_registers(server_factory):
    srv = invite_server(server_factory)
    r = srv.cli("invite", "create")
    assert r.returncode == 0, r.stderr
    token = TOKEN_RE.search(r.stdout).group(1)
    path = f"/invite/{token}"

    status, headers, body = http(srv, "GET", path)
    assert status == 200, body
    assert f"xmpp:{srv.domain}?register;preauth={token}" in body
    assert f'href="xmpp:{srv.domain}?register;preauth={token}"' in body
    assert srv.domain in body and "<form" in body
    csp = headers.get("content-security-policy", "")
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp, csp
    assert headers.get("referrer-policy") == "no-referrer", headers
    assert "<script" not in body and "http://" not in body.replace(f"https://{srv.domain}", "")

    # A bad username: the page's error, nothing created, the token still valid.
    status, _, body = http(srv, "POST", path, {"username": "bad@name", "password": "pw-1", "confirm": "pw-1"})
    assert status == 400 and "not allowed" in body, (status, body)
    status, _, body = http(srv, "POST", path, {"username": "x" + unique(), "password": "pw-1", "confirm": "pw-2"})
    assert status == 400 and "differ" in body, (status, body)
    assert users(srv) == [srv.admin[0]]

    user, pw = unique("web"), "pw-" + unique()
    status, _, body = http(srv, "POST", path, {"username": user, "password": pw, "confirm": pw})
    assert status == 200, body
    assert f"{user}@{srv.domain}" in body
    assert run(can_login(srv, f"{user}@{srv.domain}", pw))

    # Used: the page says so, with 404, and a second POST creates nothing.
    status, _, body = http(srv, "GET", path)
    assert status == 404, body
    again = unique("again")
    status, _, _ = http(srv, "POST", path, {"username": again, "password": "pw", "confirm": "pw"})
    assert status == 404
    assert f"{again}@{srv.domain}" not in users(srv)
    # Unknown and malformed tokens.
    assert http(srv, "GET", "/invite/" + "0" * 32)[0] == 404
    assert http(srv, "GET", "/invite/not-a-token")[0] == 404
    assert token not in srv.log_text()


def test_landing_page_posts_are_throttled(server_factory):
    srv = invite_server(server_factory, **{"limits.auth_failures_per_minute": 3})
    r = srv.cli("invite", "create")
    token = TOKEN_RE.search(r.stdout).group(1)
    for _ in range(3):
        status, _, _ = http(srv, "POST", f"/invite/{token}", {"username": "a@b", "password": "p", "confirm": "p"})
        assert status == 400
    # Past the limit even a good request is refused for now.
    user = unique("late")
    status, _, _ = http(srv, "POST", f"/invite/{token}", {"username": user, "password": "p", "confirm": "p"})
    assert status == 429
    assert f"{user}@{srv.domain}" not in users(srv)
