#!/usr/bin/env python3
"""A SCRAM login storm: what real clients do, which tsung cannot.

tsung speaks only SASL PLAIN, so in its login storm every server runs
PBKDF2 itself. Real clients use SCRAM and derive the salted password on
their side; the server then only checks HMACs. This loader (stdlib only:
asyncio, ssl, hashlib) logs users in like a client would:

    connect, stream header, [STARTTLS, stream header,]
    SASL SCRAM-SHA-256 (SCRAM-SHA-1 only if -256 is not offered; never
    -PLUS: gs2 flag "n", this client does no channel binding),
    stream restart, bind, session (if offered and not optional),
    roster get, initial presence

then holds every session open until all users have finished their login
(and ``--hold`` seconds more, so that the resident set of N sessions can be
sampled), sends ``</stream:stream>`` and closes. Arrivals are Poisson at
``--rate`` per second, exactly ``--users`` of them (user0..userN-1 with
passwords pass0..passN-1, the accounts bench/xmpp/servers.py creates).

The server signature (``v=`` in ``<success/>``) is verified: a wrong one is
an error like a failed login. Every user has its own password and salt, so
the client pays one PBKDF2 per login (~1.6 ms at 4096 iterations); its time
is reported apart (``client_pbkdf2_ms``, CPU time) and is part of the login
latency, as for a real client. So is the loader's own CPU share of its core
during the storm (``loader_cpu_share``): near 1 it, not the server, would
set the pace.

Writes one JSON document (``--out``, default stdout): per-user timestamps
(``time.time()``, comparable with the server sampler of bench.py), the
mechanisms each stream offered, the mechanism used, and errors by reason.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import resource
import ssl
import sys
import time
import xml.etree.ElementTree as ET

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}


class LoginError(Exception):
    """A failed login; ``reason`` is the key it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Stream:
    """One XMPP stream over an asyncio connection: top-level elements in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str):
        self.reader, self.writer, self.domain = reader, writer, domain
        self.parser: ET.XMLPullParser | None = None
        self.depth = 0
        self.pending: list[ET.Element] = []

    async def open(self) -> ET.Element:
        """Sends a stream header (a new parser: the stream restarts) and returns the features."""
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.pending = []
        self.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  f"xmlns:stream='{NS_STREAM}' to='{self.domain}' version='1.0'>")
        features = await self.next()
        if features.tag != f"{{{NS_STREAM}}}features":
            raise LoginError("no-features", features.tag)
        return features

    def send(self, data: str) -> None:
        self.writer.write(data.encode())

    async def next(self) -> ET.Element:
        """The next complete top-level element (a stream error or end is a LoginError)."""
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise LoginError("closed-by-server")
            try:
                self.parser.feed(data)
                events = list(self.parser.read_events())
            except ET.ParseError as e:
                raise LoginError("bad-xml", str(e)) from None
            for ev, el in events:
                if ev == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.pending.append(el)
                    elif self.depth == 0:
                        raise LoginError("stream-closed")
        el = self.pending.pop(0)
        if el.tag == f"{{{NS_STREAM}}}error":
            cond = next((c.tag.split("}")[-1] for c in el), "?")
            raise LoginError("stream-error", cond)
        return el

    async def iq(self, ident: str, payload: str, kind: str = "set") -> ET.Element:
        self.send(f"<iq type='{kind}' id='{ident}'>{payload}</iq>")
        while True:
            el = await self.next()
            if el.tag == "{jabber:client}iq" and el.get("id") == ident:
                if el.get("type") != "result":
                    raise LoginError(f"iq-{ident}-error", el.get("type") or "")
                return el


def mechanisms(features: ET.Element) -> list[str]:
    m = features.find(f"{{{NS_SASL}}}mechanisms")
    return [] if m is None else [(x.text or "").strip() for x in m.findall(f"{{{NS_SASL}}}mechanism")]


def parse_attrs(msg: bytes) -> dict[str, str]:
    out = {}
    for part in msg.decode().split(","):
        if len(part) >= 2 and part[1] == "=":
            out[part[0]] = part[2:]
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(el: ET.Element) -> bytes:
    text = (el.text or "").strip()
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise LoginError("bad-base64") from None


class Client:
    """Shared state of one run: counters, the TLS context, the timings."""

    def __init__(self, args):
        self.args = args
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False  # loopback, self-signed
        self.tls.verify_mode = ssl.CERT_NONE
        self.results: list[dict] = []
        self.errors: dict[str, int] = {}
        self.offered: dict[str, list[str]] = {}  # "plain" / "tls" -> mechanisms of the first stream
        self.used: dict[str, int] = {}
        self.sessions = 0  # logins that had to establish a session (RFC 3921)
        self.pbkdf2_s = 0.0
        self.pbkdf2_n = 0
        self.finished = 0
        self.all_done = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    def scram(self, mech: str, user: str, password: str, first: bytes, cnonce: str) -> tuple[bytes, bytes, bytes]:
        """(client-final message, expected server signature) from the server-first message."""
        a = parse_attrs(first)
        if "m" in a:
            raise LoginError("scram-extension")
        try:
            nonce, salt, iters = a["r"], base64.b64decode(a["s"]), int(a["i"])
        except (KeyError, ValueError):
            raise LoginError("bad-server-first") from None
        if not nonce.startswith(cnonce) or len(nonce) == len(cnonce):
            raise LoginError("bad-server-nonce")
        h = HASHES[mech]
        t = time.thread_time()  # CPU time: other processes on the core do not count
        salted = hashlib.pbkdf2_hmac(h, password.encode(), salt, iters)
        self.pbkdf2_s += time.thread_time() - t
        self.pbkdf2_n += 1
        client_key = hmac.new(salted, b"Client Key", h).digest()
        stored_key = hashlib.new(h, client_key).digest()
        bare = f"n={user},r={cnonce}"
        without_proof = f"c=biws,r={nonce}"
        auth_msg = f"{bare},{first.decode()},{without_proof}".encode()
        sig = hmac.new(stored_key, auth_msg, h).digest()
        proof = bytes(x ^ y for x, y in zip(client_key, sig))
        server_sig = hmac.new(hmac.new(salted, b"Server Key", h).digest(), auth_msg, h).digest()
        return f"{without_proof},p={b64(proof)}".encode(), server_sig, bare.encode()

    async def login(self, i: int, rec: dict) -> None:
        a = self.args
        user, password = f"{a.user_prefix}{i}", f"{a.pass_prefix}{i}"
        rec["t_connect"] = time.time()
        reader, writer = await asyncio.open_connection(a.host, a.port)
        self.writers.append(writer)
        s = Stream(reader, writer, a.domain)
        features = await s.open()
        transport = "plain"
        if a.tls:
            if features.find(f"{{{NS_TLS}}}starttls") is None:
                raise LoginError("no-starttls")
            s.send(f"<starttls xmlns='{NS_TLS}'/>")
            el = await s.next()
            if el.tag != f"{{{NS_TLS}}}proceed":
                raise LoginError("starttls-refused", el.tag)
            await writer.start_tls(self.tls, server_hostname=a.domain)
            features = await s.open()
            transport = "tls"
        offered = mechanisms(features)
        self.offered.setdefault(transport, offered)
        mech = next((m for m in ("SCRAM-SHA-256", "SCRAM-SHA-1") if m in offered), None)
        if mech is None:
            raise LoginError("no-scram-offered", " ".join(offered))
        rec["mech"] = mech
        rec["t_auth"] = time.time()
        cnonce = b64(os.urandom(18))
        bare = f"n={user},r={cnonce}"
        s.send(f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>{b64(('n,,' + bare).encode())}</auth>")
        el = await s.next()
        if el.tag != f"{{{NS_SASL}}}challenge":
            raise LoginError("sasl-failure-first", el.tag.split("}")[-1] + " " + "".join(c.tag.split("}")[-1] for c in el))
        final, server_sig, _ = self.scram(mech, user, password, unb64(el), cnonce)
        s.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
        el = await s.next()
        if el.tag == f"{{{NS_SASL}}}challenge":
            # RFC 6120 allows the server-final message as a last challenge
            data = unb64(el)
            s.send(f"<response xmlns='{NS_SASL}'/>")
            el = await s.next()
            if el.tag == f"{{{NS_SASL}}}success" and (el.text or "").strip() not in ("", "="):
                data = unb64(el)
        elif el.tag == f"{{{NS_SASL}}}success":
            data = unb64(el)
        else:
            raise LoginError("sasl-failure", "".join(c.tag.split("}")[-1] for c in el))
        if el.tag != f"{{{NS_SASL}}}success":
            raise LoginError("sasl-failure", el.tag)
        v = parse_attrs(data).get("v")
        if v is None or not hmac.compare_digest(base64.b64decode(v), server_sig):
            raise LoginError("bad-server-signature")
        rec["t_sasl"] = time.time()
        features = await s.open()
        if features.find(f"{{{NS_BIND}}}bind") is None:
            raise LoginError("no-bind")
        await s.iq("b", f"<bind xmlns='{NS_BIND}'><resource>bench</resource></bind>")
        sess = features.find(f"{{{NS_SESSION}}}session")
        if sess is not None and sess.find(f"{{{NS_SESSION}}}optional") is None:
            await s.iq("s", f"<session xmlns='{NS_SESSION}'/>")
            self.sessions += 1
        rec["t_bound"] = time.time()
        await s.iq("r", "<query xmlns='jabber:iq:roster'/>", "get")
        s.send("<presence/>")
        await writer.drain()
        rec["t_done"] = time.time()
        self.used[mech] = self.used.get(mech, 0) + 1

    async def user(self, i: int, start: float) -> None:
        await asyncio.sleep(max(0.0, start - time.time()))
        rec: dict = {"i": i}
        try:
            await asyncio.wait_for(self.login(i, rec), self.args.login_timeout)
        except LoginError as e:
            rec["error"] = e.reason
            rec["detail"] = str(e)
        except asyncio.TimeoutError:
            rec["error"] = "timeout"
        except Exception as e:  # noqa: BLE001 - connection errors and anything else: counted, never lost
            rec["error"] = type(e).__name__
            rec["detail"] = str(e)
        if "error" in rec:
            self.errors[rec["error"]] = self.errors.get(rec["error"], 0) + 1
        self.results.append(rec)
        self.finished += 1
        if self.finished == self.args.users:
            self.all_done.set()

    async def close_all(self) -> None:
        for w in self.writers:
            try:
                w.write(b"</stream:stream>")
                w.close()
            except (OSError, RuntimeError):
                pass
        await asyncio.gather(*(wait_closed(w) for w in self.writers))


async def wait_closed(w: asyncio.StreamWriter) -> None:
    try:
        await asyncio.wait_for(w.wait_closed(), 5)
    except (OSError, ssl.SSLError, asyncio.TimeoutError):
        pass


def arrivals(n: int, rate: float, seed: int) -> list[float]:
    """Poisson arrivals, like tsung's: exponential gaps of mean 1/rate (the first at 0)."""
    rnd = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rnd.expovariate(rate)
    return out


