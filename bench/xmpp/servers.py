"""Conclave, Prosody and ejabberd on loopback, side by side.

Each server has its own ports (so none clashes with another, or with a
system instance on 5222), its own data under the scratch directory, the same
self-signed P-256 certificate, the same users (user0..userN / pass0..passN)
stored as salted SCRAM-SHA-256 keys with the same PBKDF2 iteration count, no
message archive and no room history. Every server runs in the foreground as
our child, in its own process group, so that it can be stopped by its id.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

LOOPBACK = "127.0.0.1"
HERE = Path(__file__).resolve().parent
NOFILE = 65536

# Ports side by side: 15xxx Conclave, 25xxx Prosody, 30xxx ejabberd; all
# below Linux's ephemeral range (32768-60999), where a load generator's
# client socket left in TIME_WAIT could take a server's port (ejabberd's
# listener then fails with eaddrinuse).
PORTS = {
    "conclave": {"c2s": 15222, "direct_tls": 15223, "http": 15443},
    "prosody": {"c2s": 25222},
    "ejabberd": {"c2s": 30222, "http": 30380},
}


class ServerError(Exception):
    pass


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((LOOPBACK, port)) == 0


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"exited with {proc.returncode} before opening port {port}")
        time.sleep(0.1)
    raise ServerError(f"port {port} not open after {timeout:.0f} s")


def run(cmd: list[str], **kw) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise ServerError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r.stdout


def raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def own_env() -> dict:
    """The environment without CONCLAVE_* variables: Conclave reads those as
    settings, and the test runner's CONCLAVE_BIN is not one."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}


def pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def as_user(user: str) -> list[str]:
    """Switch uid without PAM (runuser/su reset RLIMIT_NOFILE to 1024)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]


def chown_tree(path: Path, user: str) -> None:
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)


def make_cert(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    if not cert.exists():
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,DNS:conference.localhost"])
        key.chmod(0o644)  # read by the prosody and ejabberd users; throwaway, loopback only
    return cert, key


def scram_sha256(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    return stored, server


class Server:
    name = "?"
    version = "?"

    def __init__(self, scratch: Path, iterations: int, cert: Path, key: Path):
        self.dir = scratch / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.iterations = iterations
        self.cert, self.key = cert, key
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None  # the process whose CPU and RSS are measured
        self.ports = PORTS[self.name]
        self.log = self.dir / "server.log"

    def check_ports_free(self) -> None:
        busy = [p for p in self.ports.values() if port_open(p)]
        if busy:
            raise ServerError(f"ports already in use: {busy}")

    def setup(self, users: int) -> None:
        raise NotImplementedError

    def start(self, cpus: str | None) -> None:
        raise NotImplementedError

    def _spawn(self, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        self.check_ports_free()
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=self.dir, start_new_session=True)
        logf.close()
        return self.proc

    def stop(self) -> None:
        """SIGTERM the server's process group (it is ours), then SIGKILL what remains."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                # children (beam's helpers) may outlive the leader briefly
                os.killpg(pgid, 0)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                if self.proc.poll() is not None:
                    try:
                        os.killpg(pgid, 0)
                    except ProcessLookupError:
                        break
                continue
        if self.pid and self.pid != self.proc.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None
        self.pid = None

    def settings(self) -> dict:
        return {}


