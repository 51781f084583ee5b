#!/usr/bin/env python3
"""bench/sfu: the same load shapes against Conclave's bridge and Janus's
VideoRoom, one after the other, in one run (see README.md).

Publishers replay a recording (VP8 simulcast, three layers, and Opus) as
plain RTP into each server's ingest; subscribers are sfu-load's str0m
endpoints (ICE, DTLS-SRTP, receiver reports, NACK, transport-cc; no
decoding), all in one process pinned to its own core. The server is pinned
to another. Figures per shape: server CPU-seconds per forwarded packet
(user and total), forwarding latency added (replay stamp to subscriber
receive), loss, RSS per subscriber."""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadctl import LoadClient, load_binary, proc_cpu, proc_rss_kb  # noqa: E402


@dataclass
class Shape:
    name: str
    publishers: int
    subscribers: int
    # Steps of a ramp: subscriber counts measured in turn without a restart.
    ramp: tuple[int, ...] = ()
    # Publishers that also send audio (None: all); the others are muted.
    audio_publishers: int | None = None
    # What each subscriber asks for: at most this many videos (Jitsi's
    # last-N), each at most this tall (a tile). Janus has no last-N: its
    # subscribers subscribe to that many feeds, on the matching substream.
    last_n: int | None = None
    max_height: int | None = None

    @property
    def members(self) -> int:
        return self.publishers + max((self.subscribers, *self.ramp))


SHAPES = {
    "1x1": Shape("1x1", 1, 1),
    "1x10": Shape("1x10", 1, 10),
    "1x50": Shape("1x50", 1, 50),
    "1x200": Shape("1x200", 1, 200),
    "10x10": Shape("10x10", 10, 10),
    "ramp": Shape("ramp", 1, 0, ramp=(50, 100, 200, 300, 400, 500, 600, 800)),
    # One conference of up to 200, as a large meeting is: 30 cameras on,
    # two people unmuted, and watchers of a grid with last-N 20 of 180p
    # tiles, added step by step up to 170 (each takes about 700 packets/s).
    "200-lastN20": Shape(
        "200-lastN20", 30, 0, ramp=(10, 25, 50, 100, 170), audio_publishers=2, last_n=20, max_height=180
    ),
}
SMOKE = ["1x10"]
LOSS_LIMIT = 0.01
# The load core is saturated past this share of it: figures then measure
# the load client, not the server.
CLIENT_BOUND = 0.9
JOIN_BATCH = 10


def make_server(name: str, core: str | None):
    if name == "conclave":
        from conclave import Conclave

        return Conclave(core)
    if name == "janus":
        from janus_server import Janus

        return Janus(core)
    raise SystemExit(f"unknown server {name!r} (conclave, janus)")


# A ramp step may go on with one in this many subscribers not connected.
RAMP_JOIN_SLACK = 100


async def until_flowing(load: LoadClient, n: int, timeout: float, need: int | None = None) -> dict:
    """Waits until `need` (default all n) subscribers are connected and receiving."""
    need = n if need is None else need
    end = time.monotonic() + timeout
    await load.reset()
    while True:
        await asyncio.sleep(1.0)
        st = await load.stats()
        subs = st["subscribers"]
        flowing = [s for s in subs.values() if s["connected"] and s["video_packets"] > 0]
        if len(flowing) >= need:
            return st
        if time.monotonic() > end:
            raise RuntimeError(f"only {len(flowing)} of {n} subscribers receive video after {timeout:.0f} s")
        await load.reset()


# How long the smoke waits for every subscriber to be on 720p.
SMOKE_TOP_LAYER_WAIT_S = 30.0


