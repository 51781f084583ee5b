#!/usr/bin/env python3
"""BENCHMARKS.md and the plots from one results.json of bench.py.

    python3 bench/xmpp/report.py RESULTS.json [--out DIR]

Writes DIR/BENCHMARKS.md, DIR/latency_vs_load.png and DIR/cpu_per_message.png
(DIR defaults to the directory of RESULTS.json; ``--img-subdir`` puts the PNGs
in a subdirectory). ``bench.py --publish`` runs it with ``--out bench/xmpp
--img-subdir plots`` and copies results.json there. The plots need matplotlib
(bench/xmpp/requirements.txt); without it the Markdown is still written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SERVERS = ["conclave", "prosody", "ejabberd"]
PEERS = ["prosody", "ejabberd"]


def fmt(v, digits=2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a, b) -> str:
    if a is None or b is None or not b:
        return "–"
    return f"{a / b:.2f}"


def get(d: dict, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


# (label, scenario key, path in the scenario's result, digits, lower is better)
def metrics(tls: bool) -> list[tuple[str, str, tuple, int]]:
    t = "-tls" if tls else ""
    return [
        ("login: CPU ms per login (storm)", "login" + t, ("login_storm", "cpu_ms_per_login"), 3),
        ("login: logins/s achieved", "login" + t, ("login_storm", "logins_per_s"), 1),
        ("login: mean login time ms (tr_auth)", "login" + t, ("login_latency", "mean_ms"), 2),
        ("idle session: RSS KiB per session", "login" + t, ("login_storm", "rss_per_session_kib"), 1),
        ("login: peak RSS MiB", "login" + t, ("rss_peak_kib",), 1),
        ("SCRAM login: CPU ms per login (storm)", "login-scram" + t, ("login_storm", "cpu_ms_per_login"), 3),
        ("SCRAM login: logins/s achieved", "login-scram" + t, ("login_storm", "logins_per_s"), 1),
        ("SCRAM login: login time mean / p99 / max ms", "login-scram" + t, ("login_latency",), 1),
        ("SCRAM login: mechanism used", "login-scram" + t, ("mechanism",), 0),
        ("SCRAM login: errors", "login-scram" + t, ("error_count",), 0),
        ("1:1 chat: CPU µs per message", "chat" + t, ("steady", "cpu_us_per_delivery"), 1),
        ("1:1 chat: of which user-mode µs (rest: kernel)", "chat" + t, ("steady", "user_us_per_delivery"), 1),
        ("1:1 chat: delivered msg/s", "chat" + t, ("steady", "delivered_per_s"), 1),
        ("1:1 chat: latency mean ms", "chat" + t, ("latency", "mean_ms"), 2),
        ("1:1 chat: latency p99 ms", "chat" + t, ("latency", "p99_ms"), 2),
        ("1:1 chat: latency max ms", "chat" + t, ("latency", "max_ms"), 1),
        ("1:1 chat: undelivered", "chat" + t, ("undelivered",), 0),
        ("peak: max delivered msg/s", "peak" + t, ("max_delivered_per_s",), 0),
        ("peak: saturated at offered msg/s", "peak" + t, ("saturated_at_offered_per_s",), 0),
        ("MUC 10 rooms: CPU µs per delivered stanza", "muc" + t, ("steady", "cpu_us_per_delivery"), 1),
        ("MUC 10 rooms: of which user-mode µs", "muc" + t, ("steady", "user_us_per_delivery"), 1),
        ("MUC 10 rooms: deliveries/s", "muc" + t, ("steady", "delivered_per_s"), 0),
        ("MUC 10 rooms: latency mean / p99 ms", "muc" + t, ("latency",), 2),
        ("MUC 1 room: CPU µs per delivered stanza", "muc500" + t, ("steady", "cpu_us_per_delivery"), 1),
        ("MUC 1 room: of which user-mode µs", "muc500" + t, ("steady", "user_us_per_delivery"), 1),
        ("MUC 1 room: deliveries/s", "muc500" + t, ("steady", "delivered_per_s"), 0),
        ("MUC 1 room: latency mean / p99 ms", "muc500" + t, ("latency",), 2),
        ("peak RSS MiB (chat)", "chat" + t, ("rss_peak_kib",), 1),
        ("errors, all scenarios (tsung and SCRAM loader)", "*" + t, ("error_count",), 0),
    ]


def value(res: dict, server: str, key: str, path: tuple):
    s = get(res, "servers", server, "scenarios") or {}
    if key.startswith("*"):
        suffix = key[1:]
        total = 0
        for k, r in s.items():
            if (k.endswith("-tls") if suffix else not k.endswith("-tls")) and not k.endswith("-unpinned"):
                total += (r.get("error_count") or 0) + sum(st.get("error_count") or 0 for st in r.get("steps", []))
        return total
    r = s.get(key)
    if r is None:
        return None
    if "error" in r and r.get("kind") != "peak":
        return "error"
    v = get(r, *path)
    if path == ("saturated_at_offered_per_s",) and v is None:
        return "not reached" + (" (client-bound)" if r.get("client_bound") else "")
    if path == ("latency",) and isinstance(v, dict):
        return (v.get("mean_ms"), v.get("p99_ms"))
    if path == ("login_latency",) and isinstance(v, dict):
        return (v.get("mean_ms"), v.get("p99_ms"), v.get("max_ms"))
    if path == ("rss_peak_kib",) and v is not None:
        return v / 1024
    return v


def cell(v, digits) -> str:
    if isinstance(v, tuple):
        return " / ".join(fmt(x, digits) for x in v)
    return fmt(v, digits)


def table(res: dict, tls: bool) -> list[str]:
    present = [s for s in SERVERS if s in res["servers"]]
    peers = [p for p in PEERS if p in present]
    head = "| | " + " | ".join(present) + "".join(f" | Conclave/{p}" for p in peers) + " |"
    lines = [head, "|" + "---|" * (1 + len(present) + len(peers))]
    any_row = False
    for label, key, path, digits in metrics(tls):
        vals = [value(res, s, key, path) for s in present]
        if all(v is None for v in vals):
            continue
        any_row = True
        row = f"| {label} | " + " | ".join(cell(v, digits) for v in vals)
        c = vals[0] if present and present[0] == "conclave" else None
        for p in peers:
            pv = vals[present.index(p)]
            if isinstance(c, tuple) and isinstance(pv, tuple):
                row += " | " + " / ".join(ratio(a, b) for a, b in zip(c, pv))
            elif isinstance(c, (int, float)) and isinstance(pv, (int, float)):
                row += f" | {ratio(c, pv)}"
            else:
                row += " | –"
        lines.append(row + " |")
    return lines if any_row else []


def problems(res: dict) -> list[str]:
    out = []
    for s, e in res["servers"].items():
        if "error" in e:
            out.append(f"- **{s}**: {e['error']}")
        for k, r in e.get("scenarios", {}).items():
            if "error" in r:
                out.append(f"- **{s} {k}**: {r['error']}")
            if r.get("warning"):
                out.append(f"- {s} {k}: {r['warning']}")
            if r.get("note"):
                out.append(f"- {s} {k}: {r['note']}")
            for i, st in enumerate(r.get("steps", []), 1):
                if "error" in st:
                    out.append(f"- **{s} {k} step {i}**: {st['error']}")
                if st.get("note"):
                    out.append(f"- {s} {k} step {i}: {st['note']}")
    return out


def peak_rows(res: dict) -> list[str]:
    lines = ["| server | transport | planned msg/s | offered msg/s | delivered msg/s | server CPU share | latency mean ms | p99 ms | max ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    n = 0
    for s in SERVERS:
        for k in ("peak", "peak-tls"):
            r = get(res, "servers", s, "scenarios", k)
            if not r:
                continue
            for st in r.get("steps", []):
                sd, lat = st.get("steady") or {}, st.get("latency") or {}
                mark = " (saturated)" if st.get("saturated") else ""
                lines.append(f"| {s} | {'STARTTLS' if k.endswith('tls') else 'TCP'} | {fmt(st.get('offered_planned_per_s'), 0)} | "
                             f"{fmt(sd.get('offered_per_s'), 0)} | {fmt(sd.get('delivered_per_s'), 0)}{mark} | "
                             f"{fmt(sd.get('server_cpu_share'))} | {fmt(lat.get('mean_ms'))} | {fmt(lat.get('p99_ms'))} | "
                             f"{fmt(lat.get('max_ms'), 1)} |")
                n += 1
    return lines if n else []


def plots(res: dict, out: Path, sub: str = "") -> list[str]:
    """Writes the PNGs into out/sub; returns their paths relative to out."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    (out / sub).mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = False
    for s in SERVERS:
        for k, style in (("peak", "-"), ("peak-tls", "--")):
            steps = get(res, "servers", s, "scenarios", k, "steps") or []
            pts = [((st.get("steady") or {}).get("offered_per_s"), st.get("latency") or {}) for st in steps]
            pts = [(x, lat) for x, lat in pts if x and lat.get("n")]
            if not pts:
                continue
            drawn = True
            label = s + (" TLS" if k.endswith("tls") else "")
            axes[0].plot([x for x, _ in pts], [lat["mean_ms"] for _, lat in pts], style, marker="o", label=label)
            axes[1].plot([x for x, _ in pts], [lat["p99_ms"] for _, lat in pts], style, marker="o", label=label)
    if drawn:
        for ax, what in zip(axes, ("mean", "p99")):
            ax.set_xlabel("offered load, msg/s (measured)")
            ax.set_ylabel(f"message latency {what}, ms")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        fig.suptitle("1:1 chat latency against offered load (peak ramp)")
        fig.tight_layout()
        fig.savefig(out / sub / "latency_vs_load.png", dpi=110)
        made.append(str(Path(sub) / "latency_vs_load.png"))
    plt.close(fig)

    cats = [("chat", "1:1 chat\nµs/message"), ("muc", "MUC 10 rooms\nµs/delivery"), ("muc500", "MUC 1 room\nµs/delivery"),
            ("chat-tls", "1:1 chat TLS\nµs/message"), ("muc-tls", "MUC 10 rooms TLS\nµs/delivery")]
    present = [s for s in SERVERS if s in res["servers"]]
    cats = [(k, label) for k, label in cats
            if any(isinstance(value(res, s, k, ("steady", "cpu_us_per_delivery")), (int, float)) for s in present)]
    if cats and present:
        fig, ax = plt.subplots(figsize=(max(6, 2 * len(cats)), 4.2))
        w = 0.8 / len(present)
        for i, s in enumerate(present):
            ys = [value(res, s, k, ("steady", "cpu_us_per_delivery")) for k, _ in cats]
            ys = [y if isinstance(y, (int, float)) else 0 for y in ys]
            ax.bar([j + i * w for j in range(len(cats))], ys, w, label=s)
        ax.set_xticks([j + w * (len(present) - 1) / 2 for j in range(len(cats))])
        ax.set_xticklabels([label for _, label in cats])
        ax.set_ylabel("server CPU, µs per delivered stanza")
        ax.set_title("Server CPU per message (one core each)")
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / sub / "cpu_per_message.png", dpi=110)
        made.append(str(Path(sub) / "cpu_per_message.png"))
        plt.close(fig)
    return made


