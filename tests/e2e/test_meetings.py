"""Meetings: the conference focus and the media bridge, driven as Jitsi
clients drive them (conference request, MUC, Jingle) by aiortc endpoints
that really send and receive media over ICE and DTLS-SRTP."""

import asyncio
import time

import pytest

from clients import run
from harness import unique
from meeting import Participant

pytestmark = pytest.mark.conclave_only


def room(server):
    return f"{unique('meet')}@conference.{server.domain}"


async def until(pred, timeout=20.0, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def test_two_participants_hear_each_other_and_a_later_source_is_seen(server):
    """Two guests: each hears the other (inbound audio with energy), and the
    first, whose session was up before the second arrived, gets the
    second's video by source-add: frames with a width, still advancing. The
    signalling is Jitsi's whole path: conference request, MUC join, the
    focus's session-initiate, session-accept, source-add."""
    r = room(server)

    async def scenario():
        a = await Participant(server, r).join()
        await asyncio.wait_for(a.accepted.wait(), 15)
        b = await Participant(server, r).join()
        await asyncio.wait_for(b.accepted.wait(), 15)
        try:
            # the focus's real JID is what lib-jitsi-meet trusts
            assert a.conference.get("ready") == "true"
            assert a.conference.get("focusjid") == f"focus.{server.domain}"
            assert [x[0] for x in a.jingle_log] == ["session-initiate", "source-add"]
            assert all(f == f"{r}/focus" for _, f, _ in a.jingle_log)

            def got(p, owner, kind):
                return any(p.owner_of(m) == owner and v[0] == kind and v[1] > 0 for m, v in p.received().items())

            assert await until(
                lambda: got(a, b.nick, "audio") and got(a, b.nick, "video") and got(b, a.nick, "audio"), 20
            ), (a.received(), b.received())
            t = time.monotonic()
            await asyncio.sleep(1.5)
            ra, rb = a.received(since=t), b.received(since=t)
            video = [v for m, v in ra.items() if v[0] == "video"]
            assert video and video[0][1] > 5 and video[0][2] > 0, ra
            for rec in (ra, rb):
                audio = [v for v in rec.values() if v[0] == "audio"]
                assert audio and audio[0][1] > 10 and audio[0][3] > 100, rec
        finally:
            await a.leave()
            await b.leave()

    run(scenario(), timeout=60)


def test_three_participants_each_receive_the_other_two(server):
    """Three guests join one room; each gets an offer from the focus with
    the others' sources (at once, or by source-add), answers it, and then
    receives the other two's audio (with energy) and video (frames with a
    width, still advancing)."""
    r = room(server)

    async def scenario():
        ps = []
        try:
            for _ in range(3):
                ps.append(await Participant(server, r).join())
                await asyncio.wait_for(ps[-1].accepted.wait(), 15)

            def complete():
                for p in ps:
                    got = p.received()
                    owners = {(p.owner_of(m), v[0]) for m, v in got.items() if v[1] > 0}
                    others = {q.nick for q in ps if q is not p}
                    if owners != {(o, k) for o in others for k in ("audio", "video")}:
                        return False
                return True

            assert await until(complete, 30), [
                (p.nick, sorted((p.owner_of(m), v[0], v[1]) for m, v in p.received().items())) for p in ps
            ]
            t = time.monotonic()
            await asyncio.sleep(2)
            for p in ps:
                for mid, (kind, n, width, energy) in p.received(since=t).items():
                    assert n > 0, f"{p.nick}: {kind} from {p.owner_of(mid)} stopped"
                    if kind == "video":
                        assert width > 0
                    else:
                        assert energy > 100, f"{p.nick}: silent audio from {p.owner_of(mid)}"
        finally:
            for p in ps:
                await p.leave()

    run(scenario(), timeout=80)