async def until_top_layer(load: LoadClient, n: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while True:
        subs = (await load.stats())["subscribers"]
        if sum(1 for s in subs.values() if s["height"] == 720) >= n or time.monotonic() > end:
            return
        await asyncio.sleep(0.5)


async def measure(srv, load: LoadClient, secs: float, subscribers: int, rss_base: int) -> dict:
    rss = proc_rss_kb(srv.pid)
    await load.reset()
    c0, t0 = proc_cpu(srv.pid), time.monotonic()
    await asyncio.sleep(secs)
    st = await load.stats()
    c1, t1 = proc_cpu(srv.pid), time.monotonic()
    subs = st["subscribers"]
    packets = sum(s["packets"] for s in subs.values())
    lost = sum(s["lost"] for s in subs.values())
    user, system = c1[0] - c0[0], c1[1] - c0[1]
    window = t1 - t0
    return {
        "subscribers": subscribers,
        "window_s": round(window, 3),
        "forwarded_packets": packets,
        "forwarded_pps": round(packets / window, 1),
        "forwarded_mbps": round(sum(s["bytes"] for s in subs.values()) * 8 / window / 1e6, 2),
        "lost": lost,
        "duplicates": sum(s.get("duplicates", 0) for s in subs.values()),
        "loss": round(lost / (packets + lost), 5) if packets + lost else None,
        "server_cpu_s": round(user + system, 3),
        "server_user_s": round(user, 3),
        "server_cpu_share": round((user + system) / window, 3),
        "cpu_us_per_packet": round((user + system) / packets * 1e6, 3) if packets else None,
        "user_us_per_packet": round(user / packets * 1e6, 3) if packets else None,
        "latency_us": st["latency_us"],
        "rss_kb": rss,
        "rss_kb_per_subscriber": round((rss - rss_base) / subscribers, 1) if subscribers else None,
        "load_cpu_share": round(st["cpu_s"] / window, 3),
        "client_bound": st["cpu_s"] / window > CLIENT_BOUND,
        "receiving": sum(1 for s in subs.values() if s["video_packets"] > 0),
        "heights": dict(sorted(collections.Counter(str(s["height"]) for s in subs.values()).items())),
        "frames_per_subscriber_s": round(sum(s["frames"] for s in subs.values()) / max(1, len(subs)) / window, 1),
    }


async def join_subscribers(srv, load: LoadClient, n: int, shape: Shape) -> None:
    left = n
    while left > 0:
        k = min(JOIN_BATCH, left)
        await asyncio.gather(*(srv.add_subscriber(load, last_n=shape.last_n, max_height=shape.max_height) for _ in range(k)))
        left -= k


async def run_shape(server: str, shape: Shape, args) -> dict:
    srv = make_server(server, args.server_core)
    srv.start()
    load = await LoadClient.start(args.load_core)
    out: dict = {"server": server, "shape": shape.name, "publishers": shape.publishers}
    if shape.last_n is not None:
        out.update(members=shape.members, audio_publishers=shape.audio_publishers, last_n=shape.last_n, max_height=shape.max_height)
    try:
        out["version"] = srv.version()
        for i in range(shape.publishers):
            audio = shape.audio_publishers is None or i < shape.audio_publishers
            await srv.add_publisher(load, args.recording, audio=audio)
        await asyncio.sleep(1.0)
        rss_base = proc_rss_kb(srv.pid)
        steps = shape.ramp or (shape.subscribers,)
        joined = 0
        out["steps"] = []
        for n in steps:
            t = time.monotonic()
            await join_subscribers(srv, load, n - joined, shape)
            joined = n
            try:
                # A ramp step stands with 1% of its newcomers not connected
                # (a DTLS handshake lost under load); they count as not
                # receiving in the step's figures.
                await until_flowing(load, n, timeout=60 + n / 5, need=n - n // RAMP_JOIN_SLACK if shape.ramp else None)
            except RuntimeError as e:
                # A saturated server cannot finish the newcomers' DTLS
                # handshakes in time: the ramp ends there, its steps stand.
                if not (shape.ramp and out["steps"]):
                    raise
                out["stopped"] = f"{e} (the server's core saturated)"
                print(f"  {server} {shape.name} n={n}: {out['stopped']}", flush=True)
                break
            out.setdefault("join_s", round(time.monotonic() - t, 1))
            await asyncio.sleep(args.warmup)
            if args.smoke:
                # A receiver whose estimate dipped while it ramped up is held
                # on a lower layer for a few seconds (the bridge's hold-down);
                # the smoke measures once it is back, and fails if it is not.
                await until_top_layer(load, n, timeout=SMOKE_TOP_LAYER_WAIT_S)
            m = await measure(srv, load, args.secs, n, rss_base)
            out["steps"].append(m)
            print(f"  {server} {shape.name} n={n}: {fmt(m)}", flush=True)
            if shape.ramp and ((m["loss"] or 0) > LOSS_LIMIT or m["client_bound"]):
                break
    finally:
        await srv.stop()
        await load.quit()
    return out


def fmt(m: dict) -> str:
    lat = m["latency_us"]
    return (
        f"{m['forwarded_pps']:.0f} pkt/s, cpu {m['cpu_us_per_packet']} µs/pkt (user {m['user_us_per_packet']}), "
        f"server {m['server_cpu_share'] * 100:.0f}% load {m['load_cpu_share'] * 100:.0f}%, "
        f"latency p50 {lat.get('p50')} p99 {lat.get('p99')} µs, loss {m['loss']}, "
        f"dup {m['duplicates']}, rss/sub {m['rss_kb_per_subscriber']} kB, heights {m['heights']}, fps {m['frames_per_subscriber_s']}"
    )


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "memory": Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip(),
    }


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


async def main_async(args) -> dict:
    results = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "machine": machine(),
        "secs": args.secs,
        "server_core": args.server_core,
        "load_core": args.load_core,
        "runs": [],
    }
    for shape in args.shapes:
        for server in args.servers:
            print(f"{server}: {shape}", flush=True)
            try:
                results["runs"].append(await run_shape(server, SHAPES[shape], args))
            except Exception as e:  # a failed run is reported, the others go on
                print(f"  {server} {shape} failed: {e!r}", flush=True)
                results["runs"].append({"server": server, "shape": shape, "error": repr(e)})
    return results