class Conclave(Server):
    name = "conclave"

    def __init__(self, *a, binary: Path, **kw):
        super().__init__(*a, **kw)
        self.binary = binary
        self.config = self.dir / "conclave.toml"
        self.version = run([str(binary), "--version"]).strip()

    def write_config(self) -> None:
        p = self.ports
        self.config.write_text(f"""# Written by bench/xmpp: loopback only, benchmark settings.
data_dir = "{self.dir / 'data'}"
hosts = ["localhost"]
guest_host = ""

[c2s]
bind = ["127.0.0.1"]
starttls_port = {p['c2s']}
direct_tls_port = {p['direct_tls']}
require_encryption = false

[http]
bind = ["127.0.0.1"]
port = {p['http']}

[tls]
cert = "{self.cert}"
key = "{self.key}"

[auth]
scram_iterations = {self.iterations}
allow_plain = true
# tsung speaks only PLAIN; on loopback only.
allow_unencrypted_plain = true

[limits]
# every tsung connection comes from 127.0.0.1
max_connections_per_ip = 1000000
auth_failures_per_minute = 1000000
# ... so the per-address byte rate would throttle the load generator itself
ip_rate_bytes_per_sec = 0

[archive]
# the peers run without MAM
enabled = false

[muc]
history = 0

[upload]
enabled = false

[log]
level = "warn"
""")

    def setup(self, users: int) -> None:
        self.write_config()
        lines = "".join(f"user{i}@localhost pass{i}\n" for i in range(users + 1))
        t = time.time()
        r = subprocess.run([str(self.binary), "--config", str(self.config), "user", "add-bulk"],
                           input=lines, capture_output=True, text=True, cwd=self.dir, env=own_env())
        if r.returncode != 0 and "already existed" not in r.stderr:
            raise ServerError(f"conclave user add-bulk failed: {r.stderr.strip()[-500:]}")
        self.setup_secs = time.time() - t

    def start(self, cpus: str | None) -> None:
        proc = self._spawn(pin(cpus) + [str(self.binary), "--config", str(self.config), "serve"], own_env())
        wait_port(self.ports["c2s"], 30, proc)
        self.pid = proc.pid  # taskset execs, so this is conclave itself

    def settings(self) -> dict:
        return {"auth": f"SCRAM-SHA-256 keys only (PLAIN verified by PBKDF2), {self.iterations} iterations",
                "archive": "off (archive.enabled = false)", "muc_history": 0,
                "tls": "rustls; STARTTLS on c2s", "allow_unencrypted_plain": True}


class Prosody(Server):
    name = "prosody"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.config = self.dir / "prosody.cfg.lua"
        # (`prosody --version` would start a server: ask dpkg)
        self.version = dpkg_version("prosody")
        lua = subprocess.run(["lua5.4", "-v"], capture_output=True, text=True)
        self.lua = " ".join((lua.stdout or lua.stderr).split()[:2])  # "Lua 5.4.4"

    def setup(self, users: int) -> None:
        d = self.dir
        tpl = (HERE / "conf" / "prosody.cfg.lua").read_text()
        self.config.write_text(tpl.format(dir=d, port=self.ports["c2s"], iterations=self.iterations,
                                          cert=self.cert, key=self.key))
        acc = d / "data" / "localhost" / "accounts"
        acc.mkdir(parents=True, exist_ok=True)
        # internal_hashed's account files, written directly: prosodyctl
        # forks a Lua interpreter per user.
        for i in range(users + 1):
            salt = str(uuid.uuid4())
            stored, server = scram_sha256(f"pass{i}", salt.encode(), self.iterations)
            (acc / f"user{i}.dat").write_text(
                "return {\n"
                f'\t["stored_key"] = "{stored.hex()}";\n'
                f'\t["server_key"] = "{server.hex()}";\n'
                f'\t["salt"] = "{salt}";\n'
                f'\t["iteration_count"] = {self.iterations};\n'
                "};\n")
        chown_tree(d, "prosody")

    def start(self, cpus: str | None) -> None:
        pidfile = self.dir / "prosody.pid"
        pidfile.unlink(missing_ok=True)
        proc = self._spawn(as_user("prosody") + pin(cpus) + ["prosody", "-F", "--config", str(self.config)])
        wait_port(self.ports["c2s"], 30, proc)
        self.pid = proc.pid  # setpriv and taskset exec

    def settings(self) -> dict:
        return {"auth": f"internal_hashed, password_hash SHA-256, {self.iterations} iterations",
                "network_backend": "epoll", "archive": "none (mod_mam not loaded)", "muc_history": 0,
                "muc_room_locking": False, "lua": self.lua}


