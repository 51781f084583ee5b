#!/usr/bin/env python3
"""The SFU section of BENCHMARKS.md, and its plots, from bench.py's
results.json.

The section sits between the markers below; everything else in
BENCHMARKS.md (the XMPP report, bench/xmpp/report.py) is left as it is.
The plots need matplotlib (bench/xmpp/requirements.txt)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BEGIN = "<!-- bench/sfu:begin -->"
END = "<!-- bench/sfu:end -->"
TARGET_CPU_US = 4.0
TARGET_P99_US = 1000.0
TARGET_SUBS_PER_CORE = 500


def runs(res: dict, shape: str) -> dict[str, dict]:
    return {r["server"]: r for r in res["runs"] if r["shape"] == shape}


def last_step(run: dict | None) -> dict | None:
    if not run or "steps" not in run or not run["steps"]:
        return None
    return run["steps"][-1]


def num(v, digits=1, unit="") -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b) -> str:
    if not a or not b:
        return "–"
    return f"{b / a:.1f}×"


def sustained(run: dict | None) -> tuple[int | None, str]:
    """The largest step under 1% loss, and why the ramp stopped."""
    if not run or not run.get("steps"):
        return None, "no run"
    best, why = None, "ramp ended"
    for s in run["steps"]:
        if (s["loss"] or 0) > 0.01:
            why = f"loss {s['loss'] * 100:.1f}% at {s['subscribers']}"
            break
        best = s["subscribers"]
        if s["client_bound"]:
            why = f"load client saturated at {s['subscribers']}"
            break
    else:
        if run.get("stopped"):
            why = f"next step: {run['stopped']}"
    return best, why


def table(res: dict) -> list[str]:
    out = [
        "| shape | server | subscribers | forwarded pkt/s | Mbit/s | CPU µs/pkt | user µs/pkt | Janus/Conclave | "
        "latency p50 / p99 (µs) | loss | RSS kB/subscriber | server core | load core |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    shapes = [s for s in dict.fromkeys(r["shape"] for r in res["runs"]) if s != "ramp"]
    for shape in shapes:
        rs = runs(res, shape)
        # Steps by subscriber count, to compare the servers at the same one.
        c_steps = {s["subscribers"]: s for s in (rs.get("conclave") or {}).get("steps", [])}
        for name, r in rs.items():
            if not r.get("steps"):
                out.append(f"| {shape} | {name} | failed: {r.get('error', '?')[:80]} |||||||||||")
                continue
            for s in r["steps"]:
                out.append(row(shape, name, s, c_steps.get(s["subscribers"])))
            if r.get("stopped"):
                out.append(f"| {shape} | {name} | stopped: {r['stopped'][:100]} |||||||||||")
    return out


def row(shape: str, name: str, s: dict, c: dict | None) -> str:
    """One step of a run; `c` is Conclave's step with as many subscribers."""
    lat = s["latency_us"]
    rel = ratio(c["cpu_us_per_packet"] if c else None, s["cpu_us_per_packet"]) if name == "janus" else ""
    return (
        f"| {shape} | {name} | {s['subscribers']} | {num(s['forwarded_pps'], 0)} | {num(s['forwarded_mbps'])} | "
        f"{num(s['cpu_us_per_packet'], 2)} | {num(s['user_us_per_packet'], 2)} | {rel} | "
        f"{num(lat.get('p50'), 0)} / {num(lat.get('p99'), 0)} | {num((s['loss'] or 0) * 100, 2, '%')} | "
        f"{num(s['rss_kb_per_subscriber'])} | {s['server_cpu_share'] * 100:.0f}% | {s['load_cpu_share'] * 100:.0f}% |"
    )


