"""tsung scenario files and the parsing of tsung's output.

tsung 1.7 (Debian) drives all three servers with the same XML. Two outputs
are read:

* ``tsung.log``: every second (``dumpstats_interval`` = 1000 ms, set through
  ``ERL_FLAGS``) a block of ``stats:`` lines. Samples are
  ``name count mean stddev max min global_mean global_count`` and counters
  ``name count total``; only the per-interval ``count`` is used, with the
  block's ``# stats: dump at UNIX`` time, to find the steady window.
* ``tsung-fullstats.log`` (``backend="fullstats"``): every single sample, so
  that percentiles are exact (tsung itself only keeps mean/stddev/min/max).
  Message latency comes from ``stamped`` messages: the sender writes its
  clock into the body and the receiving tsung user records
  ``xmpp_msg_latency`` (ms) on arrival; this counts each delivery, so for a
  room it counts every occupant's copy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr


@dataclass
class Plan:
    """One tsung run: N users arrive, log in, optionally join rooms, then
    send ``msgs`` messages each, one every ``think`` seconds.

    Stream opens wait for ``</stream:features>`` and SASL for its outcome
    (``ack="parse"``): with ``ack="local"`` tsung takes a stream header sent
    apart from its features as the answer, runs one step ahead and sends
    the restart header before ``<success/>`` arrives (RFC 6120 §6.4.6 says
    to wait), which servers answer differently; that would measure tsung.
    Conclave takes such a pipelined restart since it was taught to; the
    wait stays so that every server runs the same, RFC-conformant login
    and the login figures stay comparable with earlier runs."""

    users: int
    arrival_rate: float  # users per second
    port: int
    tls: bool = False
    wait: float = 1.0  # seconds after login before the first message
    msgs: int = 0
    think: float = 1.0
    end_wait: float = 3.0  # seconds after the last message before closing
    mode: str = "chat"  # chat | muc
    rooms: int = 1
    domain: str = "localhost"
    muc_service: str = "conference.localhost"
    seed: int = 42

    def arrival_secs(self) -> float:
        return self.users / self.arrival_rate

    def expected_secs(self) -> float:
        join = 2.0 if self.mode == "muc" else 0.0
        return self.arrival_secs() * 1.3 + self.wait + join + self.msgs * self.think + self.end_wait + 5

    def xml(self) -> str:
        # tsung's arrivals are a Poisson process: with a phase exactly
        # users/rate long only ~85% arrive. Twice as long, capped by maxnumber.
        phase = math.ceil(2 * self.arrival_secs()) + 2
        cap = math.ceil(self.expected_secs() * 2) + 30
        tls = ""
        if self.tls:
            # STARTTLS: tsung upgrades the socket when it sees <proceed/>
            # (ts_jabber:starttls_bidi), then a new stream is opened.
            tls = """
      <request><jabber type="starttls" ack="bidi_ack"/></request>
      <request><jabber type="connect" ack="parse" regexp="&lt;/stream:features&gt;"/></request>"""
        join = ""
        if self.mode == "muc":
            send = '<request subst="true"><jabber type="muc:chat" ack="no_ack" size="64" stamped="true" room="room%%_room%%"/></request>'
            join = f"""
      <setdynvars sourcetype="random_number" start="1" end="{self.rooms}"><var name="room"/></setdynvars>
      <request subst="true"><jabber type="muc:join" ack="local" room="room%%_room%%" nick="n%%_tsung_userid%%"/></request>
      <thinktime value="2" random="false"/>"""
        else:
            send = '<request><jabber type="chat" ack="no_ack" size="64" stamped="true" destination="online"/></request>'
        loop = ""
        if self.msgs > 0:
            # A uniform random offset first, so that users who arrived in
            # the same second do not send in the same second for the whole
            # run (with a long think time a burst would be all there is).
            # tsung takes whole seconds here, and refuses a zero wait.
            spread = ""
            if self.think >= 2:
                spread = f"""
      <thinktime min="1" max="{math.ceil(self.think)}" random="true"/>"""
            loop = f"""{spread}
      <for from="1" to="{self.msgs}" var="i">
        <transaction name="msg">{send}</transaction>
        <thinktime value="{self.think:.4f}" random="false"/>
      </for>"""
        opts = {
            "global_number": self.users,
            "userid_max": self.users,
            "domain": self.domain,
            "username": "user",
            "passwd": "pass",
            "muc_service": self.muc_service,
        }
        options = "\n    ".join(
            f'<option type="ts_jabber" name="{k}" value={quoteattr(str(v))}/>' for k, v in opts.items()
        )
        return f"""<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd">