UNPINNED = [("login-unpinned", "tsung, PLAIN", "plain TCP"), ("login-tls-unpinned", "tsung, PLAIN", "STARTTLS"),
            ("login-scram-unpinned", "SCRAM", "plain TCP"), ("login-scram-tls-unpinned", "SCRAM", "STARTTLS")]


def unpinned(res: dict) -> list[str]:
    """The login storms with both cores for server and load generator ("cores all used")."""
    lines = ["", "## Login storms on both cores (not pinned)", "",
             "| server | load | transport | CPU ms per login | Conclave/server | logins/s | "
             "login time mean / p99 ms (tsung: tr_auth) | KiB per session |",
             "|---|---|---|---|---|---|---|---|"]
    n = 0
    for key, load, how in UNPINNED:
        c = get(res, "servers", "conclave", "scenarios", key, "login_storm", "cpu_ms_per_login")
        for s in SERVERS:
            r = get(res, "servers", s, "scenarios", key)
            if not r or "login_storm" not in r:
                continue
            ls, lat = r["login_storm"], r.get("login_latency") or {}
            rel = "–" if s == "conclave" else ratio(c, ls["cpu_ms_per_login"])
            lines.append(f"| {s} | {load} | {how} | {fmt(ls['cpu_ms_per_login'], 3)} | {rel} | "
                         f"{fmt(ls['logins_per_s'], 1)} | {fmt(lat.get('mean_ms'))} / {fmt(lat.get('p99_ms'))} | "
                         f"{fmt(ls['rss_per_session_kib'], 1)} |")
            n += 1
    return lines if n else []


