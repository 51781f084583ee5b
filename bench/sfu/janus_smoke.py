#!/usr/bin/env python3
"""Janus VideoRoom under bench/sfu's load: one remote (plain-RTP) publisher
replaying the recording, N subscribers driven by one `sfu-load run`.

    bench/sfu/janus_smoke.py N [--secs S] [--recording FILE] [--keep-janus]

Janus runs on core 0 and the load client on core 1. Prints one JSON object:
the load client's window figures, and Janus's CPU-seconds over the same
window with its cost per forwarded packet (packets the subscribers got).
`smoke(n, ...)` is the same as a function.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import janus as J  # noqa: E402
import loadclient as L  # noqa: E402

JANUS_DIR = Path(os.environ.get("JANUS_DIR", "/tmp/bench-sfu/janus"))
DEFAULT_RECORDING = Path(os.environ.get("SFU_RECORDING", "/tmp/bench-sfu/rec.sfurec"))
RECORD_SECS = 10
JANUS_CORE = 0
LOAD_CORE = 1
ROOM = 4242
# Subscribers answered per second while ramping up: each is a Janus handle,
# an ICE check and a DTLS handshake on one shared core.
CONNECT_TIMEOUT_S = 60
# Janus switches a new subscriber to the 720p layer at the next keyframe
# (every 3 s in the recording): wait that long before measuring.
SETTLE_S = 4


def ensure_janus():
    subprocess.run([str(HERE / "install.sh")], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, JANUS_CORE=str(JANUS_CORE))
    subprocess.run([str(HERE / "janus.sh"), "start", str(JANUS_DIR)], check=True, env=env)
    return int((JANUS_DIR / "janus.pid").read_text())


def ensure_recording(path, binary):
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SFU_LOAD=binary)
    subprocess.run([str(HERE / "record.sh"), str(path), str(RECORD_SECS)], check=True, env=env)
    return path


def wait_connected(load, ids, timeout=CONNECT_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        subs = load.stats()["subscribers"]
        down = [i for i in ids if not subs.get(i, {}).get("connected")]
        if not down:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(down)} of {len(ids)} subscribers not connected after {timeout}s")
        time.sleep(0.2)


def summarize(n, stats, janus_cpu):
    subs = stats["subscribers"].values()
    window = stats["window_s"]
    packets = sum(s["packets"] for s in subs)
    per_sub_pps = [s["packets"] / window for s in subs]
    return {
        "server": "janus",
        "subscribers": n,
        "window_s": round(window, 3),
        "forwarded_packets": packets,
        "forwarded_pps": round(packets / window, 1),
        "per_subscriber_pps": {"min": round(min(per_sub_pps), 1), "max": round(max(per_sub_pps), 1)},
        "fps": {"min": round(min(s["frames"] for s in subs) / window, 1), "max": round(max(s["frames"] for s in subs) / window, 1)},
        "sizes": sorted({f"{s['width']}x{s['height']}" for s in subs}),
        "lost": sum(s["lost"] for s in subs),
        "nacks": sum(s["nacks"] for s in subs),
        "keyframes": sum(s["keyframes"] for s in subs),
        "latency_us": stats["latency_us"],
        "load_cpu_s": round(stats["cpu_s"], 3),
        "load_us_per_packet": round(1e6 * stats["cpu_s"] / packets, 2) if packets else None,
        "janus_cpu_s": round(janus_cpu, 3),
        "janus_us_per_packet": round(1e6 * janus_cpu / packets, 2) if packets else None,
    }


def smoke(n, secs=10.0, recording=DEFAULT_RECORDING, binary=None, keep_janus=False, verbose=True):
    binary = binary or L.find_binary()
    recording = ensure_recording(Path(recording), binary)
    janus_pid = ensure_janus()
    load = L.LoadClient(binary, core=LOAD_CORE)
    session = J.Session()
    admin = session.attach()
    feed = None
    try:
        J.destroy_room(admin, ROOM)
        J.create_room(admin, ROOM)
        feed, port = J.add_remote_publisher(admin, ROOM)
        load.publish("pub", recording, f"127.0.0.1:{port}", L.simulcast_map(J.VIDEO_SSRCS, audio=J.AUDIO_SSRC))
        ids = [f"s{i}" for i in range(n)]
        for sid in ids:
            J.subscribe(session, ROOM, [feed], load, sid)
        wait_connected(load, ids)
        time.sleep(SETTLE_S)
        load.reset()
        j0 = L.cpu_seconds(janus_pid)
        time.sleep(secs)
        stats = load.stats()
        j1 = L.cpu_seconds(janus_pid)
        out = summarize(n, stats, j1 - j0)
        if verbose:
            print(json.dumps(out), flush=True)
        return out, stats
    finally:
        # Media and subscribers go first: Janus 1.1.2 has been seen to die
        # when a remote publisher is removed while its RTP still arrives.
        load.quit()
        for h in list(session.handles.values()):
            if h is not admin:
                h.detach()
        if feed is not None:
            J.remove_remote_publisher(admin, ROOM, feed)
        J.destroy_room(admin, ROOM)
        session.destroy()
        if not keep_janus:
            subprocess.run([str(HERE / "janus.sh"), "stop", str(JANUS_DIR)], check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, nargs="+", help="subscriber counts, one run each")
    ap.add_argument("--secs", type=float, default=10.0, help="measurement window")
    ap.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    ap.add_argument("--keep-janus", action="store_true", help="leave Janus running afterwards")
    ap.add_argument("--stats", action="store_true", help="also print the load client's raw stats")
    a = ap.parse_args()
    for i, n in enumerate(a.n):
        # A fresh Janus for each run: no run pays for the last one's leftovers.
        last = i == len(a.n) - 1
        _, raw = smoke(n, a.secs, a.recording, keep_janus=a.keep_janus and last)
        if a.stats:
            print(json.dumps(raw))


if __name__ == "__main__":
    main()
