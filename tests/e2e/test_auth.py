"""Registration, SASL mechanisms, TLS modes, bad credentials, resource conflicts."""

import asyncio

import pytest

import harness
from clients import Client, LoginFailed, close_all, login, run
from harness import NS_SASL, NS_TLS, RawStream, unique


def test_register_then_login(server):
    """XEP-0077 in-band registration with slixmpp, then a fresh login."""
    jid = f"{unique('reg')}@{server.domain}"
    password = "Reg-" + unique("pw")

    async def scenario():
        c = Client(server, jid, password, register=True)
        try:
            await c.login()
            assert await asyncio.wait_for(c.registered, 5) is True
            assert c.boundjid.bare == jid
        finally:
            await c.close()
        # New connection with the registered credentials.
        c2 = await login(server, jid, password)
        try:
            await c2.ping_server()
        finally:
            await c2.close()
        # Registering the same username again must fail (conflict).
        c3 = Client(server, jid, "other-password", register=True)
        try:
            with pytest.raises(LoginFailed):
                await c3.login()
            with pytest.raises(Exception) as ei:
                await asyncio.wait_for(c3.registered, 2)
            assert getattr(ei.value, "condition", None) == "conflict", repr(ei.value)
        finally:
            await c3.close()

    run(scenario())


def test_register_stream_feature_advertised(server):
    """With registration allowed, post-TLS stream features carry XEP-0077's feature."""
    with RawStream(server) as r:
        feats = r.tls_open()
        assert feats.find("{http://jabber.org/features/iq-register}register") is not None, r.describe()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
def test_login_each_sasl_mechanism(server, mech):
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.tls_open()
        offered = r.mechanisms()
    if mech not in offered:
        if harness.TARGET == "prosody":
            pytest.skip(f"reference server does not offer {mech}")
        pytest.fail(f"{mech} not offered after TLS; offered: {offered}")

    async def scenario():
        c = Client(server, jid, pw, mech=mech)
        mechs_used = []
        c.add_event_handler("auth_success", lambda _: mechs_used.append(c.plugin["feature_mechanisms"].mech.name))
        await c.login()
        try:
            assert mechs_used == [mech]
            assert c.boundjid.bare == jid
            await c.ping_server()
        finally:
            await c.close()

    run(scenario())


def test_sasl_anonymous_on_guest_host(server):
    async def scenario():
        c = Client(server, server.guest_domain, "")
        await c.login()
        try:
            assert c.boundjid.domain == server.guest_domain
            assert c.boundjid.user, f"anonymous JID has no localpart: {c.boundjid}"
            assert c.boundjid.resource, f"no resource generated: {c.boundjid}"
            await c.ping_server()
        finally:
            await c.close()

    run(scenario())


def test_anonymous_not_offered_on_main_host(server):
    with RawStream(server) as r:
        r.tls_open()
        assert "ANONYMOUS" not in r.mechanisms()


def test_plain_not_offered_before_tls(server):
    with RawStream(server) as r:
        feats = r.open()
        assert feats.find(f"{{{NS_TLS}}}starttls") is not None
        assert "PLAIN" not in r.mechanisms(), r.describe()


@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_tls_modes(server, tls):
    """STARTTLS on starttls_port and XEP-0368 direct TLS on direct_tls_port."""
    jid, pw = server.add_user()

    async def scenario():
        c = Client(server, jid, pw, tls=tls)
        await c.login()
        try:
            assert c.socket is not None and hasattr(c.socket, "version"), "not encrypted"
            assert c.socket.version().startswith("TLSv1.")
            await c.ping_server()
        finally:
            await c.close()

    run(scenario())


