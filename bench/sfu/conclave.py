"""Conclave's side of bench/sfu: the real binary on loopback, publishers
that join as Jitsi participants and send plain RTP to the bridge's ingest
(`meetings.rtp_ingest`), and subscribers that join the same way and hand
the focus's offer to sfu-load. Signalling is the e2e tests' (slixmpp,
tests/e2e/meeting.py): the whole Jitsi path, conference request, MUC join,
session-initiate, session-accept."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402
from loadctl import LoadError  # noqa: E402
from meeting import NS_RTP, NS_SSMA, Channel, Participant, PlainPublisher, accept_jingle, q  # noqa: E402

# The recording's SSRCs (bench/sfu/record.sh): three VP8 layers and Opus.
REC_VIDEO = (1, 2, 3)
REC_AUDIO = 4
VP8_PT, OPUS_PT = 100, 111


class LoadSubscriber(Participant):
    """A participant whose media is one of sfu-load's str0m endpoints. It
    sends nothing, so its session-accept announces no sources (else every
    other subscriber would get a source-add for it)."""

    def __init__(self, server, room, load, ip=None, link=None, constraints=None, **kw):
        super().__init__(server, room, send=False, **kw)
        self.load = load
        self.ip = ip
        self.link = link
        # ReceiverVideoConstraints sent on the bridge channel once accepted.
        self.constraints = constraints
        self.channel = None

    async def _negotiate(self, first):
        if not first:
            try:
                await self.load.offer(self.nick, self.offer.sdp())
            except (LoadError, ConnectionError):
                pass  # the run is ending
            return
        answer = await self.load.subscribe(self.nick, self.offer.sdp(), ip=self.ip, link=self.link)
        accept = accept_jingle(self.offer.sid, answer, self.nick, self.room)
        for d in accept.iter(q(NS_RTP, "description")):
            for child in list(d):
                if child.tag in (q(NS_SSMA, "source"), q(NS_SSMA, "ssrc-group")):
                    d.remove(child)
        await self.send_accept(accept)


class Conclave:
    name = "conclave"

    def __init__(self, core: str | None, overrides: dict | None = None):
        (self.ingest_port,) = harness.free_ports(1)
        self.srv = harness.ConclaveServer(
            {
                "meetings.rtp_ingest": f"127.0.0.1:{self.ingest_port}",
                "log.level": os.environ.get("BENCH_CONCLAVE_LOG", "warn"),
                # The bench's subscribers and publishers are all on loopback.
                "limits.max_connections_per_ip": 100000,
                **(overrides or {}),
            },
            name="bench-sfu",
        )
        if core is not None:
            self.srv.prefix = ["taskset", "-c", core]
        self.room = f"bench{uuid.uuid4().hex[:8]}@conference.{self.srv.domain}"
        self.members: list[Participant] = []

    def start(self) -> None:
        self.srv.start()

    @property
    def pid(self) -> int:
        assert self.srv.proc is not None
        return self.srv.proc.pid

    def version(self) -> str:
        return self.srv.cli("--version").stdout.strip()

    async def add_publisher(self, load, recording: Path, audio: bool = True) -> None:
        pub = await PlainPublisher(self.srv, self.room, layers=3).join()
        await asyncio.wait_for(pub.accepted.wait(), 30)
        self.members.append(pub)
        mapping = {r: (s, VP8_PT) for r, s in zip(REC_VIDEO, pub.ssrcs["video"])}
        if audio:
            mapping[REC_AUDIO] = (pub.ssrcs["audio"], OPUS_PT)
        await load.publish(pub.nick, recording, f"127.0.0.1:{self.ingest_port}", mapping)

    async def add_subscriber(
        self,
        load,
        ip: str | None = None,
        link: dict | None = None,
        last_n: int | None = None,
        max_height: int | None = None,
    ) -> str:
        sub = LoadSubscriber(self.srv, self.room, load, ip=ip, link=link)
        await sub.join()
        await asyncio.wait_for(sub.accepted.wait(), 60)
        self.members.append(sub)
        if last_n is not None or max_height is not None:
            # As Jitsi Meet's tile view asks, on the bridge channel.
            msg: dict = {"colibriClass": "ReceiverVideoConstraints", "lastN": -1 if last_n is None else last_n}
            if max_height is not None:
                msg["defaultConstraints"] = {"maxHeight": max_height}
            sub.channel = await Channel(sub.offer.ws).open()
            await sub.channel.send(msg)
        return sub.nick

    async def stop(self) -> None:
        for m in self.members:
            try:
                if getattr(m, "channel", None) is not None:
                    await m.channel.close()
                m.c.disconnect()
            except Exception:
                pass
        self.members.clear()
        await asyncio.sleep(0.2)
        self.srv.stop()
        keep = os.environ.get("BENCH_CONCLAVE_KEEP_LOG")
        if keep:
            shutil.copyfile(self.srv.stderr_path, keep)
        self.srv.cleanup()