def smoke_problems(results: dict) -> list[str]:
    """What the CI smoke holds the bridge to: every subscriber is sent the
    top layer (nothing limits it on loopback), nothing is lost, and no
    packet waits in the bridge for a second (the pacer once queued them
    behind an estimate nobody asked to grow)."""
    out = []
    for r in results["runs"]:
        for s in r.get("steps", []):
            if s["heights"] != {"720": s["subscribers"]}:
                out.append(f"{r['shape']}: layers received {s['heights']}, want 720p for all {s['subscribers']}")
            if (s["loss"] or 0) > 0.01:
                out.append(f"{r['shape']}: loss {s['loss']}")
            p99 = s["latency_us"].get("p99")
            if p99 is None or p99 > 1e6:
                out.append(f"{r['shape']}: latency p99 {p99} µs")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="conclave,janus")
    ap.add_argument("--shapes", default="1x1,1x10,1x50,1x200,10x10,ramp,200-lastN20")
    ap.add_argument("--secs", type=float, default=10.0, help="measurement window per step")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--server-core", default="0")
    ap.add_argument("--load-core", default="1")
    ap.add_argument("--recording", type=Path, default=HERE / "work" / "recording.sfurec")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--smoke", action="store_true", help="seconds, Conclave only (CI)")
    ap.add_argument("--merge", action="store_true", help="replace only this run's (server, shape) pairs in --out")
    args = ap.parse_args()
    if args.smoke:
        # The warm-up lets every receiver's estimate grow to the 720p layer.
        args.servers, args.shapes, args.secs, args.warmup = "conclave", ",".join(SMOKE), 2.0, 5.0
    args.servers = args.servers.split(",")
    args.shapes = args.shapes.split(",")
    for s in args.shapes:
        if s not in SHAPES:
            raise SystemExit(f"unknown shape {s!r} ({', '.join(SHAPES)})")
    if not load_binary().exists():
        raise SystemExit(f"{load_binary()} is missing: build it with `cargo build --release -p sfu-load`")
    if not args.recording.exists():
        raise SystemExit(f"{args.recording} is missing: make it with bench/sfu/record.sh {args.recording}")
    os.environ.setdefault("CONCLAVE_BIN", str(HERE.parents[1] / "target" / "release" / "conclave"))
    results = asyncio.run(main_async(args))
    if args.merge and args.out.exists():
        # Runs of this invocation replace the same (server, shape) of the file.
        old = json.loads(args.out.read_text())
        fresh = {(r["server"], r["shape"]) for r in results["runs"]}
        old["runs"] = [r for r in old["runs"] if (r["server"], r["shape"]) not in fresh] + results["runs"]
        old.setdefault("merged", []).append({"started": results["started"], "git": results["git"], "runs": sorted(f"{a} {b}" for a, b in fresh)})
        results = old
    failed = [r for r in results["runs"] if "error" in r]
    if args.smoke and not failed:
        problems = smoke_problems(results)
        if problems:
            raise SystemExit("smoke: " + "; ".join(problems))
        print("smoke: every subscriber got 720p video, no loss, latency p99 under 1 s")
    if not args.smoke:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed")


if __name__ == "__main__":
    main()
