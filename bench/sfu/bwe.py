#!/usr/bin/env python3
"""Bandwidth estimation on constrained links: which simulcast layer the
bridge sends a receiver whose downlink is capped, and whether its frames
keep coming, second by second.

Each receiver is an sfu-load endpoint in a network namespace of its own,
behind a veth pair whose bridge-side end is shaped by the kernel (tc tbf:
a token bucket with a queue, as a real bottleneck). The bridge binds the
address on the root side of the pairs; the publisher (one 720p simulcast
replay) and the signalling stay on loopback. Needs root (ip netns, tc).

The link is a cap (tbf) with delay and random loss behind it (netem, as
a child of the tbf). Where the kernel has no netem (this one:
CONFIG_NET_SCH_NETEM is off), the receiving sfu-load delays and drops
each datagram as it arrives instead, which is the same place on the path.
`--loss 0 --delay-ms 0` leaves the cap alone.

    bwe.py                      # 300 kbit/s, 1 Mbit/s, 3 Mbit/s, each with 2% loss and 100 ms; 60 s; results in bwe.json
    bwe.py --check              # also fail unless each receiver ends on the layer that fits, frames flowing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conclave import Conclave  # noqa: E402
from loadctl import LoadClient, load_binary  # noqa: E402

CAPS_KBPS = (300, 1000, 3000)
# The layer (picture height) each cap affords: its rate, audio and
# overhead fit under the cap with the bridge's upgrade headroom.
EXPECTED_HEIGHT = {300: 180, 1000: 360, 3000: 720}
# A second without a frame, after the start, is a freeze.
SETTLE_S = 10
NET = "10.78"


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


class Link:
    """A namespace behind a veth pair, the bridge side capped at `kbps`."""

    def __init__(self, i: int, kbps: int):
        self.ns = f"cvbwe{i}"
        self.outer, self.inner = f"cvb{i}o", f"cvb{i}i"
        self.host = f"{NET}.{i}.1"
        self.peer = f"{NET}.{i}.2"
        self.kbps = kbps

    def up(self) -> None:
        self.down()
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        sh("ip", "link", "set", self.inner, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host}/24", "dev", self.outer)
        sh("ip", "link", "set", self.outer, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "addr", "add", f"{self.peer}/24", "dev", self.inner)
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", self.inner, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", self.ns, "ip", "route", "add", "default", "via", self.host)
        # The bottleneck: bridge -> receiver. Burst of 10 ms at the rate
        # (at least two packets), a queue of up to 200 ms.
        burst = max(3000, self.kbps * 1000 // 8 // 100)
        sh("tc", "qdisc", "add", "dev", self.outer, "root", "handle", "1:", "tbf", "rate", f"{self.kbps}kbit", "burst", str(burst), "latency", "200ms")

    def netem(self, delay_ms: float, loss: float) -> bool:
        """Delay and loss behind the cap, by netem where the kernel has it."""
        r = subprocess.run(
            ["tc", "qdisc", "add", "dev", self.outer, "parent", "1:1", "handle", "10:", "netem", "delay", f"{delay_ms:g}ms", "loss", f"{100 * loss:g}%"],
            capture_output=True,
        )
        return r.returncode == 0

    def down(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)


# The bridge's address: on `lo`, so that every namespace reaches it through
# its own link, and answers come from the address the checks went to.
BRIDGE_IP = f"{NET}.0.1"


async def run(args) -> dict:
    links = [Link(i + 1, k) for i, k in enumerate(args.caps)]
    subprocess.run(["ip", "addr", "del", f"{BRIDGE_IP}/32", "dev", "lo"], capture_output=True)
    sh("ip", "addr", "add", f"{BRIDGE_IP}/32", "dev", "lo")
    for link in links:
        link.up()
    # Where netem exists it makes the bad link; else each receiver does.
    by_netem = all(link.netem(args.delay_ms, args.loss) for link in links) if (args.delay_ms or args.loss) else True
    impair = None if by_netem else {"delay_ms": args.delay_ms, "loss": args.loss}
    if not by_netem:
        for link in links:
            subprocess.run(["tc", "qdisc", "del", "dev", link.outer, "parent", "1:1"], capture_output=True)
    srv = Conclave(None, overrides={"meetings.bind": BRIDGE_IP})
    out: dict = {"caps_kbps": list(args.caps), "secs": args.secs, "settle_s": SETTLE_S, "delay_ms": args.delay_ms, "loss": args.loss, "receivers": {}}
    out["impairment"] = "netem" if impair is None else "sfu-load (no netem in this kernel)"
    loads: list[LoadClient] = []
    try:
        srv.start()
        pub_load = await LoadClient.start(None)
        loads.append(pub_load)
        await srv.add_publisher(pub_load, args.recording)
        subs = []
        for link in links:
            load = await LoadClient.start(None, prefix=["ip", "netns", "exec", link.ns])
            loads.append(load)
            sid = await srv.add_subscriber(load, ip=link.peer, link=impair)
            subs.append((link, load, sid))
        series = {link.kbps: [] for link in links}
        for _, load, _ in subs:
            await load.reset()
        t0 = time.monotonic()
        for second in range(int(args.secs)):
            await asyncio.sleep(max(0.0, t0 + second + 1 - time.monotonic()))
            for link, load, sid in subs:
                st = await load.stats()
                s = st["subscribers"][sid]
                series[link.kbps].append(
                    {"t": second + 1, "height": s["height"], "frames": s["frames"], "kbps": round(s["bytes"] * 8 / 1000 / st["window_s"]), "lost": s["lost"]}
                )
                await load.reset()
        out["receivers"] = {str(k): v for k, v in series.items()}
    finally:
        await srv.stop()
        for load in loads:
            await load.quit()
        for link in links:
            link.down()
        subprocess.run(["ip", "addr", "del", f"{BRIDGE_IP}/32", "dev", "lo"], capture_output=True)
    return out


def problems(res: dict) -> list[str]:
    out = []
    for kbps, series in res["receivers"].items():
        want = EXPECTED_HEIGHT.get(int(kbps))
        tail = series[SETTLE_S:]
        if not tail:
            out.append(f"{kbps} kbit/s: no samples after {SETTLE_S} s")
            continue
        frozen = [p["t"] for p in tail if p["frames"] == 0]
        if frozen:
            out.append(f"{kbps} kbit/s: no frame in second(s) {frozen}")
        last = tail[-1]["height"]
        if want is not None and last != want:
            out.append(f"{kbps} kbit/s: ends on {last}p, want {want}p")
    return out


def plot(res: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    a1.set_title(f"Conclave, capped links with {res['delay_ms']:g} ms delay and {100 * res['loss']:g}% loss")
    for kbps, series in res["receivers"].items():
        t = [p["t"] for p in series]
        a1.step(t, [p["height"] for p in series], where="post", label=f"{int(kbps) / 1000:g} Mbit/s link")
        a2.plot(t, [p["frames"] for p in series], label=f"{int(kbps) / 1000:g} Mbit/s link")
    a1.set_ylabel("picture height sent")
    a1.set_yticks([180, 360, 720])
    a1.legend(loc="lower right")
    a1.grid(alpha=0.3)
    a2.set_ylabel("frames received per second")
    a2.set_xlabel("seconds since the receiver joined")
    a2.set_ylim(bottom=0)
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--caps", default=",".join(map(str, CAPS_KBPS)), help="link caps, kbit/s")
    ap.add_argument("--secs", type=float, default=60.0)
    ap.add_argument("--delay-ms", type=float, default=100.0, help="one-way delay added to each link")
    ap.add_argument("--loss", type=float, default=0.02, help="share of datagrams each link loses")
    ap.add_argument("--recording", type=Path, default=HERE / "work" / "recording.sfurec")
    ap.add_argument("--out", type=Path, default=HERE / "bwe.json")
    ap.add_argument("--plot", type=Path, default=HERE / "plots" / "sfu_bwe_layers.png")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    args.caps = [int(c) for c in args.caps.split(",")]
    if os.geteuid() != 0:
        raise SystemExit("bwe.py needs root (ip netns, tc)")
    if not load_binary().exists():
        raise SystemExit(f"{load_binary()} is missing: cargo build --release -p sfu-load")
    os.environ.setdefault("CONCLAVE_BIN", str(HERE.parents[1] / "target" / "release" / "conclave"))
    res = asyncio.run(run(args))
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    for kbps, series in res["receivers"].items():
        print(f"{kbps} kbit/s: " + " ".join(f"{p['height']}/{p['frames']}" for p in series))
    args.plot.parent.mkdir(exist_ok=True)
    if plot(res, args.plot):
        print(f"wrote {args.plot}")
    if args.check:
        bad = problems(res)
        if bad:
            raise SystemExit("bwe: " + "; ".join(bad))
        print("bwe: every receiver ends on the layer its link affords, with frames every second")


if __name__ == "__main__":
    main()
