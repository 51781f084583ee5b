"""XEP-0050 ad-hoc commands with the XEP-0133 administration commands,
driven by slixmpp's xep_0050 plugin as an administrator and as a user."""

import asyncio
import xml.etree.ElementTree as ET

import pytest

import harness
from clients import IqError, T, can_login, close_all, login, run
from harness import unique

NS_CMD = "http://jabber.org/protocol/commands"
NS_XDATA = "jabber:x:data"
ADMIN = "http://jabber.org/protocol/admin"
ADMIN_USER = unique("admin")


@pytest.fixture(scope="module")
def asrv():
    """One server per module with one administrator."""
    srv = harness.make_server({"admins": [f"{ADMIN_USER}@{harness.DOMAIN}"]}, "adhoc-server")
    srv.start()
    srv.admin = srv.add_user(ADMIN_USER)
    yield srv
    srv.cleanup()


async def connect(srv, jid=None, pw=None):
    if jid is None:
        jid, pw = srv.add_user()
    c = await login(srv, jid, pw)
    c.register_plugin("xep_0004")
    c.register_plugin("xep_0050")
    return c


def submit(fields: dict) -> ET.Element:
    x = ET.Element(f"{{{NS_XDATA}}}x", type="submit")
    for var, value in {"FORM_TYPE": ADMIN, **fields}.items():
        f = ET.SubElement(x, f"{{{NS_XDATA}}}field", var=var)
        for v in value if isinstance(value, list) else [value]:
            ET.SubElement(f, f"{{{NS_XDATA}}}value").text = v
    return x


def send(c, srv, node, **kw):
    return c.plugin["xep_0050"].send_command(srv.domain, f"{ADMIN}#{node}", timeout=T, **kw)


async def execute(c, srv, node, fields: dict):
    """execute → the form; complete with the fields → the completed command."""
    r = await send(c, srv, node)
    cmd = r["command"]
    assert cmd["status"] == "executing", r
    assert cmd["form"]["type"] == "form"
    r = await send(c, srv, node, action="complete", sessionid=cmd["sessionid"], payload=submit(fields))
    assert r["command"]["status"] == "completed", r
    return r


def conditions(err: IqError) -> tuple[str, str | None]:
    """The stanza error condition and XEP-0050's specific condition, if any."""
    el = err.iq.xml.find("{jabber:client}error")
    specific = next((c.tag.split("}")[1] for c in el if c.tag.startswith(f"{{{NS_CMD}}}")), None)
    return err.iq["error"]["condition"], specific


def test_admin_commands_listed_for_the_admin_only(asrv):
    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        user = await connect(asrv)
        try:
            items = await admin.plugin["xep_0050"].get_commands(asrv.domain, timeout=T)
            nodes = {i[1] for i in items["disco_items"]["items"]}
            for n in ("add-user", "delete-user", "change-user-password", "announce"):
                assert f"{ADMIN}#{n}" in nodes, nodes
            assert "urn:xmpp:invite#create-account" in nodes, nodes
            # A user sees only XEP-0401's contact invitation.
            items = await user.plugin["xep_0050"].get_commands(asrv.domain, timeout=T)
            assert {i[1] for i in items["disco_items"]["items"]} == {"urn:xmpp:invite#invite"}
            info = await admin.plugin["xep_0030"].get_info(jid=asrv.domain, timeout=T)
            assert NS_CMD in info["disco_info"]["features"]
            info = await admin.plugin["xep_0030"].get_info(jid=asrv.domain, node=f"{ADMIN}#add-user", timeout=T)
            assert ("automation", "command-node") in {i[:2] for i in info["disco_info"]["identities"]}
        finally:
            await close_all(admin, user)

    run(scenario())


def test_add_user_then_the_new_user_logs_in(asrv):
    new = f"{unique('new')}@{asrv.domain}"

    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        try:
            await execute(admin, asrv, "add-user", {"accountjid": new, "password": "pw-new-1", "password-verify": "pw-new-1"})
        finally:
            await close_all(admin)
        assert await can_login(asrv, new, "pw-new-1")

    run(scenario())
    if harness.TARGET == "conclave":
        assert "pw-new-1" not in asrv.log_text()


def test_non_admin_is_forbidden(asrv):
    victim, victim_pw = asrv.add_user()

    async def scenario():
        user = await connect(asrv)
        try:
            with pytest.raises(IqError) as e:
                await send(user, asrv, "add-user")
            assert e.value.iq["error"]["condition"] == "forbidden"
            with pytest.raises(IqError) as e:
                await send(user, asrv, "delete-user", action="complete", sessionid="guess",
                           payload=submit({"accountjids": [victim]}))
            assert e.value.iq["error"]["condition"] == "forbidden"
        finally:
            await close_all(user)
        assert await can_login(asrv, victim, victim_pw)

    run(scenario())


def test_announce_reaches_every_online_user(asrv):
    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        a = await connect(asrv)
        b = await connect(asrv)
        try:
            await execute(admin, asrv, "announce", {"subject": "Maintenance", "announcement": ["Back at six.", "Thanks."]})
            for c in (a, b):
                m = await c.next_message()
                assert m["from"] == asrv.domain
                assert m["subject"] == "Maintenance"
                assert m["body"] == "Back at six.\nThanks."
                assert m["to"].bare == c.boundjid.bare
        finally:
            await close_all(admin, a, b)

    run(scenario())
    if harness.TARGET == "conclave":
        assert "Back at six" not in asrv.log_text()


