"""XEP-0077 account management while logged in: password change and removal."""

import asyncio

import pytest

from clients import Client, LoginFailed, login, run


def test_password_change(server):
    jid, old_pw = server.add_user()
    new_pw = old_pw + "-new"

    async def scenario():
        c = await login(server, jid, old_pw)
        try:
            await c.iq(
                "set",
                f"<query xmlns='jabber:iq:register'><username>{c.boundjid.user}</username>"
                f"<password>{new_pw}</password></query>",
                to=server.domain,
            )
        finally:
            await c.close()
        c = await login(server, jid, new_pw)
        await c.close()
        bad = Client(server, jid, old_pw, mech="PLAIN")
        with pytest.raises(LoginFailed) as ei:
            await bad.login()
        await bad.close()
        assert ei.value.condition == "not-authorized", str(ei.value)

    run(scenario())


def test_password_change_for_other_user_refused(server):
    alice, alice_pw = server.add_user()
    bob, bob_pw = server.add_user()

    async def scenario():
        c = await login(server, alice, alice_pw)
        try:
            with pytest.raises(Exception):
                await c.iq(
                    "set",
                    f"<query xmlns='jabber:iq:register'><username>{bob.split('@')[0]}</username>"
                    "<password>owned</password></query>",
                    to=server.domain,
                )
        finally:
            await c.close()
        # bob's password still works
        b = await login(server, bob, bob_pw)
        await b.close()

    run(scenario())


def test_account_removal(server):
    jid, pw = server.add_user()

    async def scenario():
        c = await login(server, jid, pw)
        try:
            try:
                await c.iq("set", "<query xmlns='jabber:iq:register'><remove/></query>", to=server.domain)
            except Exception as e:  # the server may close the stream right after the result
                if c.transport is not None:
                    raise AssertionError(f"remove failed: {e!r}")
        finally:
            await c.close()
        await asyncio.sleep(0.2)
        again = Client(server, jid, pw, mech="PLAIN")
        with pytest.raises(LoginFailed) as ei:
            await again.login()
        await again.close()
        assert ei.value.kind == "failed_auth" and ei.value.condition == "not-authorized", str(ei.value)

    run(scenario())
