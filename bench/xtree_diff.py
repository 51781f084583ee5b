#!/usr/bin/env python3
"""Heap growth by allocation site between two massif-format xtree dumps.

bench/idle_sessions.py --massif OUT writes OUT.before.xt.ms (warm-up only)
and OUT.xt.ms (with the idle sessions open). This prints what grew,
per session, grouped by the innermost frames of our own code (or of the
crate that allocated, where none of ours is on the stack):

    python3 bench/xtree_diff.py OUT.before.xt.ms OUT.xt.ms --sessions 2000
"""
import argparse
import re
from collections import defaultdict

NODE = re.compile(r"^( *)n(\d+): (\d+) (?:0x[0-9A-F]+: )?(.*)$")
OURS = ("conclave", "xmpp_core", "tokio::", "rustls", "tokio_rustls", "rxml", "minidom")
NOISE = ("alloc::", "core::", "std::", "hashbrown::", "{closure", "<", "call_once",
         "malloc", "realloc", "calloc", "__rust", "do_call", "catch_unwind")


def leaves(path):
    """Bytes at each leaf of the tree, keyed by its stack (outermost last)."""
    out = defaultdict(int)
    stack = []
    with open(path) as f:
        for line in f:
            m = NODE.match(line)
            if not m:
                continue
            depth = len(m.group(1))
            stack[depth:] = [m.group(4)]
            if m.group(2) == "0":
                out[tuple(stack[1:])] += int(m.group(3))
    return out


def site(stack, frames):
    """The first `frames` frames that name code we care about: the standard
    library's and allocators' frames are skipped unless they name one of
    our types (`Box::new<our future>`)."""
    picked = []
    for fr in stack:
        name, _, file = fr.partition(" (")
        ours = any(o in name for o in OURS)
        if not ours and (file.startswith("library/") or name.startswith(NOISE)
                         or name == "UnknownInlinedFun"):
            continue
        picked.append(name[:110])
        if len(picked) == frames:
            break
    return " <- ".join(picked) or (stack[0][:110] if stack else "?")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--min", type=float, default=8.0, help="bytes per session to show")
    a = ap.parse_args()
    b, c = leaves(a.before), leaves(a.after)
    grew = defaultdict(int)
    for k in set(b) | set(c):
        grew[site(k, a.frames)] += c.get(k, 0) - b.get(k, 0)
    total = sum(grew.values())
    print(f"total {total / a.sessions:.0f} B per session")
    for k, v in sorted(grew.items(), key=lambda kv: -kv[1]):
        if abs(v) / a.sessions >= a.min:
            print(f"{v / a.sessions:8.0f}  {k}")


if __name__ == "__main__":
    main()
