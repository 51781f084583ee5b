"""Drives `sfu-load run` (bench/sfu/load): JSON lines in, JSON lines out.

One process holds every subscriber and publisher of a run; this is its
asyncio handle. Answers are matched to requests by `id` (subscribe, offer,
publish) or by `op` (reset, stats), one of those at a time."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_binary() -> Path:
    return Path(os.environ.get("SFU_LOAD", REPO / "target" / "release" / "sfu-load"))


class LoadError(Exception):
    pass


class LoadClient:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.waiting: dict[str, asyncio.Future] = {}
        self.lock = asyncio.Lock()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, core: str | None, binary: Path | None = None, prefix: list[str] | None = None) -> "LoadClient":
        """`prefix` goes before the command (bwe.py: `ip netns exec NS`)."""
        exe = str(binary or load_binary())
        cmd = [*(prefix or []), *(["taskset", "-c", core] if core is not None else []), exe, "run"]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            key = msg.get("id") or msg.get("op")
            fut = self.waiting.pop(key, None)
            if fut is None or fut.done():
                continue
            if msg.get("op") == "error":
                fut.set_exception(LoadError(msg.get("error", "error")))
            else:
                fut.set_result(msg)
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(LoadError("sfu-load exited"))

    async def call(self, msg: dict, key: str, timeout: float = 30.0) -> dict:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[key] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(fut, timeout)

    async def subscribe(self, sid: str, offer: str, ip: str | None = None, link: dict | None = None) -> str:
        """`link` impairs what the subscriber receives: {"delay_ms", "loss"}."""
        msg = {"op": "subscribe", "id": sid, "offer": offer, **(link or {})}
        if ip is not None:
            msg["ip"] = ip
        return (await self.call(msg, sid))["answer"]

    async def offer(self, sid: str, offer: str) -> str:
        return (await self.call({"op": "offer", "id": sid, "offer": offer}, sid))["answer"]

    async def publish(self, pid: str, recording: Path, dest: str, mapping: dict[int, tuple[int, int]]) -> None:
        m = {str(k): {"ssrc": s, "pt": pt} for k, (s, pt) in mapping.items()}
        await self.call({"op": "publish", "id": pid, "recording": str(recording), "dest": dest, "map": m}, pid)

    async def reset(self) -> None:
        async with self.lock:
            await self.call({"op": "reset"}, "reset")

    async def stats(self) -> dict:
        async with self.lock:
            return await self.call({"op": "stats"}, "stats", timeout=60)

    async def quit(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(b'{"op":"quit"}\n')
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 5)
            except (asyncio.TimeoutError, ConnectionError):
                self.proc.kill()
        self.reader.cancel()


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU-seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = float(os.sysconf("SC_CLK_TCK"))
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