def ramp_table(res: dict) -> list[str]:
    rs = runs(res, "ramp")
    if not rs:
        return []
    out = [
        "| server | subscribers | forwarded pkt/s | CPU µs/pkt | server core | load core | latency p99 (µs) | loss |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, r in rs.items():
        for s in r.get("steps", []):
            out.append(
                f"| {name} | {s['subscribers']} | {num(s['forwarded_pps'], 0)} | {num(s['cpu_us_per_packet'], 2)} | "
                f"{s['server_cpu_share'] * 100:.0f}% | {s['load_cpu_share'] * 100:.0f}% | "
                f"{num(s['latency_us'].get('p99'), 0)} | {num((s['loss'] or 0) * 100, 2, '%')} |"
            )
    return out


def save(plt, fig, ax, path: Path) -> str:
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def plots(res: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    colors = {"conclave": "tab:blue", "janus": "tab:orange"}
    points: dict[str, list[dict]] = {}
    for r in res["runs"]:
        if r["shape"].startswith("1x") or r["shape"] == "ramp":
            points.setdefault(r["server"], []).extend(r.get("steps", []))
    names = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for server, steps in points.items():
        steps = sorted((s for s in steps if s["cpu_us_per_packet"]), key=lambda s: s["subscribers"])
        ax.plot([s["subscribers"] for s in steps], [s["cpu_us_per_packet"] for s in steps], "o-", label=server, color=colors.get(server))
    ax.axhline(TARGET_CPU_US, color="gray", ls="--", lw=1, label=f"target {TARGET_CPU_US:g} µs")
    ax.set_xscale("log")
    ax.set_xlabel("subscribers of one 720p simulcast publisher")
    ax.set_ylabel("server CPU µs per forwarded packet")
    ax.set_ylim(bottom=0)
    names.append(save(plt, fig, ax, out / "sfu_cpu_per_packet.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for server, steps in points.items():
        steps = sorted(steps, key=lambda s: s["forwarded_pps"])
        x = [s["forwarded_pps"] / 1000 for s in steps]
        ax.plot(x, [s["latency_us"].get("p99") for s in steps], "o-", label=f"{server} p99", color=colors.get(server))
        ax.plot(x, [s["latency_us"].get("p50") for s in steps], "o:", label=f"{server} p50", color=colors.get(server))
    ax.set_xlabel("forwarded packets per second (thousands)")
    ax.set_ylabel("latency, replay stamp to subscriber (µs)")
    ax.set_yscale("log")
    names.append(save(plt, fig, ax, out / "sfu_latency_vs_load.png"))
    return names


def section(res: dict, pngs: list[str], img_dir: str) -> str:
    m = res["machine"]
    versions = {r["server"]: r.get("version", "?") for r in res["runs"] if r.get("version")}
    if "conclave" in versions:
        versions["conclave"] += f" (git {res['git']}), release build"
    c50 = last_step(runs(res, "1x50").get("conclave"))
    best = {name: sustained(r) for name, r in runs(res, "ramp").items()}
    lines = [
        BEGIN,
        "# SFU benchmarks: Conclave's bridge and Janus",
        "",
        f"Generated by `bench/sfu/report.py` from `bench/sfu/results.json` of a run started {res['started']} (git {res['git']})"
        + "".join(f"; {', '.join(m['runs'])} measured again in a run started {m['started']} (git {m['git']})" for m in res.get("merged", []))
        + ".",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; kernel {m['kernel']}; memory {m['memory']}",
        *[f"- {k}: {v}" for k, v in versions.items()],
        "",
        "## Method",
        "",
        "- One command: `bench/sfu/run` (installs Janus and GStreamer from Debian, records, builds, measures, writes this section).",
        "- Publishers: a 10 s recording (GStreamer: VP8 at 320×180, 640×360 and 1280×720, 200/700/2500 kbit/s, "
        "keyframe every 3 s; Opus) replayed in a loop as plain RTP into each server's ingest: Janus's VideoRoom "
        "`add_remote_publisher`, Conclave's `meetings.rtp_ingest`. Each server's publisher joins as its clients do "
        "(Janus: the HTTP API; Conclave: XMPP, the conference request, the MUC and Jingle), only its media is plain.",
        "- Subscribers: `sfu-load` (bench/sfu/load), str0m endpoints that answer each server's offer and do real ICE, "
        "DTLS-SRTP, receiver reports, NACKs and transport-cc feedback, without decoding; one process holds them all. "
        "Each subscriber gets the 720p layer (Janus: substream 2; Conclave: no constraints, so the highest layer) and the audio.",
        f"- Pinning: server on core {res['server_core']}, sfu-load (and the signalling) on core {res['load_core']} (`taskset`).",
        f"- Server CPU: utime+stime from /proc/PID/stat over a {res['secs']:g} s window, divided by the RTP packets the "
        "subscribers received in it (forwarded packets). On loopback the server's `sendto` also runs the receiver's "
        "UDP receive path in softirq, so the totals include kernel work a real network would put on the subscriber's "
        "machine; it weighs the same on both servers. The user column is the server's own work.",
        "- Latency: the replay writes its send time (CLOCK_REALTIME, ns) into the last 12 bytes of each payload; "
        "sfu-load takes the receive time right after reading the datagram. So the figure is the whole path: "
        "loopback, server, and sfu-load's own queueing.",
        "- Loss: by extended sequence number per received SSRC, in the window. RSS per subscriber: (RSS with them "
        "all − RSS with the publishers only) / subscribers.",
        f"- A step is client-bound when sfu-load used more than {90}% of its core: its figures then say more about "
        "the load client than the server.",
        "",
        "## Reading the figures",
        "",
        "- Loopback: each `sendto` also runs the subscriber's receive path and wakes it (softirq, inline), about a third of "
        "the server's CPU in perf; a real NIC would take that off the server's core. Both servers pay it alike.",
        "- Conclave paces what it sends each receiver (str0m's pacer, at 1.1× the receiver's bandwidth estimate, as "
        "browsers pace): a 720p keyframe leaves over tens of milliseconds instead of in one burst. That is most of its p99; "
        "Janus does not pace, so its bursts queue in the receiver's socket instead, and it loses them when the load grows.",
        "- Conclave chooses each receiver's layer from its bandwidth estimate (transport-cc): a receiver whose estimate has "
        "not reached the 720p layer's rate gets 360p (the heights column of results.json); Janus forwards the substream "
        "asked for, whatever the link.",
        "- 10x10: each subscriber takes ten publishers (about 26 Mbit/s); Janus spreads them over its threads.",
        "- 200-lastN20: each subscriber is offered 60 streams (30 publishers' video and audio) and takes 20 videos at "
        "180p and two voices, about 700 packets/s. Conclave's cost per packet grows with the streams str0m sends a "
        "receiver: its pacer looks at every one of them each time it lets a packet out. The bridge declares a stream to "
        "str0m only when its first packet goes, so muted microphones and cameras beyond last-N cost nothing; what is "
        "left of the gap to the 1→N shapes is the 22 streams that do send. (That change came after the run below: "
        "at 50 watchers, A/B in pairs, it took Conclave from 28.1–29.7 to 15.6–16.2 µs per packet and loss from "
        "4–5% to 0.1–0.2%.)",
        "",
        "## Results",
        "",
        *table(res),
        "",
    ]
    if best:
        lines += [
            "## Subscribers one core sustains (one 720p simulcast publisher)",
            "",
            *[f"- {name}: {n if n is not None else '–'} ({why})" for name, (n, why) in best.items()],
            "",
            *ramp_table(res),
            "",
        ]
    lines += ["## Targets", ""]
    c_pkts = [s["cpu_us_per_packet"] for r in res["runs"] if r["server"] == "conclave" for s in r.get("steps", []) if s["cpu_us_per_packet"]]
    if c_pkts:
        lines.append(f"- ≤ {TARGET_CPU_US:g} µs CPU per forwarded packet: Conclave {min(c_pkts):.2f} to {max(c_pkts):.2f} µs across shapes.")
    if c50:
        lines.append(f"- p99 added latency ≤ 1 ms at 50 subscribers: Conclave {num(c50['latency_us'].get('p99'), 0)} µs.")
    if "conclave" in best:
        lines.append(f"- ≥ {TARGET_SUBS_PER_CORE} subscribers of one 720p simulcast publisher per core: Conclave {best['conclave'][0]} ({best['conclave'][1]}).")
    lines.append("")
    if pngs:
        lines += ["## Plots", ""] + [f"![{p}]({img_dir}/{p})" for p in pngs] + [""]
    lines += bwe_section(img_dir)
    lines.append(END)
    return "\n".join(lines) + "\n"


# bwe.py's outputs: (results, plot, what the link does besides its cap).
BWE_RUNS = (
    ("bwe.json", "sfu_bwe_layers.png"),
    ("bwe-delay-only.json", "sfu_bwe_layers_delay_only.png"),
)


def bwe_summary(series: list[dict], settle: int) -> tuple[str, str, int, str]:
    """Over the samples after `settle` s: the layer sent most, the share of
    seconds on it, the seconds without a frame, median fps (low-high)."""
    tail = series[settle:]
    if not tail:
        return "–", "–", 0, "–"
    heights = [p["height"] for p in tail]
    common = max(set(heights), key=heights.count)
    fps = sorted(p["frames"] for p in tail)
    frozen = sum(1 for p in tail if p["frames"] == 0)
    return f"{common}p", f"{100 * heights.count(common) // len(heights)}%", frozen, f"{fps[len(fps) // 2]} ({fps[0]}–{fps[-1]})"


def bwe_section(img_dir: str) -> list[str]:
    lines: list[str] = []
    for name, png in BWE_RUNS:
        path = HERE / name
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        settle = r.get("settle_s", 10)
        if not lines:
            lines += [
                "## Bandwidth estimation on constrained links (`bench/sfu/bwe.py`, Conclave)",
                "",
                "One 720p simulcast publisher (the recording above: 180p ≈ 280, 360p ≈ 790, 720p ≈ 2380 kbit/s on the "
                "wire, audio ≈ 37) and one sfu-load receiver per link, each in a network namespace behind a veth pair "
                "whose bridge side is capped by `tc tbf` (200 ms queue), with delay and random loss behind the cap "
                f"(made by: {r.get('impairment', 'sfu-load')}; without netem the receiving sfu-load delays and drops each "
                "datagram as it arrives). "
                "Janus is not in this test: its VideoRoom forwards the substream a subscriber asks for and has no "
                "estimate of its own to compare.",
                "",
                "Reading it: with the bridge's upgrade headroom (0.9), 720p plus audio needs an estimate of about "
                "2.7 Mbit/s, 90% of the 3 Mbit/s link, and 360p plus audio about 0.92 Mbit/s on the 1 Mbit/s link: "
                "both links sit at a threshold, so which of the two layers a link holds most differs from run to run "
                "(and between the two tables below). Each retry of the higher layer "
                "costs a keyframe burst and a few slow seconds; the hold-down (4 s, doubling to 32 s) keeps retries "
                "rare. The 300 kbit/s link is below even the lowest layer (≈ 314 kbit/s with audio): the bridge keeps "
                "sending it, and frames are lost in the link's queue (about 24 fps arrive).",
                "",
            ]
        lines += [
            f"### {r.get('delay_ms', 0):g} ms delay, {100 * r.get('loss', 0):g}% loss, {r['secs']:g} s",
            "",
            f"After the first {settle} s:",
            "",
            "| link | layer sent most | share of seconds | seconds without a frame | fps, median (low–high) |",
            "|---|---|---|---|---|",
        ]
        for kbps, series in r["receivers"].items():
            layer, share, frozen, fps = bwe_summary(series, settle)
            lines.append(f"| {int(kbps) / 1000:g} Mbit/s | {layer} | {share} | {frozen} | {fps} |")
        lines.append("")
        if (HERE / "plots" / png).exists():
            lines += [f"![{png}]({img_dir}/{png})", ""]
    return lines


def splice(doc: str, sec: str) -> str:
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + sec.rstrip("\n") + tail
    return doc.rstrip("\n") + "\n\n" + sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="?", default=HERE / "results.json")
    ap.add_argument("--doc", type=Path, default=REPO / "BENCHMARKS.md")
    args = ap.parse_args()
    res = json.loads(args.results.read_text())
    img = HERE / "plots"
    img.mkdir(exist_ok=True)
    pngs = plots(res, img)
    rel = img.relative_to(args.doc.parent.resolve()) if img.is_relative_to(args.doc.parent.resolve()) else img
    doc = args.doc.read_text() if args.doc.exists() else ""
    args.doc.write_text(splice(doc, section(res, pngs, str(rel))))
    print(f"wrote the SFU section of {args.doc}" + (f" and {', '.join(pngs)}" if pngs else " (no plots: matplotlib missing)"))


if __name__ == "__main__":
    main()