async def run(args) -> dict:
    c = Client(args)
    t0 = time.time() + 0.2
    tasks = [asyncio.create_task(c.user(i, t0 + dt)) for i, dt in enumerate(arrivals(args.users, args.rate, args.seed))]
    cpu0 = time.process_time()
    await c.all_done.wait()
    t_all = time.time()
    # the loader's own CPU during the storm: near 1.0 of its core, the
    # loader, not the server, sets the pace (and the login times)
    share = (time.process_time() - cpu0) / max(t_all - t0, 1e-3)
    await asyncio.sleep(args.hold)
    await asyncio.gather(*tasks)
    await c.close_all()
    ok = [r for r in c.results if "error" not in r]
    return {
        "users": args.users, "rate": args.rate, "tls": args.tls, "started": t0, "all_in": t_all,
        "loader_cpu_share": round(share, 3),
        "logins": len(ok), "errors": c.errors, "error_count": sum(c.errors.values()),
        "mechanisms_offered": c.offered, "mechanism_used": c.used, "session_required": c.sessions,
        "client_pbkdf2_ms": round(c.pbkdf2_s / c.pbkdf2_n * 1e3, 3) if c.pbkdf2_n else None,
        "error_examples": sorted({r.get("detail", r["error"]) for r in c.results if "error" in r})[:5],
        "per_user": sorted(c.results, key=lambda r: r["i"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="arrivals per second (Poisson)")
    ap.add_argument("--tls", action="store_true", help="STARTTLS before SASL (no certificate check)")
    ap.add_argument("--user-prefix", default="user")
    ap.add_argument("--pass-prefix", default="pass")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds every session stays after the last login")
    ap.add_argument("--login-timeout", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="-", help="JSON output file (- for stdout)")
    args = ap.parse_args()
    if args.users < 1 or args.rate <= 0:
        ap.error("--users and --rate must be positive")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.users + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
    res = asyncio.run(run(args))
    text = json.dumps(res)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text)
    print(f"scram_load: {res['logins']}/{res['users']} logins, errors {res['errors']}, "
          f"mechanisms {res['mechanism_used']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