def test_delete_user_then_login_fails(asrv):
    jid, pw = asrv.add_user()

    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        victim = await connect(asrv, jid, pw)
        try:
            await execute(admin, asrv, "delete-user", {"accountjids": [jid]})
            # Its open stream is ended too.
            await victim.wait_disconnected()
        finally:
            await close_all(admin, victim)
        assert not await can_login(asrv, jid, pw)

    run(scenario())


def test_change_user_password(asrv):
    jid, pw = asrv.add_user()

    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        try:
            await execute(admin, asrv, "change-user-password", {"accountjid": jid, "password": "pw-changed-2"})
        finally:
            await close_all(admin)
        assert await can_login(asrv, jid, "pw-changed-2")
        assert not await can_login(asrv, jid, pw)

    run(scenario())
    if harness.TARGET == "conclave":
        assert "pw-changed-2" not in asrv.log_text()


@pytest.mark.conclave_only
def test_bad_input_gets_errors_and_changes_nothing(asrv):
    existing, existing_pw = asrv.add_user()
    new = f"{unique('new')}@{asrv.domain}"

    async def scenario():
        admin = await connect(asrv, *asrv.admin)

        async def refused(node, fields):
            r = await send(admin, asrv, node)
            with pytest.raises(IqError) as e:
                await send(admin, asrv, node, action="complete", sessionid=r["command"]["sessionid"],
                           payload=submit(fields))
            return conditions(e.value)

        try:
            mismatch = {"accountjid": new, "password": "a-1", "password-verify": "b-2"}
            assert await refused("add-user", mismatch) == ("bad-request", "bad-payload")
            assert await refused("add-user", {"accountjid": "not a jid@@", "password": "x", "password-verify": "x"}) == ("bad-request", "bad-payload")
            assert await refused("add-user", {"accountjid": "x@elsewhere.example", "password": "x", "password-verify": "x"}) == ("bad-request", "bad-payload")
            assert (await refused("add-user", {"accountjid": existing, "password": "x-9", "password-verify": "x-9"}))[0] == "conflict"
            gone = f"{unique('gone')}@{asrv.domain}"
            assert (await refused("delete-user", {"accountjids": [existing, gone]}))[0] == "item-not-found"
            assert (await refused("change-user-password", {"accountjid": gone, "password": "y"}))[0] == "item-not-found"
            assert await refused("change-user-password", {"accountjid": existing, "password": ""}) == ("bad-request", "bad-payload")
        finally:
            await close_all(admin)
        assert not await can_login(asrv, new, "a-1")
        assert await can_login(asrv, existing, existing_pw)

    run(scenario())


@pytest.mark.conclave_only
def test_command_sessions_and_actions(asrv):
    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        try:
            with pytest.raises(IqError) as e:
                await send(admin, asrv, "add-user", action="complete", sessionid="never-issued",
                           payload=submit({"accountjid": "x@localhost"}))
            assert conditions(e.value) == ("bad-request", "bad-sessionid")
            with pytest.raises(IqError) as e:
                await send(admin, asrv, "add-user", action="sideways")
            assert conditions(e.value) == ("bad-request", "malformed-action")
            with pytest.raises(IqError) as e:
                await send(admin, asrv, "no-such-command")
            assert e.value.iq["error"]["condition"] == "item-not-found"
            r = await send(admin, asrv, "add-user")
            sid = r["command"]["sessionid"]
            with pytest.raises(IqError) as e:
                await send(admin, asrv, "add-user", action="next", sessionid=sid)
            assert conditions(e.value) == ("bad-request", "bad-action")
            r = await send(admin, asrv, "add-user", action="cancel", sessionid=sid)
            assert r["command"]["status"] == "canceled"
            # A cancelled session is over.
            with pytest.raises(IqError) as e:
                await send(admin, asrv, "add-user", action="complete", sessionid=sid,
                           payload=submit({"accountjid": "x@localhost", "password": "p", "password-verify": "p"}))
            assert conditions(e.value) == ("bad-request", "bad-sessionid")
        finally:
            await close_all(admin)

    run(scenario())


async def run_without_form(c, srv, node, fields=None):
    """A command that needs no input; if the server asks a form first
    (Prosody's max_items), submit it as is."""
    r = await send(c, srv, node)
    if r["command"]["status"] == "executing":
        r = await send(c, srv, node, action="complete", sessionid=r["command"]["sessionid"],
                       payload=submit(fields or {}))
    assert r["command"]["status"] == "completed"
    return r["command"]["form"]["values"]


@pytest.mark.conclave_only
def test_online_users_num(asrv):
    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        user = await connect(asrv)
        try:
            values = await run_without_form(admin, asrv, "get-online-users-num")
            assert int(values["onlineusersnum"]) >= 2
        finally:
            await close_all(admin, user)

    run(scenario())


def test_online_users_list(asrv):
    async def scenario():
        admin = await connect(asrv, *asrv.admin)
        user = await connect(asrv)
        try:
            values = await run_without_form(admin, asrv, "get-online-users-list", {"max_items": "100"})
            jids = values["onlineuserjids"]
            assert user.boundjid.bare in jids and admin.boundjid.bare in jids
        finally:
            await close_all(admin, user)

    run(scenario())
