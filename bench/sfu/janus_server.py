"""Janus's side of bench/sfu, as bench.py drives a server: Debian's Janus
started under `janus.sh` (loopback config in a scratch directory, pinned
with taskset), a VideoRoom, remote (plain-RTP) publishers fed by sfu-load's
replay, and subscribers answered by sfu-load. The HTTP API calls block
(janus.py, stdlib), so they run in a thread beside the asyncio loop."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import janus as J

HERE = Path(__file__).resolve().parent
ROOM = 4242
REC_VIDEO, REC_AUDIO = (1, 2, 3), 4
VP8_PT, OPUS_PT = 100, 111


class _SyncLoad:
    """janus.subscribe's view of the load client: blocking calls, carried
    out on the asyncio loop that owns the pipe."""

    def __init__(self, load, loop):
        self.load, self.loop = load, loop

    def subscribe(self, sid, offer, ip=None):
        return asyncio.run_coroutine_threadsafe(self.load.subscribe(sid, offer, ip=ip), self.loop).result(60)


class Janus:
    name = "janus"

    def __init__(self, core: str | None):
        self.core = core
        self.dir = Path(tempfile.mkdtemp(prefix="bench-sfu-janus-"))
        self.session = None
        self.admin = None
        self.feeds: list[int] = []
        self.handles = []
        self.ids = itertools.count()

    def _sh(self, *args: str) -> None:
        env = dict(os.environ)
        if self.core is not None:
            env["JANUS_CORE"] = self.core
        subprocess.run([str(HERE / "janus.sh"), *args], check=True, env=env)

    def start(self) -> None:
        self._sh("start", str(self.dir))
        self.session = J.Session()
        self.admin = self.session.attach()
        J.destroy_room(self.admin, ROOM)
        J.create_room(self.admin, ROOM)

    @property
    def pid(self) -> int:
        return int((self.dir / "janus.pid").read_text())

    def version(self) -> str:
        info = J.info()
        return f"Janus {info.get('version_string', '?')} (Debian {dpkg_version('janus')})"

    async def add_publisher(self, load, recording: Path, audio: bool = True) -> None:
        feed, port = await asyncio.to_thread(J.add_remote_publisher, self.admin, ROOM, f"replay{len(self.feeds)}")
        self.feeds.append(feed)
        mapping = {r: (s, VP8_PT) for r, s in zip(REC_VIDEO, J.VIDEO_SSRCS)}
        if audio:
            mapping[REC_AUDIO] = (J.AUDIO_SSRC, OPUS_PT)
        await load.publish(f"pub{feed}", recording, f"127.0.0.1:{port}", mapping)

    async def add_subscriber(self, load, last_n: int | None = None, max_height: int | None = None) -> str:
        sid = f"sub{next(self.ids)}"
        sync = _SyncLoad(load, asyncio.get_running_loop())
        # VideoRoom has no last-N: the first last_n feeds' video, and
        # every feed's audio, on the substream a tile that tall needs.
        video = self.feeds if last_n is None or last_n < 0 else self.feeds[:last_n]
        substream = J.substream_for(max_height)
        h = await asyncio.to_thread(J.subscribe, self.session, ROOM, list(self.feeds), sync, sid, video, substream)
        self.handles.append(h)
        return sid

    async def stop(self) -> None:
        def teardown():
            for h in self.handles:
                try:
                    h.detach()
                except J.JanusError:
                    pass
            for f in self.feeds:
                J.remove_remote_publisher(self.admin, ROOM, f)
            J.destroy_room(self.admin, ROOM)
            self.session.destroy()

        try:
            if self.session is not None:
                await asyncio.to_thread(teardown)
        finally:
            self._sh("stop", str(self.dir))
            shutil.rmtree(self.dir, ignore_errors=True)


def dpkg_version(package: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return r.stdout.strip() or "?"