class Ejabberd(Server):
    name = "ejabberd"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.version = dpkg_version("ejabberd")
        erl = subprocess.run(["erl", "-noshell", "-eval",
                              'io:format("~s ~s", [erlang:system_info(otp_release), erlang:system_info(version)]), halt().'],
                             capture_output=True, text=True, env=erl_env())
        self.erlang = "OTP " + erl.stdout.strip().replace(" ", ", erts ") if erl.returncode == 0 else "?"

    def _ctl(self) -> list[str]:
        d = self.dir
        return ["ejabberdctl", "--config-dir", str(d), "--ctl-config", str(d / "ejabberdctl.cfg"),
                "--config", str(d / "ejabberd.yml"), "--logs", str(d / "log"), "--spool", str(d / "db")]

    def _env(self) -> dict:
        env = erl_env()
        env["HOME"] = str(self.dir)  # the Erlang cookie lives here, not in root's home
        return env

    def setup(self, users: int) -> None:
        d = self.dir
        for sub in ("db", "log"):
            (d / sub).mkdir(exist_ok=True)
        p = self.ports
        (d / "ejabberd.yml").write_text((HERE / "conf" / "ejabberd.yml").read_text().format(
            c2s=p["c2s"], http=p["http"], cert=self.cert, key=self.key))
        (d / "ejabberdctl.cfg").write_text((HERE / "conf" / "ejabberdctl.cfg").read_text().format(dir=d))
        if Path("/etc/ejabberd/inetrc").exists():
            shutil.copy("/etc/ejabberd/inetrc", d / "inetrc")
        chown_tree(d, "ejabberd")
        self.start(None)
        try:
            # mod_http_api on loopback: thousands of accounts in seconds
            c = http.client.HTTPConnection(LOOPBACK, p["http"], timeout=30)
            bad = 0
            for i in range(users + 1):
                body = json.dumps({"user": f"user{i}", "host": "localhost", "password": f"pass{i}"})
                c.request("POST", "/api/register", body, {"Content-Type": "application/json"})
                r = c.getresponse()
                text = r.read()
                if r.status != 200 and b"already" not in text:
                    bad += 1
            if bad:
                raise ServerError(f"ejabberd registration failed for {bad} users")
            c.request("POST", "/api/registered_users", json.dumps({"host": "localhost"}),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            have = len(json.loads(r.read()))
            if have < users + 1:
                raise ServerError(f"ejabberd has {have} of {users + 1} users after registration")
        finally:
            self.stop()

    def stop(self) -> None:
        """``ejabberdctl stop`` first: mnesia must write its last transactions
        (a plain SIGTERM lost the last registered account)."""
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(as_user("ejabberd") + self._ctl() + ["stop"], env=self._env(),
                           capture_output=True, timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        super().stop()

    def start(self, cpus: str | None) -> None:
        pidfile = self.dir / "ejabberd.pid"
        pidfile.unlink(missing_ok=True)
        proc = self._spawn(as_user("ejabberd") + pin(cpus) + self._ctl() + ["foreground"], self._env())
        wait_port(self.ports["c2s"], 60, proc)
        wait_port(self.ports["http"], 30, proc)
        end = time.time() + 10
        while not pidfile.exists() and time.time() < end:
            time.sleep(0.1)
        if not pidfile.exists():
            raise ServerError("ejabberd wrote no pid file")
        # beam.smp: one OS process whose utime+stime covers every scheduler thread
        self.pid = int(pidfile.read_text().strip())

    def settings(self) -> dict:
        return {"auth": f"auth_password_format scram, auth_scram_hash sha256, 4096 iterations (fixed in ejabberd 23.01)",
                "db": "mnesia", "archive": "none (mod_mam not loaded)", "muc_history": 0,
                "backlog": 1024, "erlang": self.erlang}


def dpkg_version(package: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def erl_env() -> dict:
    env = dict(os.environ)
    # epmd and Erlang distribution on loopback only
    env["ERL_EPMD_ADDRESS"] = LOOPBACK
    return env


def epmd_pids() -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "epmd":
                    out.add(int(p.name))
            except OSError:
                pass
    return out