def markdown(res: dict, pngs: list[str]) -> str:
    m, v = res["machine"], res["versions"]
    L = ["# XMPP benchmarks: Conclave, Prosody, ejabberd", ""]
    if res.get("validation"):
        L += ["> **Validation run, not publication figures.** Scale "
              f"{res['scale']} (users and rates × {res['scale']}), {res['duration_s']:g} s of sending per scenario, "
              "on a machine shared with other jobs. It shows that the pipeline works end to end; "
              "the numbers are not to be quoted. Run `bench/xmpp/run` on a quiet machine for real figures.", ""]
    L += [f"Generated by `bench/xmpp/report.py` from `results.json` of a run started {res['started']}.", "",
          "## Machine and versions", "",
          f"- CPU: {m['cpu']}, {m['cores']} cores; kernel {m['kernel']}; memory {m.get('memory', '?')}; Debian {m.get('os', '?')}",
          f"- Conclave {v.get('conclave', '?')} (git {v.get('conclave_git', '?')}), release build",
          f"- Prosody {v.get('prosody', '–')} on {' '.join(str(v.get('lua', '–')).split()[:2])}",
          f"- ejabberd {v.get('ejabberd', '–')} on Erlang {v.get('erlang', '–')}",
          f"- tsung {v.get('tsung', '?')}", ""]
    pinned = res.get("pinned")
    L += ["## Method", "",
          "- Every server on 127.0.0.1 with its own ports, data in a scratch directory, restarted before each scenario.",
          "- Load: tsung (plain TCP, or STARTTLS for the `-tls` rows), SASL PLAIN, bind, session, roster get, "
          "initial presence, then stamped 64-byte messages.",
          ("- **Pinning**: server on core 0, tsung on core 1 (`taskset`). Conclave (tokio) and ejabberd (BEAM) are "
           "multi-threaded but are confined to one core here like single-threaded Prosody; the `-unpinned` login "
           "storms give server and load generator both cores (tsung's: Conclave only; SCRAM: all three)." if pinned else "- Not pinned: server and tsung share all cores."),
          "- Server CPU: utime+stime of the server process from /proc/PID/stat, sampled every 0.25 s "
          "(ejabberd: the beam.smp process, all its threads). CPU per message is taken over the steady window "
          "(the seconds in which tsung sent at ≥ 80% of its peak rate) and divided by the messages delivered in it. "
          "The user-mode rows give utime alone: the server's own work. The rest is kernel time, mostly the "
          "read and write syscalls, and on loopback the write also runs the receiving client's TCP stack.",
          "- Login CPU: CPU during the login storm (first to last completed SASL exchange) / logins; a login is "
          "connect (+ STARTTLS), PLAIN, bind, session, roster get and initial presence.",
          *(["- SCRAM login storm (`login-scram` rows): tsung speaks only PLAIN, so our own asyncio loader "
          "(`bench/xmpp/scram_load.py`, one Python process on the client core) logs the same users in as real "
          "clients do: connect (+ STARTTLS, certificate not checked), SASL SCRAM-SHA-256 (SCRAM-SHA-1 only if "
          "-256 is not offered; no channel binding), stream restart, bind, session if required, roster get, "
          "initial presence, Poisson arrivals at the login storm's rate; every session stays until all are in. "
          "The client derives the salted password (one PBKDF2 per login, every user has its own password and "
          "salt), so the server only checks HMACs; the server signature is verified, and a failed login or a "
          "wrong signature counts as an error. CPU per login: server CPU from the first connect to the last "
          "completed login (+0.5 s) / logins; login time: connect to roster result, client PBKDF2 included."]
            if any(k.startswith("login-scram") for e in res["servers"].values() for k in e.get("scenarios", {}))
            else []),
          "- RSS per session: (RSS with every user logged in and idle − RSS of the idle server) / users.",
          "- Latency: every `xmpp_msg_latency` sample from tsung's `fullstats` backend (sender's stamp to receiver), "
          "so mean, p99 and max are exact. In rooms every occupant's copy is a sample. "
          "Samples of messages sent before the run are left out: each server keeps its store across runs, "
          "so a message sent at the end of one run to a user who had just left is delivered from offline storage "
          "at the next run's login, with a latency of tens of seconds (`stale_deliveries` in results.json counts them).",
          "- Peak: the chat users with the offered load raised step by step (one tsung run per step); "
          "saturation is the first step where delivered < 90% of offered or p99 > "
          "1 s. tsung runs on one core, so at high rates it may not offer the planned load (\"client-bound\").", ""]
    if res.get("notes"):
        L += ["## Notes on this run", ""] + [f"- {n}" for n in res["notes"]] + [""]
    s = res["settings"]
    L += ["## Like-for-like settings", "",
          f"- Passwords stored only as salted SCRAM-SHA-256 keys everywhere, {s['scram_iterations']} PBKDF2 "
          "iterations (ejabberd 23.01's count is fixed at 4096; Conclave's default is 10000), so a PLAIN login "
          "costs each server one PBKDF2 derivation.",
          "- No message archive (Conclave `archive.enabled = false`, no mod_mam), no room history, "
          "offline storage on. Conclave: `auth.allow_unencrypted_plain = true`, "
          "`c2s.require_encryption = false` (Prosody: `allow_unencrypted_plain_auth`).",
          "- The same self-signed P-256 certificate for all three.", ""]
    for name, e in res["servers"].items():
        if e.get("settings"):
            L.append(f"- {name}: " + "; ".join(f"{k} = {val}" for k, val in e["settings"].items()))
    L += ["", "## Scenarios", ""]
    L += [f"- `{k}`: {t}" for k, t in res["scenarios"].items()]
    for tls in (False, True):
        t = table(res, tls)
        if t:
            L += ["", f"## Results, {'STARTTLS' if tls else 'plain TCP'}", ""] + t
    L += unpinned(res)
    pr = peak_rows(res)
    if pr:
        L += ["", "## Peak ramp, step by step", ""] + pr
    if pngs:
        L += ["", "## Plots", ""] + [f"![{p}]({p})" for p in pngs]
    pb = problems(res)
    L += ["", "## Errors and warnings", ""] + (pb or ["None."])
    return "\n".join(L) + "\n"


SFU_BEGIN = "<!-- bench/sfu:begin -->"
SFU_END = "<!-- bench/sfu:end -->"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out", default=None)
    ap.add_argument("--img-subdir", default="", help="write the PNGs into this subdirectory of --out")
    a = ap.parse_args()
    res = json.loads(Path(a.results).read_text())
    out = Path(a.out or Path(a.results).parent)
    out.mkdir(parents=True, exist_ok=True)
    pngs = plots(res, out, a.img_subdir)
    doc = out / "BENCHMARKS.md"
    # The SFU section (bench/sfu/report.py) is another run's: kept as it is.
    old = doc.read_text() if doc.exists() else ""
    sfu = ""
    if SFU_BEGIN in old and SFU_END in old:
        sfu = "\n" + SFU_BEGIN + old.split(SFU_BEGIN, 1)[1].split(SFU_END, 1)[0] + SFU_END + "\n"
    doc.write_text(markdown(res, pngs) + sfu)
    print(f"wrote {out / 'BENCHMARKS.md'}" + (f" and {', '.join(pngs)}" if pngs else " (no plots: matplotlib missing)"))


if __name__ == "__main__":
    main()