<tsung loglevel="warning" version="1.0" backend="fullstats">
  <clients><client host="localhost" use_controller_vm="true" maxusers="100000"/></clients>
  <servers><server host="127.0.0.1" port="{self.port}" type="tcp"/></servers>
  <load duration="{cap}" unit="second">
    <arrivalphase phase="1" duration="{phase}" unit="second">
      <users maxnumber="{self.users}" arrivalrate="{self.arrival_rate:.3f}" unit="second"/>
    </arrivalphase>
  </load>
  <options>
    <option name="seed" value="{self.seed}"/>
    {options}
  </options>
  <sessions>
    <session probability="100" name="xmpp-{self.mode}" type="ts_jabber" bidi="true">
      <request><jabber type="connect" ack="parse" regexp="&lt;/stream:features&gt;"/></request>{tls}
      <transaction name="auth">
        <request><jabber type="auth_sasl" ack="parse" regexp="&lt;success|&lt;failure"/></request>
        <request><jabber type="connect" ack="parse" regexp="&lt;/stream:features&gt;"/></request>
        <request><jabber type="auth_sasl_bind" ack="local"/></request>
        <request><jabber type="auth_sasl_session" ack="local"/></request>
      </transaction>
      <transaction name="roster"><request><jabber type="iq:roster:get" ack="local"/></request></transaction>
      <request><jabber type="presence:initial" ack="no_ack"/></request>{join}{think(self.wait)}{loop}{think(self.end_wait)}
      <transaction name="close"><request><jabber type="close" ack="local"/></request></transaction>
    </session>
  </sessions>
</tsung>
"""


def think(secs: float) -> str:
    """A thinktime element; tsung refuses a zero one."""
    if secs <= 0:
        return ""
    return f'\n      <thinktime value="{secs:.3f}" random="false"/>'


@dataclass
class Block:
    """One dump interval of tsung.log: counts per name for the second before ``t``."""

    t: float
    counts: dict[str, float] = field(default_factory=dict)


@dataclass
class TsungLog:
    blocks: list[Block]
    totals: dict[str, float]  # counters: final totals; samples: summed counts

    def total(self, name: str) -> float:
        return self.totals.get(name, 0.0)

    def errors(self) -> dict[str, float]:
        return {k: v for k, v in self.totals.items() if k.startswith("error") and v}


def parse_log(path: Path) -> TsungLog:
    blocks: list[Block] = []
    totals: dict[str, float] = {}
    cur: Block | None = None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("# stats: dump at "):
            cur = Block(float(line.split()[-1]))
            blocks.append(cur)
            continue
        if not line.startswith("stats: ") or cur is None:
            continue
        f = line.split()
        name = f[1]
        if name.startswith("{") or len(f) < 4:
            continue
        try:
            count = float(f[2])
        except ValueError:
            continue
        cur.counts[name] = count
        if len(f) >= 8:  # a sample: sum the per-interval counts
            totals[name] = totals.get(name, 0.0) + count
        else:
            # counters carry their running total in the third field
            try:
                totals[name] = float(f[3])
            except ValueError:
                pass
    return TsungLog(blocks, totals)


_FULL = re.compile(r"\{sample,\s*(\w+),\s*([-0-9.eE+]+)\}")


def parse_fullstats(path: Path) -> dict[str, list[float]]:
    """Every sample by name (ms), from tsung-fullstats.log."""
    out: dict[str, list[float]] = {}
    if not path.exists():
        return out
    for m in _FULL.finditer(path.read_text(errors="replace")):
        out.setdefault(m.group(1), []).append(float(m.group(2)))
    return out


def split_stale(values: list[float], blocks: list[Block], name: str = "xmpp_msg_latency") -> tuple[list[float], list[float]]:
    """Latency samples of this run, and those of messages sent before it.

    The servers keep their store from one run to the next, so a message
    sent in the last second of a run to a user who had just left is stored
    offline and delivered when that user logs in in the next run, with the
    sending run's stamp: a latency of tens of seconds, recorded during the
    logins. Sample ``i`` of tsung-fullstats.log (in arrival order) arrived
    at the latest by the end of the dump interval in which tsung.log's
    running count of ``name`` passes ``i``; a sample is stale when even that
    latest arrival, less its latency, falls before this run's first dump
    interval began. Samples past the last dump are kept."""
    if not blocks:
        return list(values), []
    start = blocks[0].t - 1.0
    bounds: list[float] = []
    for b in blocks:
        bounds.extend([b.t] * int(b.counts.get(name, 0)))
    own: list[float] = []
    stale: list[float] = []
    for i, v in enumerate(values):
        if i < len(bounds) and bounds[i] - v / 1e3 < start:
            stale.append(v)
        else:
            own.append(v)
    return own, stale


def deliveries(tl: TsungLog, full: dict[str, list[float]]) -> dict:
    """``received``, ``latency`` and, if any, ``stale_deliveries`` of one run."""
    own, stale = split_stale(full.get("xmpp_msg_latency", []), tl.blocks)
    r = {"received": int(tl.total("xmpp_msg_latency")) - len(stale), "latency": latency_summary(own)}
    if stale:
        r["stale_deliveries"] = {"n": len(stale), "max_ms": max(stale)}
    return r


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def latency_summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "mean_ms": None, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": len(values),
        "mean_ms": sum(values) / len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values),
    }
