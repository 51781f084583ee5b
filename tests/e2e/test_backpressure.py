"""Full send queues lose nothing. A sender whose recipients' queues are
long is read slower (TCP back-pressure); a recipient that takes no bytes
for limits.send_stall_secs is closed, and what it had not taken goes to
offline storage or back to its sender. Every message is counted: delivered,
stored offline and delivered at the next login, or bounced with an error."""

import asyncio
import re
import socket
import time

import pytest

from clients import close_all, login, run
from harness import RawStream

pytestmark = pytest.mark.conclave_only

BODY = re.compile(rb"<body>(m-\d+-\d+)[ <]")


def test_a_fast_sender_is_slowed_and_loses_nothing(server):
    """One session sends 10,000 messages as fast as slixmpp writes them to
    a bystander that reads: the bystander gets every one, once, in order."""
    n = 10_000
    a_jid, a_pw = server.add_user()
    b_jid, b_pw = server.add_user()

    async def scenario():
        a = await login(server, a_jid, a_pw)
        b = await login(server, b_jid, b_pw)
        try:
            for i in range(n):
                a.send_message(mto=b_jid, mbody=f"m-0-{i}", mtype="chat")
            got = []
            while len(got) < n:
                m = await b.next_message(timeout=60)
                got.append(m["body"])
            assert got == [f"m-0-{i}" for i in range(n)]
            await asyncio.sleep(0.5)
            assert b.messages.empty(), "a message came twice"
        finally:
            await close_all(a, b)

    run(scenario(), timeout=180)


def test_a_recipient_that_stops_reading_is_closed_and_every_message_is_accounted_for(server_factory):
    """A client (with XEP-0198, as every mobile client has) that stops
    reading while two senders write it 8 MB: the senders are slowed, the
    reader is closed after send_stall_secs, and each message was either
    read by it before the close, stored offline and delivered at its next
    login, or bounced to its sender (past the offline quota). None is lost.

    Without XEP-0198 what the server handed to TCP counts as delivered, as
    RFC 6120 has it; what was still queued is kept the same way."""
    # It never acknowledges (XEP-0198), as a client that stopped reading
    # would not: a high unacked cap keeps that from closing it first.
    srv = server_factory(
        {"limits.send_stall_secs": 3, "limits.max_offline_messages": 300, "limits.sm_unacked_max": 100_000}
    )
    r_jid, r_pw = srv.add_user()
    senders = [srv.add_user() for _ in range(2)]
    per_sender = 4000
    pad = "x" * 1000

    raw = RawStream(srv, timeout=10)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.login(r_jid.split("@")[0], r_pw)
    raw.send("<enable xmlns='urn:xmpp:sm:3'/>")
    raw.wait_for(lambda e: e.tag == "{urn:xmpp:sm:3}enabled")
    raw.send("<presence/>")

    async def send_all():
        clients = [await login(srv, j, p) for j, p in senders]
        bounced = set()
        for c in clients:
            c.add_event_handler(
                "message_error",
                lambda m: bounced.add(re.sub(r" .*", "", m["body"])) if m["body"] else None,
            )
        try:
            t0 = time.monotonic()
            for i in range(per_sender):
                for k, c in enumerate(clients):
                    c.send_message(mto=r_jid, mbody=f"m-{k}-{i} {pad}", mtype="chat")
            # Everything each sender wrote was handled once a ping returns.
            for c in clients:
                await c.ping_server(timeout=60)
            elapsed = time.monotonic() - t0
            await asyncio.sleep(1)
            return bounced, elapsed
        finally:
            await close_all(*clients)

    bounced, elapsed = run(send_all(), timeout=120)
    # The reader was closed: what is in its socket is what it received.
    # Its 4 KiB window drains the rest of the server's send buffer only
    # at the pace of TCP's zero-window probes, so read for a while, not to
    # the end: whatever it did not read was unacknowledged (XEP-0198) and
    # so is counted offline or bounced as well.
    raw.sock.settimeout(2)
    data = raw.raw_in
    until = time.monotonic() + 10
    while time.monotonic() < until:
        try:
            chunk = raw.sock.recv(1 << 20)
        except (OSError, ValueError):
            break
        if not chunk:
            break
        data += chunk
    raw.close()
    read = [m.decode() for m in BODY.findall(data)]
    assert b"resource-constraint" in data or b"</stream:stream>" in data or len(read) < 2 * per_sender
    assert len(read) == len(set(read)), "a message was read twice"

    async def offline():
        c = await login(srv, r_jid, r_pw)
        got = []
        try:
            while True:
                try:
                    m = await c.next_message(timeout=2)
                except asyncio.TimeoutError:
                    break
                got.append(m["body"].split(" ")[0])
        finally:
            await close_all(c)
        return got

    stored = run(offline())
    assert len(stored) == len(set(stored)), "an offline message came twice"
    everything = {f"m-{k}-{i}" for k in range(2) for i in range(per_sender)}
    accounted = set(read) | set(stored) | bounced
    missing = everything - accounted
    assert not missing, f"{len(missing)} messages lost (read {len(read)}, offline {len(stored)}, bounced {len(bounced)})"
    # each path was really taken: the reader was cut off mid-flow
    assert read and stored and bounced, (len(read), len(stored), len(bounced))
    # What it read it never acknowledged: XEP-0198 has those go offline too
    # (a client tells them apart by id); none is stored twice.
    assert not (set(stored) & bounced), "a message both stored and bounced"


@pytest.mark.parametrize("scope", ["stream", "address"])
def test_a_byte_rate_reads_the_sender_slower_and_drops_nothing(server_factory, scope):
    """limits.rate_* (one stream) and limits.ip_rate_* (all streams of one
    address), as Prosody's mod_limits: past the burst the server reads the
    sender at the rate; every message still arrives, none is refused."""
    rate = 32 * 1024
    knobs = (
        {"limits.rate_bytes_per_sec": rate, "limits.rate_burst_bytes": rate}
        if scope == "stream"
        else {"limits.ip_rate_bytes_per_sec": rate, "limits.ip_rate_burst_bytes": rate}
    )
    srv = server_factory(knobs)
    b_jid, b_pw = srv.add_user()
    senders = [srv.add_user() for _ in range(1 if scope == "stream" else 2)]
    per_sender = 160 // len(senders)  # 160 KB in all: 4 s at the rate after the burst
    pad = "y" * 1000

    async def scenario():
        b = await login(srv, b_jid, b_pw)
        clients = [await login(srv, j, p) for j, p in senders]
        try:
            t0 = time.monotonic()
            for i in range(per_sender):
                for k, c in enumerate(clients):
                    c.send_message(mto=b_jid, mbody=f"m-{k}-{i} {pad}", mtype="chat")
            got = set()
            while len(got) < per_sender * len(clients):
                m = await b.next_message(timeout=30)
                got.add(m["body"].split(" ")[0])
            elapsed = time.monotonic() - t0
            assert got == {f"m-{k}-{i}" for k in range(len(clients)) for i in range(per_sender)}
            # (160 KB - the 32 KB burst) / 32 KB/s, less the slack of buffers
            assert elapsed > 2.5, f"not slowed: {elapsed:.1f}s"
            for c in clients:
                assert not c.stream_errors, c.stream_errors
        finally:
            await close_all(b, *clients)

    run(scenario(), timeout=60)