def test_starttls_required_before_auth(server):
    """require_encryption: SASL before STARTTLS must not succeed."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        feats = r.open()
        st = feats.find(f"{{{NS_TLS}}}starttls")
        assert st is not None
        assert st.find(f"{{{NS_TLS}}}required") is not None, "STARTTLS should be marked <required/>"
        try:
            r.send(
                f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-1'>biwsbj11c2VyLHI9YWJjZGVmZ2hpams=</auth>"
            )
            el = r.wait_for(lambda e: True, timeout=5)
        except harness.StreamClosed:
            return
        assert el.tag != f"{{{NS_SASL}}}challenge" and el.tag != f"{{{NS_SASL}}}success", r.describe()


def test_wrong_password_rejected(server):
    jid, pw = server.add_user()

    async def scenario():
        c = Client(server, jid, pw + "-wrong", mech="SCRAM-SHA-1")
        with pytest.raises(LoginFailed) as ei:
            await c.login()
        await c.close()
        assert ei.value.kind == "failed_auth", str(ei.value)
        assert ei.value.condition == "not-authorized", str(ei.value)

    run(scenario())
    # Same with raw PLAIN, and an unknown user gives the same answer (no user enumeration).
    for user, password in ((jid.split("@")[0], "bad"), (unique("nosuch"), "bad")):
        with RawStream(server) as r:
            r.tls_open()
            res = r.auth_plain(user, password)
            assert res.tag == f"{{{NS_SASL}}}failure", r.describe()
            assert harness.sasl_failure_condition(res) == "not-authorized", r.describe()


def test_same_resource_conflict(server):
    """RFC 6120 7.7.2.2: old session gets <conflict/>, or new session gets another resource."""
    jid, pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        old = Client(server, jid + "/desk", pw)
        await old.login()
        new = Client(server, jid + "/desk", pw)
        await new.login()
        bob_c = await login(server, bob_jid, bob_pw)
        try:
            if new.boundjid.resource == "desk":
                # The server must have terminated the old session with <conflict/>.
                await old.wait_disconnected(timeout=5)
                assert "conflict" in old.stream_errors, old.stream_errors
            else:
                # New session got a different resource; old one still works.
                assert new.boundjid.resource, new.boundjid
                await old.ping_server()
            # The newest connection works end to end.
            await new.ping_server()
            bob_c.send_message(mto=new.boundjid.full, mbody="to-newest", mtype="chat")
            msg = await new.next_message(timeout=5)
            assert msg["body"] == "to-newest"
        finally:
            await close_all(old, new, bob_c)

    run(scenario())


def test_registration_disabled(server_factory):
    srv = server_factory({"registration.allow": False})
    jid = f"{unique('reg')}@{srv.domain}"

    with RawStream(srv) as r:
        feats = r.tls_open()
        assert feats.find("{http://jabber.org/features/iq-register}register") is None, "feature advertised"
        r.send("<iq type='set' id='r1'><query xmlns='jabber:iq:register'>"
               f"<username>{jid.split('@')[0]}</username><password>pw</password></query></iq>")
        try:
            el = r.wait_for(lambda e: e.get("id") == "r1")
            assert el.get("type") == "error", r.describe()
            assert harness.stanza_error_condition(el) in ("not-allowed", "service-unavailable", "forbidden"), r.describe()
        except harness.StreamClosed:
            pass  # refusing by closing the stream is acceptable too

    async def no_account():
        c = Client(srv, jid, "pw", mech="PLAIN")
        with pytest.raises(LoginFailed):
            await c.login()
        await c.close()

    run(no_account())

    # password change needs only authentication, not open registration
    user_jid, pw = srv.add_user()

    async def change():
        c = await login(srv, user_jid, pw)
        try:
            await c.iq("set", f"<query xmlns='jabber:iq:register'><username>{c.boundjid.user}</username>"
                              "<password>changed-pw</password></query>", to=srv.domain)
        finally:
            await c.close()
        c = await login(srv, user_jid, "changed-pw")
        await c.close()

    run(change())


def test_plain_disabled(server_factory):
    srv = server_factory({"auth.allow_plain": False})
    with RawStream(srv) as r:
        r.tls_open()
        mechs = r.mechanisms()
        assert "PLAIN" not in mechs and mechs, mechs
        jid, pw = srv.add_user()
        res = r.auth_plain(jid.split("@")[0], pw)
        assert res.tag == f"{{{NS_SASL}}}failure", r.describe()
        assert harness.sasl_failure_condition(res) in ("invalid-mechanism", "encryption-required"), r.describe()


def test_username_is_case_insensitive(server):
    """RFC 7622 localparts are case-folded: Alice@localhost is alice@localhost."""
    local = unique("casey")
    jid, pw = server.add_user(local)

    async def scenario():
        c = await login(server, f"{local.upper()}@{server.domain}", pw, mech="SCRAM-SHA-1")
        try:
            assert c.boundjid.bare == jid, c.boundjid
        finally:
            await c.close()

    run(scenario())


def test_guest_cannot_register_or_use_password_on_guest_host(server):
    """guest_host is SASL ANONYMOUS only."""
    with RawStream(server) as r:
        r.open(to=server.guest_domain)
        r.starttls()
        r.open(to=server.guest_domain)
        mechs = r.mechanisms()
        assert "ANONYMOUS" in mechs, mechs
        assert not ({"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"} & set(mechs)), mechs


def test_anonymous_jids_are_unique(server):
    async def scenario():
        a = await login(server, server.guest_domain, "")
        b = await login(server, server.guest_domain, "")
        try:
            assert a.boundjid.bare != b.boundjid.bare
            # guests can talk to each other
            a.send_message(mto=b.boundjid.full, mbody="hi guest", mtype="chat")
            assert (await b.next_message())["body"] == "hi guest"
        finally:
            await close_all(a, b)

    run(scenario())
