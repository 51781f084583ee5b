#!/usr/bin/env python3
"""Recomputes the latency figures of a results.json from its tsung logs.

    python3 bench/xmpp/relatency.py RESULTS.json

For a run made before bench.py left out stale samples (``tsung.split_stale``):
every tsung scenario (and peak step) whose ``logdir`` still exists gets its
``latency``, ``received``, ``undelivered`` and ``stale_deliveries`` again, in
place. The CPU figures do not change: they count deliveries in the steady
window only, which stale deliveries (at login) never fall in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tsung


def redo(r: dict) -> bool:
    logdir = r.get("logdir")
    if not logdir or not (Path(logdir) / "tsung.log").exists():
        return False
    tl = tsung.parse_log(Path(logdir) / "tsung.log")
    full = tsung.parse_fullstats(Path(logdir) / "tsung-fullstats.log")
    r.pop("stale_deliveries", None)
    r.update(tsung.deliveries(tl, full))
    if "undelivered" in r and r.get("sent") is not None:
        r["undelivered"] = max(0, r["sent"] - r["received"])
    return True


def main() -> int:
    path = Path(sys.argv[1])
    res = json.loads(path.read_text())
    done = 0
    for entry in res["servers"].values():
        for r in entry.get("scenarios", {}).values():
            for one in r.get("steps", [r]):
                done += redo(one)
    path.write_text(json.dumps(res, indent=2, default=str))
    print(f"{done} tsung runs recomputed in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
