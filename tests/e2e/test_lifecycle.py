"""Crash durability and graceful shutdown of the server process."""

import asyncio
import signal
import time

from clients import Client, login, run
from harness import prosody_flaky, unique

SHUTDOWN_RACE = "at shutdown it sometimes closes sockets before flushing <system-shutdown/>"


def test_offline_message_survives_sigkill(server_factory):
    srv = server_factory()
    alice_jid, alice_pw = srv.add_user()
    bob_jid, bob_pw = srv.add_user()
    body = "durable " + unique("m")

    async def send():
        alice = await login(srv, alice_jid, alice_pw)
        try:
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
            # in-order processing: the ping result acknowledges the message
            await alice.ping_server()
        finally:
            alice.abort_now()

    run(send())
    srv.signal(signal.SIGKILL)
    srv.wait(10)
    srv.start()

    async def receive():
        bob = await login(srv, bob_jid, bob_pw)
        try:
            msg = await bob.next_message(timeout=10)
            assert msg["body"] == body
            assert msg["from"].bare == alice_jid
        finally:
            await bob.close()

    run(receive())


def test_accounts_and_roster_survive_restart(server_factory):
    srv = server_factory()
    alice_jid, alice_pw = srv.add_user()
    bob_jid, _ = srv.add_user()

    async def add():
        alice = await login(srv, alice_jid, alice_pw)
        try:
            await alice.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{bob_jid}' name='B'/></query>")
            await alice.ping_server()
        finally:
            alice.abort_now()

    run(add())
    srv.signal(signal.SIGKILL)
    srv.wait(10)
    srv.start()

    async def check():
        alice = await login(srv, alice_jid, alice_pw)
        try:
            iq = await alice.iq("get", "<query xmlns='jabber:iq:roster'/>")
            jids = [i.get("jid") for i in iq.xml.iter("{jabber:iq:roster}item")]
            assert bob_jid in jids
        finally:
            await alice.close()

    run(check())


@prosody_flaky(SHUTDOWN_RACE)
def test_sigterm_graceful_shutdown(server_factory):
    srv = server_factory()
    jid, pw = srv.add_user()

    async def scenario():
        c = await login(srv, jid, pw)
        # make sure the server has read everything we sent (unread input makes
        # a closing TCP peer send RST, which can destroy the stream error in flight)
        await c.ping_server()
        try:
            t0 = time.monotonic()
            srv.signal(signal.SIGTERM)
            await c.wait_disconnected(timeout=10)
            assert "system-shutdown" in c.stream_errors, f"stream errors seen: {c.stream_errors}"
            return time.monotonic() - t0
        finally:
            c.abort_now()

    run(scenario())
    t0 = time.monotonic()
    rc = srv.wait(timeout=10)
    assert rc == 0, f"exit status {rc} after SIGTERM"
    assert time.monotonic() - t0 < 8


def test_sigterm_with_no_clients_exits_zero(server_factory):
    srv = server_factory()
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=10) == 0


@prosody_flaky(SHUTDOWN_RACE)
def test_sigint_graceful_shutdown(server_factory):
    """Ctrl-C behaves like SIGTERM."""
    srv = server_factory()
    jid, pw = srv.add_user()

    async def scenario():
        c = await login(srv, jid, pw)
        await c.ping_server()  # see test_sigterm_graceful_shutdown
        try:
            srv.signal(signal.SIGINT)
            await c.wait_disconnected(timeout=10)
            assert "system-shutdown" in c.stream_errors, c.stream_errors
        finally:
            c.abort_now()

    run(scenario())
    assert srv.wait(timeout=10) == 0


@prosody_flaky(SHUTDOWN_RACE)
def test_sigterm_with_many_clients(server_factory):
    srv = server_factory()
    users = [srv.add_user() for _ in range(8)]

    async def scenario():
        clients = [await login(srv, *u) for u in users]
        await asyncio.gather(*(c.ping_server() for c in clients))  # see test_sigterm_graceful_shutdown
        try:
            srv.signal(signal.SIGTERM)
            await asyncio.gather(*(c.wait_disconnected(timeout=10) for c in clients))
            for c in clients:
                assert "system-shutdown" in c.stream_errors, c.stream_errors
        finally:
            for c in clients:
                c.abort_now()

    run(scenario())
    assert srv.wait(timeout=10) == 0


def test_acknowledged_account_changes_survive_sigkill(server_factory):
    """Registration, vCard and password change are durable once the server has answered."""
    srv = server_factory()
    jid = f"{unique('dur')}@{srv.domain}"

    async def change():
        c = Client(srv, jid, "first-pw", register=True)
        await c.login()
        try:
            await asyncio.wait_for(c.registered, 5)
            await c.iq("set", "<vCard xmlns='vcard-temp'><FN>Durable Dora</FN></vCard>")
            await c.iq(
                "set",
                f"<query xmlns='jabber:iq:register'><username>{c.boundjid.user}</username>"
                "<password>second-pw</password></query>",
                to=srv.domain,
            )
        finally:
            c.abort_now()

    run(change())
    srv.signal(signal.SIGKILL)
    srv.wait(10)
    srv.start()

    async def check():
        c = await login(srv, jid, "second-pw")
        try:
            iq = await c.iq("get", "<vCard xmlns='vcard-temp'/>")
            assert "Durable Dora" in str(iq), iq
        finally:
            await c.close()

    run(check())
