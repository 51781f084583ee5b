#!/usr/bin/env python3
"""Memory per idle authenticated session.

Starts the conclave binary on loopback with a temporary data directory,
opens N sessions (direct TLS, or with --plain unencrypted TCP on the
STARTTLS port; SASL PLAIN, bind), and reads
the server's resident memory from /proc before and after. Prints KiB per
idle session.

    python3 bench/idle_sessions.py [--sessions 2000] [--plain] [--accounts] [--bin target/release/conclave]

By default every session is a resource of one account. With --accounts
each session has an account of its own and fetches its roster and sends
its initial presence, as the tsung login storm does, so the figure also
holds what the server keeps per online account.
"""
import argparse
import base64
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_until(sock, marker, buf=b""):
    while marker not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed while waiting for {marker!r}: {buf[-300:]!r}")
        buf += chunk
    return buf


def session(port, ctx, user, password, i, online=False):
    raw = socket.create_connection(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    hdr = ("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
           "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    s.sendall(hdr.encode())
    read_until(s, b"</stream:features>")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    s.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
    read_until(s, b"<success")
    s.sendall(hdr.encode())
    read_until(s, b"</stream:features>")
    s.sendall(f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r{i}</resource></bind></iq>".encode())
    read_until(s, b"</iq>")
    if online:
        s.sendall(b"<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        read_until(s, b"</iq>")
        s.sendall(b"<presence/>")
        read_until(s, b"<presence")  # our own, reflected
    # Otherwise no presence: thousands of resources of one account would
    # make every presence an O(N) broadcast to the others.
    return s


def xtree_total(path):
    """Live heap bytes in a valgrind xtree memory report (callgrind or,
    under massif, massif format)."""
    for _ in range(50):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("totals:"):
                        return int(line.split()[1])
                    if line.startswith("mem_heap_B="):
                        return int(line.split("=")[1])
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no totals in {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--bin", default="target/release/conclave")
    ap.add_argument("--massif", metavar="OUT",
                    help="run the server under valgrind's massif, writing OUT; "
                         "RSS is then meaningless, read the heap with ms_print. "
                         "Massif sees only malloc: give it a binary built without "
                         "mimalloc (cargo build --release --no-default-features "
                         "-p conclave)")
    ap.add_argument("--accounts", action="store_true",
                    help="an account per session, with roster and presence")
    ap.add_argument("--plain", action="store_true",
                    help="plain TCP on the STARTTLS port, no TLS (PLAIN allowed "
                         "unencrypted, as the tsung bench does)")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="conclave-idle-")
    port = free_port()
    ports = (dict(CONCLAVE_C2S__STARTTLS_PORT=str(port), CONCLAVE_C2S__DIRECT_TLS_PORT="0",
                  CONCLAVE_C2S__REQUIRE_ENCRYPTION="false",
                  CONCLAVE_AUTH__ALLOW_UNENCRYPTED_PLAIN="true") if a.plain
             else dict(CONCLAVE_C2S__STARTTLS_PORT="0", CONCLAVE_C2S__DIRECT_TLS_PORT=str(port)))
    env = dict(os.environ, CONCLAVE_DATA_DIR=d, CONCLAVE_HTTP__PORT="0", **ports,
               CONCLAVE_LIMITS__MAX_CONNECTIONS_PER_IP=str(a.sessions + 100),
               CONCLAVE_LOG__LEVEL="warn")
    subprocess.run([a.bin, "user", "add", "idle@localhost"], input=b"pw\n", env=env, check=True)
    if a.accounts:
        lines = "".join(f"u{i}@localhost pw\n" for i in range(a.sessions))
        subprocess.run([a.bin, "user", "add-bulk"], input=lines.encode(), env=env, check=True,
                       capture_output=True)
    wrap = ["valgrind", "--tool=massif", f"--massif-out-file={a.massif}",
            "--detailed-freq=1", "--max-snapshots=200"] if a.massif else []
    srv = subprocess.Popen(wrap + [a.bin, "serve"], env=env)
    try:
        for _ in range(2000 if a.massif else 200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        ctx = None
        if not a.plain:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        # Warm up allocator and caches with a few sessions first.
        warm = [session(port, ctx, "idle", "pw", f"w{i}") for i in range(20)]
        time.sleep(1)
        before = rss_kib(srv.pid)
        if a.massif:
            subprocess.run(["vgdb", f"--pid={srv.pid}", "xtmemory", f"{a.massif}.before.xt.ms"],
                           check=False, capture_output=True)
        socks = [session(port, ctx, f"u{i}", "pw", "r", True) if a.accounts
                 else session(port, ctx, "idle", "pw", i) for i in range(a.sessions)]
        # Let the last replies go out and the allocator settle.
        time.sleep(5)
        after = rss_kib(srv.pid)
        per = (after - before) / a.sessions
        print(f"sessions={a.sessions} rss_before_kib={before} rss_after_kib={after} "
              f"kib_per_idle_session={per:.2f}")
        if a.massif:
            # Live heap by call tree while the sessions are open; read it with
            # ms_print OUT.xt.ms, or diff it against
            # OUT.before.xt.ms with bench/xtree_diff.py
            subprocess.run(["vgdb", f"--pid={srv.pid}", "xtmemory", f"{a.massif}.xt.ms"],
                           check=False, capture_output=True)
            heap = [xtree_total(f"{a.massif}{s}.xt.ms") for s in (".before", "")]
            print(f"heap_before_b={heap[0]} heap_after_b={heap[1]} "
                  f"heap_b_per_idle_session={(heap[1] - heap[0]) / a.sessions:.0f}")
        for s in socks + warm:
            s.close()
    finally:
        srv.terminate()
        srv.wait(10)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
