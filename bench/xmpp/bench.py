#!/usr/bin/env python3
"""Conclave against Prosody and ejabberd, with the same tsung scenarios.

Run it through ``bench/xmpp/run`` (it installs the packages and builds
Conclave); see bench/xmpp/README.md. Writes ``results.json`` (and, unless
``--smoke``, BENCHMARKS.md and PNG plots through report.py) into ``--out``.

Server CPU is utime+stime of the server process from /proc/PID/stat,
sampled every 0.25 s (ejabberd: the beam.smp process, i.e. all its
threads). The server is pinned to core 0 and tsung to core 1 unless
``--no-pin``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers as srv  # noqa: E402
import tsung  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HZ = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- sampling the server ------------------------------------------------------

class Sampler(threading.Thread):
    """(time, cpu seconds, rss KiB, user-mode cpu seconds) of one process,
    every ``period`` seconds. CPU is utime+stime; the user part alone tells
    the server's own work from the kernel's (syscalls, and on loopback the
    receiving side's TCP stack, which the sender's write runs)."""

    def __init__(self, pid: int, period: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, float, int, float]] = []
        self._halt = threading.Event()
        self.sample()

    def sample(self) -> None:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            user = int(fields[11]) / HZ
            cpu = user + int(fields[12]) / HZ
            rss = 0
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
            self.samples.append((time.time(), cpu, rss, user))
        except (OSError, ValueError):
            pass

    def run(self) -> None:
        while not self._halt.wait(self.period):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(2)
        self.sample()

    def cpu_at(self, t: float, col: int = 1) -> float:
        s = self.samples
        if not s:
            return 0.0
        if t <= s[0][0]:
            return s[0][col]
        for a, b in zip(s, s[1:]):
            t0, t1 = a[0], b[0]
            if t0 <= t <= t1:
                return a[col] + (b[col] - a[col]) * ((t - t0) / (t1 - t0) if t1 > t0 else 1)
        return s[-1][col]

    def cpu_between(self, t0: float, t1: float) -> float:
        return self.cpu_at(t1) - self.cpu_at(t0)

    def user_between(self, t0: float, t1: float) -> float:
        return self.cpu_at(t1, 3) - self.cpu_at(t0, 3)

    def rss_max(self, t0: float = 0, t1: float = math.inf) -> int:
        return max((x[2] for x in self.samples if t0 <= x[0] <= t1), default=0)


# --- scenarios ------------------------------------------------------------------

def scaled(n: float, scale: float, minimum: int) -> int:
    return max(minimum, int(round(n * scale)))


def scenario_plans(args) -> dict[str, dict]:
    """name -> description and the tsung plan(s). ``args.scale`` scales users and rates."""
    s, d = args.scale, args.duration
    plans: dict[str, dict] = {}
    if args.smoke:
        n = 20
        plans["chat"] = {"kind": "chat", "title": f"1:1 chat, {n} users (smoke)",
                         "plan": dict(users=n, arrival_rate=20, wait=2, msgs=10, think=0.5, end_wait=2)}
        plans["muc"] = {"kind": "muc", "title": f"MUC, {n} users in 2 rooms (smoke)",
                        "plan": dict(users=n, arrival_rate=20, wait=2, msgs=4, think=1, end_wait=2,
                                     mode="muc", rooms=2)}
        plans["login-scram"] = {"kind": "scram", "title": f"SCRAM login storm: {n} users at 20/s (smoke)",
                                "plan": dict(users=n, rate=20.0, hold=1.0)}
        return plans
    # login storm: 2,000 users at 200/s, each held idle until all are in
    n, rate = scaled(2000, s, 20), max(5.0, 200 * s)
    plans["login"] = {"kind": "login", "title": f"login storm: {n} users at {rate:g}/s",
                      "plan": dict(users=n, arrival_rate=rate, wait=n / rate * 1.3 + 8, msgs=0, end_wait=0)}
    # the same storm with SCRAM, as real clients log in (our own loader, scram_load.py)
    plans["login-scram"] = {"kind": "scram", "title": f"SCRAM login storm: {n} users at {rate:g}/s",
                            "plan": dict(users=n, rate=rate, hold=3.0)}
    # steady 1:1 chat: 1,000 users, 2,000 msg/s in total
    n = scaled(1000, s, 10)
    total = 2000 * s
    think = n / total
    arr = max(20.0, n / 10)
    plans["chat"] = {"kind": "chat", "title": f"steady 1:1 chat: {n} users, {total:g} msg/s",
                     "plan": dict(users=n, arrival_rate=arr, wait=n / arr * 1.3 + 3,
                                  msgs=max(1, int(d / think)), think=think, end_wait=3)}
    # unpaced peak: the same users, offered load raised step by step
    steps = [r * s for r in (1000, 2000, 4000, 6000, 8000, 12000, 16000, 24000)]
    plans["peak"] = {"kind": "peak", "title": f"peak ramp: {n} users, offered {steps[0]:g}..{steps[-1]:g} msg/s",
                     "steps": [dict(users=n, arrival_rate=arr, wait=n / arr * 1.3 + 3,
                                    msgs=max(1, int(args.step_duration * r / n)), think=n / r, end_wait=3)
                               for r in steps],
                     "offered": steps}
    # MUC fan-out: 200 users in 10 rooms, 1 msg/s each
    n = scaled(200, s, 10)
    arr = max(20.0, n / 5)
    plans["muc"] = {"kind": "muc", "title": f"MUC: {n} users in 10 rooms, 1 msg/s each",
                    "plan": dict(users=n, arrival_rate=arr, wait=n / arr * 1.3 + 2, msgs=max(1, int(d)),
                                 think=1.0, end_wait=3, mode="muc", rooms=10)}
    # one big room: 500 users; 10 msg/s into the room in total (5,000 deliveries/s
    # at full scale: tsung must parse every copy)
    n = scaled(500, s, 10)
    arr = max(20.0, n / 5)
    think = n / 10
    plans["muc500"] = {"kind": "muc", "title": f"MUC: one room of {n} users, {n / think:g} msg/s into it",
                       "plan": dict(users=n, arrival_rate=arr, wait=n / arr * 1.3 + 2,
                                    msgs=max(2, math.ceil(d / think)), think=think, end_wait=3, mode="muc", rooms=1)}
    return plans


def run_client(cmd: list[str], out: Path, logname: str, pin: bool, timeout: float,
               env: dict | None = None) -> tuple[int, float]:
    """Runs a load generator pinned to the client core, in its own process
    group; returns (exit code, client CPU seconds)."""
    cmd = srv.pin(CLIENT_CPU if pin else None) + cmd
    before = os.times()
    with open(out / logname, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             cwd=out, start_new_session=True)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = -1
    try:
        os.killpg(p.pid, signal.SIGKILL)  # stragglers of its group
    except ProcessLookupError:
        pass
    after = os.times()
    return rc, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def run_tsung(plan: tsung.Plan, out: Path, pin: bool, timeout: float) -> tuple[int, float, str]:
    """Runs tsung; returns (exit code, client CPU seconds, log dir)."""
    shutil.rmtree(out, ignore_errors=True)  # tsung appends to a log dir of the same minute
    out.mkdir(parents=True, exist_ok=True)
    xml = out / "scenario.xml"
    xml.write_text(plan.xml())
    env = srv.erl_env()
    env["ERL_FLAGS"] = "-tsung_controller dumpstats_interval 1000 -kernel inet_dist_use_interface {127,0,0,1}"
    env["HOME"] = str(out)  # tsung writes ~/.tsung
    rc, client_cpu = run_client(["tsung", "-n", "-f", str(xml), "-l", str(out), "start"], out, "tsung.out",
                                pin, timeout, env)
    logdirs = sorted(d for d in out.iterdir() if d.is_dir() and (d / "tsung.log").exists())
    return rc, client_cpu, str(logdirs[-1]) if logdirs else ""


def sampled(server: srv.Server, pin: bool, load) -> tuple[dict, Sampler]:
    """Starts the server (on the server core if ``pin``), samples it while
    ``load()`` runs, stops it; returns the common figures and the sampler.
    ``load`` returns (exit code, client CPU seconds)."""
    server.start(SERVER_CPU if pin else None)
    try:
        time.sleep(1.0)
        sampler = Sampler(server.pid)
        sampler.start()
        time.sleep(1.0)
        rss_idle = sampler.samples[-1][2]
        t_start = time.time()
        rc, client_cpu = load()
        t_end = time.time()
        time.sleep(0.5)
        sampler.stop()
        alive = server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()
    return {"rc": rc, "client_cpu_s": round(client_cpu, 3), "wall_s": round(t_end - t_start, 1),
            "server_alive_at_end": alive, "rss_idle_kib": rss_idle,
            "rss_peak_kib": sampler.rss_max(), "server_cpu_total_s": round(sampler.cpu_between(t_start, t_end), 3)}, sampler


def measure(server: srv.Server, plan_kw: dict, out: Path, args, pin: bool = True) -> dict:
    """One server start, one tsung run, the figures."""
    plan = tsung.Plan(port=server.ports["c2s"], tls=args.tls, **plan_kw)
    logdir = ""

    def load():
        nonlocal logdir
        rc, cpu, logdir = run_tsung(plan, out, pin, plan.expected_secs() * 3 + 60)
        return rc, cpu

    r, sampler = sampled(server, pin, load)
    rc = r.pop("rc")
    r = {"tsung_rc": rc, **r, "plan": plan_kw}
    if not logdir:
        r["error"] = f"tsung wrote no log (exit {rc}); see {out / 'tsung.out'}"
        return r
    tl = tsung.parse_log(Path(logdir) / "tsung.log")
    full = tsung.parse_fullstats(Path(logdir) / "tsung-fullstats.log")
    r["logdir"] = logdir
    r["errors"] = tl.errors()
    r["error_count"] = int(sum(tl.errors().values()))
    r["connects"] = int(tl.total("connect"))
    r["logins"] = int(tl.total("tr_auth"))
    r["users_expected"] = plan.users
    r["login_latency"] = tsung.latency_summary(full.get("tr_auth", []))
    r["sent"] = int(tl.total("tr_msg"))
    r.update(tsung.deliveries(tl, full))
    r["_tl"], r["_sampler"] = tl, sampler  # for the scenario-specific figures; dropped before JSON
    if rc != 0:
        r["error"] = f"tsung exited with {rc}"
    elif not r["server_alive_at_end"]:
        r["error"] = "the server exited during the run"
    return r


def measure_scram(server: srv.Server, plan_kw: dict, out: Path, args, pin: bool = True) -> dict:
    """One server start, one SCRAM login storm of scram_load.py, the figures.

    The storm window runs from the first connect to the last completed login
    (+0.5 s for the server's work on the last presence); the server's CPU in
    it over the logins is the CPU per login."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    users, rate, hold = plan_kw["users"], plan_kw["rate"], plan_kw["hold"]
    data = out / "scram_load.json"
    cmd = [sys.executable, str(Path(__file__).with_name("scram_load.py")), "--port", str(server.ports["c2s"]),
           "--users", str(users), "--rate", str(rate), "--hold", str(hold), "--out", str(data)]
    if args.tls:
        cmd.append("--tls")
    timeout = (users / rate * 1.3 + hold + 10) * 3 + 60
    r, sm = sampled(server, pin, lambda: run_client(cmd, out, "scram_load.out", pin, timeout))
    rc = r.pop("rc")
    r = {"loader_rc": rc, **r, "plan": plan_kw, "users_expected": users}
    if rc != 0 or not data.exists():
        r["error"] = f"scram_load.py exited with {rc}; see {out / 'scram_load.out'}"
        return r
    d = json.loads(data.read_text())
    ok = [u for u in d["per_user"] if "error" not in u]
    r.update({"logins": d["logins"], "errors": d["errors"], "error_count": d["error_count"],
              "error_examples": d["error_examples"], "mechanisms_offered": d["mechanisms_offered"],
              "mechanism_used": d["mechanism_used"], "session_required": d["session_required"],
              "mechanism": "/".join(sorted(d["mechanism_used"])) or None,
              "client_pbkdf2_ms": d["client_pbkdf2_ms"], "loader_cpu_share": d["loader_cpu_share"],
              # connect to roster result (+ presence sent): what the user waits for
              "login_latency": tsung.latency_summary([(u["t_done"] - u["t_connect"]) * 1e3 for u in ok]),
              # <auth/> to bound session, the span of tsung's tr_auth transaction
              "auth_latency": tsung.latency_summary([(u["t_bound"] - u["t_auth"]) * 1e3 for u in ok])})
    if ok:
        t0, t1 = min(u["t_connect"] for u in ok), max(u["t_done"] for u in ok)
        secs = max(t1 - t0, 1e-3)
        cpu = sm.cpu_between(t0, t1 + 0.5)
        rss_all = sm.rss_max(t1, t1 + hold)
        n = len(ok)
        r["login_storm"] = {"secs": round(secs, 1), "logins": n, "logins_per_s": round(n / secs, 1),
                            "server_cpu_s": round(cpu, 3), "cpu_ms_per_login": round(cpu / n * 1e3, 3),
                            "rss_all_in_kib": rss_all,
                            "rss_per_session_kib": round((rss_all - r["rss_idle_kib"]) / n, 2)}
    if d["loader_cpu_share"] > 0.85:
        r["note"] = (f"client-bound: the loader used {d['loader_cpu_share']:.0%} of a core during the storm; "
                     "login times include its queueing")
    if not r["server_alive_at_end"]:
        r["error"] = "the server exited during the run"
    return r


def window(tl: tsung.TsungLog, name: str, frac: float = 0.8) -> tuple[float, float, list[tsung.Block]]:
    """The steady window: the seconds in which ``name`` ran at >= frac of its peak rate."""
    counts = [b.counts.get(name, 0) for b in tl.blocks]
    peak = max(counts, default=0)
    if peak <= 0:
        return 0, 0, []
    idx = [i for i, c in enumerate(counts) if c >= frac * peak]
    i0, i1 = idx[0], idx[-1]
    blocks = tl.blocks[i0:i1 + 1]
    return blocks[0].t - 1.0, blocks[-1].t, blocks


def steady_figures(r: dict) -> None:
    tl, sm = r["_tl"], r["_sampler"]
    t0, t1, blocks = window(tl, "tr_msg")
    secs = t1 - t0
    if not blocks or secs <= 0:
        return
    sent = sum(b.counts.get("tr_msg", 0) for b in blocks)
    recv = sum(b.counts.get("xmpp_msg_latency", 0) for b in blocks)
    cpu = sm.cpu_between(t0, t1)
    user = sm.user_between(t0, t1)
    r["steady"] = {"secs": round(secs, 1), "offered_per_s": round(sent / secs, 1),
                   "delivered_per_s": round(recv / secs, 1), "server_cpu_s": round(cpu, 3),
                   "server_cpu_share": round(cpu / secs, 3),
                   "cpu_us_per_delivery": round(cpu / recv * 1e6, 1) if recv else None,
                   "user_us_per_delivery": round(user / recv * 1e6, 1) if recv else None,
                   "fanout": round(recv / sent, 2) if sent else None}


def login_figures(r: dict) -> None:
    tl, sm = r["_tl"], r["_sampler"]
    auth = [(b.t, b.counts.get("tr_auth", 0)) for b in tl.blocks]
    active = [t for t, c in auth if c > 0]
    if not active:
        return
    t0, t1 = active[0] - 1.0, active[-1]
    logins = sum(c for t, c in auth if t0 < t <= t1)
    cpu = sm.cpu_between(t0, t1 + 0.5)
    # every user is in and idle: the resident set of N sessions
    rss_all = sm.rss_max(t1, t1 + 4)
    r["login_storm"] = {"secs": round(t1 - t0, 1), "logins": int(logins),
                        "logins_per_s": round(logins / (t1 - t0), 1),
                        "server_cpu_s": round(cpu, 3),
                        "cpu_ms_per_login": round(cpu / logins * 1e3, 3) if logins else None,
                        "rss_all_in_kib": rss_all,
                        "rss_per_session_kib": round((rss_all - r["rss_idle_kib"]) / logins, 2) if logins else None}


def undelivered(r: dict) -> None:
    if r.get("sent") is not None and r.get("received") is not None:
        r["undelivered"] = max(0, r["sent"] - r["received"])


def check_ok(r: dict, kind: str) -> None:
    """Errors worth a flag: tsung errors, missing logins, nothing delivered."""
    problems = []
    if r.get("error_count"):
        problems.append(f"{'SCRAM loader' if kind == 'scram' else 'tsung'} errors {r['errors']}")
    if r.get("logins", 0) < r.get("users_expected", 0):
        problems.append(f"{r.get('logins', 0)} of {r['users_expected']} users logged in")
    if kind not in ("login", "scram") and not r.get("received"):
        problems.append("nothing delivered")
    if problems and "error" not in r:
        r["warning"] = "; ".join(problems)


def run_scenario(server: srv.Server, name: str, spec: dict, out: Path, args, pin: bool = True) -> dict:
    kind = spec["kind"]
    if kind == "peak":
        steps = []
        for i, (kw, offered) in enumerate(zip(spec["steps"], spec["offered"])):
            log(f"  {server.name} {name} step {i + 1}: offered {offered:g} msg/s")
            r = measure(server, kw, out / f"step{i + 1}", args, pin)
            steady_figures(r)
            undelivered(r)
            r["offered_planned_per_s"] = offered
            strip(r)
            steps.append(r)
            st = r.get("steady", {})
            lat = r.get("latency", {})
            if "error" in r:
                break
            got, gave = st.get("delivered_per_s", 0), st.get("offered_per_s", 0)
            if gave < 0.85 * offered:
                r["note"] = "client-bound: tsung could not offer the planned rate"
            if got < 0.9 * gave or (lat.get("p99_ms") or 0) > args.saturation_p99_ms:
                r["saturated"] = True
                break
            if gave < 0.85 * offered:
                break
        best = max((s.get("steady", {}).get("delivered_per_s", 0) for s in steps), default=0)
        sat = next((s for s in steps if s.get("saturated")), None)
        return {"kind": kind, "title": spec["title"], "steps": steps, "max_delivered_per_s": best,
                "saturated_at_offered_per_s": sat["steady"]["offered_per_s"] if sat and "steady" in sat else None,
                "client_bound": any(s.get("note") for s in steps)}
    if kind == "scram":
        r = measure_scram(server, spec["plan"], out, args, pin)
        check_ok(r, kind)
        r["kind"], r["title"] = kind, spec["title"]
        return r
    r = measure(server, spec["plan"], out, args, pin)
    if kind == "login":
        login_figures(r)
    else:
        steady_figures(r)
        if kind == "chat":
            undelivered(r)
    check_ok(r, kind)
    strip(r)
    r["kind"], r["title"] = kind, spec["title"]
    return r


def strip(r: dict) -> None:
    r.pop("_tl", None)
    r.pop("_sampler", None)


# --- the machine ---------------------------------------------------------------------

def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    except (OSError, IndexError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "memory": mem,
            "os": Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"}


def git_rev() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def tsung_version() -> str:
    return srv.dpkg_version("tsung")


# --- main ------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="conclave,prosody,ejabberd")
    ap.add_argument("--scenarios", default="login,login-scram,chat,peak,muc,muc500",
                    help="comma list of login,login-scram,chat,peak,muc,muc500")
    ap.add_argument("--no-tls", action="store_true", help="skip the STARTTLS variants")
    ap.add_argument("--tls-only", action="store_true", help="only the STARTTLS variants")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies user counts and rates (0.1 for a check)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of steady sending per scenario")
    ap.add_argument("--step-duration", type=float, default=15.0, help="seconds of sending per peak step")
    ap.add_argument("--saturation-p99-ms", type=float, default=1000.0)
    ap.add_argument("--scram-iterations", type=int, default=4096,
                    help="PBKDF2 iterations for Conclave and Prosody (ejabberd 23.01 always uses 4096)")
    ap.add_argument("--bin", default=str(ROOT / "target/release/conclave"))
    ap.add_argument("--out", default=None, help="results directory (default bench/xmpp/results/<time>)")
    ap.add_argument("--scratch", default=None, help="scratch directory (default: a new one under /tmp)")
    ap.add_argument("--keep-scratch", action="store_true")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and tsung to cores 0 and 1")
    ap.add_argument("--no-unpinned-login", action="store_true",
                    help="skip the extra login storms with both cores for server and load generator "
                         "(tsung's: Conclave only; SCRAM: every server)")
    ap.add_argument("--smoke", action="store_true", help="CI check: Conclave only, 20 users, seconds")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--publish", action="store_true",
                    help="also write BENCHMARKS.md (at the root), bench/xmpp/plots/ and bench/xmpp/results.json (the committed report)")
    args = ap.parse_args()

    if args.smoke:
        args.servers, args.no_tls, args.no_unpinned_login = "conclave", True, True
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    if not pin:
        log("not pinning (fewer than 2 cores or --no-pin)")
    out = Path(args.out or ROOT / "bench/xmpp/results" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="conclave-xmpp-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o755)  # the prosody and ejabberd users reach their dirs
    srv.raise_nofile()
    plans = scenario_plans(args)
    wanted = list(plans) if args.smoke else [s for s in args.scenarios.split(",") if s]
    for s in wanted:
        if s not in plans:
            ap.error(f"unknown scenario {s}")
    transports = [False] if args.no_tls else [True] if args.tls_only else [False, True]
    users = max(spec.get("plan", spec.get("steps", [{}])[0]).get("users", 0)
                for k, spec in plans.items() if k in wanted)

    epmd_before = srv.epmd_pids()
    started: list[srv.Server] = []

    def cleanup(*_):
        for s in started:
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        for pid in srv.epmd_pids() - epmd_before:  # started by our Erlang VMs
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    def on_signal(signum, _frame):
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    cert, key = srv.make_cert(scratch)
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke,
              "validation": args.scale < 1 or args.smoke, "scale": args.scale, "duration_s": args.duration,
              "pinned": pin, "machine": machine(),
              "versions": {"conclave_git": git_rev(), "tsung": tsung_version()},
              "settings": {"scram_iterations": args.scram_iterations, "users_created": users + 1,
                           "ports": srv.PORTS},
              "scenarios": {k: v["title"] for k, v in plans.items() if k in wanted},
              "servers": {}}
    try:
        for name in [s for s in args.servers.split(",") if s]:
            entry: dict = {"scenarios": {}}
            result["servers"][name] = entry
            try:
                cls = {"conclave": srv.Conclave, "prosody": srv.Prosody, "ejabberd": srv.Ejabberd}[name]
                kw = {"binary": Path(args.bin).resolve()} if name == "conclave" else {}
                server = cls(scratch, args.scram_iterations, cert, key, **kw)
                started.append(server)
                entry["version"] = server.version
                entry["settings"] = server.settings()
                server.check_ports_free()
                log(f"{name} {server.version}: creating {users + 1} users")
                t = time.time()
                server.setup(users)
                entry["user_setup_s"] = round(time.time() - t, 1)
            except Exception as e:  # noqa: BLE001 - one server's failure must not end the run
                entry["error"] = f"setup: {e}"
                log(f"{name}: setup failed: {e}")
                traceback.print_exc()
                continue
            for tls in transports:
                args.tls = tls
                for sc in wanted:
                    key_name = sc + ("-tls" if tls else "")
                    log(f"{name} {key_name}: {plans[sc]['title']}")
                    try:
                        r = run_scenario(server, sc, plans[sc], out / name / key_name, args, pin)
                    except Exception as e:  # noqa: BLE001
                        traceback.print_exc()
                        r = {"kind": plans[sc]["kind"], "error": f"{type(e).__name__}: {e}"}
                        server.stop()
                    entry["scenarios"][key_name] = r
                    log(f"{name} {key_name}: {brief(r)}")
                    save(out, result)
                    unpinned = sc == "login-scram" or (sc == "login" and name == "conclave")
                    if unpinned and pin and not args.no_unpinned_login:
                        key2 = key_name + "-unpinned"
                        log(f"{name} {key2}: the same, server and load generator on both cores")
                        try:
                            r = run_scenario(server, sc, plans[sc], out / name / key2, args, pin=False)
                        except Exception as e:  # noqa: BLE001
                            r = {"kind": plans[sc]["kind"], "error": f"{type(e).__name__}: {e}"}
                            server.stop()
                        entry["scenarios"][key2] = r
                        log(f"{name} {key2}: {brief(r)}")
                        save(out, result)
        result["versions"].update({n: e.get("version") for n, e in result["servers"].items()})
        for s in started:
            if isinstance(s, srv.Prosody):
                result["versions"]["lua"] = s.lua
            if isinstance(s, srv.Ejabberd):
                result["versions"]["erlang"] = s.erlang
        if "erlang" not in result["versions"]:
            result["versions"]["erlang"] = srv.dpkg_version("erlang-base")
        result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save(out, result)
    finally:
        cleanup()
    log(f"results: {out / 'results.json'}")
    if args.smoke:
        return smoke_verdict(result)
    if not args.no_report:
        r = subprocess.run([sys.executable, str(Path(__file__).with_name("report.py")), str(out / "results.json"),
                            "--out", str(out)])
        if r.returncode != 0:
            log("report failed")
            return 1
        if args.publish:
            here = Path(__file__).resolve().parent
            shutil.copy(out / "results.json", here / "results.json")
            r = subprocess.run([sys.executable, str(here / "report.py"), str(here / "results.json"),
                                "--out", str(ROOT), "--img-subdir", "bench/xmpp/plots"])
            if r.returncode != 0:
                return 1
    return 0


def brief(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"]
    if r.get("kind") == "peak":
        return f"max delivered {r['max_delivered_per_s']} msg/s, saturated at offered {r['saturated_at_offered_per_s']}"
    parts = []
    if "login_storm" in r:
        ls = r["login_storm"]
        parts.append(f"{ls['logins']} logins, {ls['cpu_ms_per_login']} ms CPU/login, "
                     f"{ls['rss_per_session_kib']} KiB/session")
    if r.get("kind") == "scram":
        lat = r.get("login_latency") or {}
        if lat.get("n"):
            parts.append(f"{r.get('mechanism')}, login mean {lat['mean_ms']:.1f} p99 {lat['p99_ms']:.1f} "
                         f"max {lat['max_ms']:.1f} ms")
    if "steady" in r:
        st = r["steady"]
        parts.append(f"{st['delivered_per_s']}/s delivered, {st['cpu_us_per_delivery']} us CPU/delivery")
    lat = r.get("latency", {})
    if lat.get("n"):
        parts.append(f"latency mean {lat['mean_ms']:.2f} p99 {lat['p99_ms']:.2f} max {lat['max_ms']:.1f} ms")
    parts.append(f"errors {r.get('error_count', 0)}")
    if r.get("warning"):
        parts.append("WARNING " + r["warning"])
    return "; ".join(parts)


def save(out: Path, result: dict) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(out / "results.json")


def smoke_verdict(result: dict) -> int:
    e = result["servers"].get("conclave", {})
    bad = []
    if "error" in e:
        bad.append(e["error"])
    for name, r in e.get("scenarios", {}).items():
        if "error" in r or r.get("warning"):
            bad.append(f"{name}: {r.get('error') or r.get('warning')}")
        elif r.get("kind") == "scram":
            if (r.get("login_storm") or {}).get("cpu_ms_per_login") is None or not r.get("mechanism"):
                bad.append(f"{name}: no SCRAM logins or no CPU figure")
        elif not r.get("received") or not (r.get("steady") or {}).get("cpu_us_per_delivery"):
            bad.append(f"{name}: no deliveries or no CPU figure")
        elif not (r.get("latency") or {}).get("p99_ms"):
            bad.append(f"{name}: no latency percentiles")
    if bad:
        print("SMOKE FAILED:\n  " + "\n  ".join(bad))
        return 1
    print("SMOKE OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
