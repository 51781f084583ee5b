"""Test harness: start the real server under test on loopback and talk to it.

Two targets are supported, chosen with the environment variable TARGET:

* ``conclave`` (default): the binary at $CONCLAVE_BIN (default
  ``target/debug/conclave``), configured only through CONCLAVE_* environment
  variables (docs/interface.md).
* ``prosody``: Debian's Prosody, used as a reference server to prove that the
  tests themselves are right.  Needs ``apt-get install prosody``.

Everything listens on 127.0.0.1 only, on free ports picked by binding port 0.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("TARGET", "conclave").strip().lower()
DOMAIN = "localhost"
GUEST_DOMAIN = "guest.localhost"
LOOPBACK = "127.0.0.1"

NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_CLIENT = "jabber:client"


def prosody_deviation(reason: str):
    """Mark a test that checks an RFC rule the reference server is known to break.

    Expected to fail against Prosody only (strict: an unexpected pass is reported).
    """
    import pytest

    return pytest.mark.xfail(TARGET == "prosody", reason="Prosody 0.12: " + reason, strict=True)


def prosody_flaky(reason: str):
    """The reference server passes this test only sometimes (its own race, not the test's)."""
    import pytest

    return pytest.mark.xfail(TARGET == "prosody", reason="Prosody 0.12 (flaky): " + reason, strict=False)


class Unsupported(Exception):
    """The target server has no equivalent for a requested config override."""


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the server if the test process dies (no orphaned servers)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def conclave_bin() -> Path:
    return Path(os.environ.get("CONCLAVE_BIN", REPO / "target" / "debug" / "conclave"))


def free_ports(n: int) -> list[int]:
    """Pick n distinct free TCP ports on loopback (sockets held until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def insecure_ssl_context() -> ssl.SSLContext:
    """Certificates are self-signed: do not verify them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def https_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(f"https://{LOOPBACK}:{port}{path}")
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=insecure_ssl_context()),
        urllib.request.ProxyHandler({}),
    )
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:  # non-2xx still is an answer
        return e.code, e.read()


def unique(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


class ServerBase:
    kind = "?"
    host = LOOPBACK
    domain = DOMAIN
    guest_domain = GUEST_DOMAIN

    def __init__(self, overrides: dict | None = None, name: str = "server", components: dict | None = None):
        self.overrides = dict(overrides or {})
        self.name = name
        # XEP-0114 components this server accepts: {domain: secret}.
        self.components = dict(components or {})
        self.tmp = Path(tempfile.mkdtemp(prefix=f"e2e-{self.kind}-"))
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir()
        self.stderr_path = self.tmp / "server.stderr.log"
        self.starttls_port, self.direct_tls_port, self.http_port, self.component_port = free_ports(4)
        self.proc: subprocess.Popen | None = None
        self._stderr_file = None
        self.starts = 0

    # --- lifecycle ------------------------------------------------------
    def _popen(self) -> subprocess.Popen:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> "ServerBase":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._stderr_file = open(self.stderr_path, "ab")
        self._stderr_file.write(f"\n===== start #{self.starts + 1} =====\n".encode())
        self._stderr_file.flush()
        self.starts += 1
        self.proc = self._popen()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"{self.kind} exited with status {rc} during startup:\n{self.log_tail()}"
                )
            try:
                if self._ready():
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.kind} not ready after {timeout}s:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout=timeout)
        self._close_stderr()
        return rc

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_stderr()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close_stderr()

    def restart(self) -> "ServerBase":
        self.stop()
        return self.start()

    def _close_stderr(self) -> None:
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    def cleanup(self) -> None:
        self.stop()
        if os.environ.get("E2E_KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- logs -------------------------------------------------------------
    def log_paths(self) -> list[Path]:
        return [self.stderr_path]

    def log_text(self) -> str:
        out = []
        for p in self.log_paths():
            try:
                out.append(p.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "\n".join(out)

    def metric(self, name: str) -> float:
        """The sum of a metric's samples in /metrics (0 when absent)."""
        _, body = https_get(self.http_port, "/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_size(self) -> int:
        return len(self.log_text())

    def log_tail(self, since: int = 0, limit: int = 20000) -> str:
        text = self.log_text()[since:]
        if len(text) > limit:
            text = "...[truncated]...\n" + text[-limit:]
        return text

    # --- accounts ------------------------------------------------------------
    def add_user(self, user: str | None = None, password: str | None = None) -> tuple[str, str]:
        """Create an account; returns (bare jid, password)."""
        raise NotImplementedError

    def jid(self, user: str) -> str:
        return user if "@" in user else f"{user}@{self.domain}"


class ConclaveServer(ServerBase):
    kind = "conclave"

    # Applied unless the test overrides them: keep unrelated tests from
    # tripping the brute-force limiter, which counts per IP (all tests are 127.0.0.1).
    DEFAULTS = {
        "registration.allow": True,
        "limits.auth_failures_per_minute": 100000,
        "limits.max_connections_per_ip": 1000,
        # Every test connects from 127.0.0.1, and some move megabytes: the
        # byte rates are tested where they are set (test_backpressure.py).
        "limits.rate_bytes_per_sec": 0,
        "limits.ip_rate_bytes_per_sec": 0,
        "log.level": "debug",
        # Tests run servers side by side: each takes a free media port.
        "meetings.udp_port": 0,
    }

    def env(self) -> dict:
        # Only our settings: no inherited CONCLAVE_* (or CONCLAVE_CONFIG), and no
        # RUST_LOG that could override log.level (the log-leak test relies on trace).
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_") and k != "RUST_LOG"}
        cfg = dict(self.DEFAULTS)
        cfg.update(
            {
                "data_dir": str(self.data_dir),
                "hosts": [self.domain],
                "guest_host": self.guest_domain,
                "c2s.bind": [LOOPBACK],
                "c2s.starttls_port": self.starttls_port,
                "c2s.direct_tls_port": self.direct_tls_port,
                "http.bind": [LOOPBACK],
                "http.port": self.http_port,
            }
        )
        if self.components:
            # A list of tables is clearest in the TOML file; the rest stays in
            # the environment, which overrides the file.
            cfg["components.port"] = self.component_port
            toml = self.tmp / "conclave.toml"
            toml.write_text(
                "".join(
                    f'[[components.list]]\ndomain = "{d}"\nsecret = "{s}"\n\n'
                    for d, s in self.components.items()
                )
            )
            env["CONCLAVE_CONFIG"] = str(toml)
        cfg.update(self.overrides)
        for key, value in cfg.items():
            env["CONCLAVE_" + key.upper().replace(".", "__")] = _env_value(value)
        env.setdefault("RUST_BACKTRACE", "1")
        return env

    # Put before the command line (bench/sfu pins the server: taskset).
    prefix: list[str] = []
    # Put after `serve` (e.g. `--roles xmpp,focus`).
    serve_args: list[str] = []

    def _popen(self) -> subprocess.Popen:
        exe = conclave_bin()
        if not exe.exists():
            raise RuntimeError(f"conclave binary not found at {exe} (build with cargo build -p conclave)")
        return subprocess.Popen(
            [*self.prefix, str(exe), "serve", *self.serve_args],
            cwd=self.tmp,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=self._stderr_file,
            stderr=self._stderr_file,
            preexec_fn=_die_with_parent,
        )

    def _ready(self) -> bool:
        if not port_open(self.starttls_port) or not port_open(self.direct_tls_port):
            return False
        status, body = https_get(self.http_port, "/health", timeout=1.0)
        return status == 200

    def cli(self, *args: str, input: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run `conclave ARGS...` with the same environment (hence the same data dir)."""
        return subprocess.run(
            [str(conclave_bin()), *args],
            cwd=self.tmp,
            env=self.env(),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def add_user(self, user=None, password=None):
        user = user or unique("user")
        password = password or ("pw-" + secrets.token_hex(8))
        jid = self.jid(user)
        r = self.cli("user", "add", jid, input=password + "\n")
        if r.returncode != 0:
            raise RuntimeError(f"conclave user add {jid} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return jid, password


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]"
    return str(value)


class ProsodyServer(ServerBase):
    """Debian Prosody 0.12 as a reference server (test validation only)."""

    kind = "prosody"

    # Conclave config key -> function(value) returning Prosody global options.
    MAP = {
        "registration.allow": lambda v: {"allow_registration": bool(v)},
        "limits.max_stanza_bytes": lambda v: {"c2s_stanza_size_limit": int(v)},
        "limits.unauthenticated_timeout_secs": lambda v: {"c2s_timeout": int(v)},
        "turn.secret": lambda v: {"turn_external_secret": str(v)} if v else {},
        "turn.host": lambda v: {"turn_external_host": str(v)},
        "turn.port": lambda v: {"turn_external_port": int(v)},
        "turn.ttl_secs": lambda v: {"turn_external_ttl": int(v)},
        "log.level": lambda v: {},  # always debug
        "auth.allow_plain": lambda v: {} if v else {"disable_sasl_mechanisms": ["PLAIN"]},
        "admins": lambda v: {"admins": list(v)},
    }

    def __init__(self, overrides=None, name="server", components=None):
        for key in overrides or {}:
            if key not in self.MAP:
                raise Unsupported(f"config key {key!r} has no Prosody equivalent")
        super().__init__(overrides, name, components)
        self.prosody_log = self.tmp / "prosody.log"
        self.cfg_path = self.tmp / "prosody.cfg.lua"
        self._write_cert()
        self._write_config()
        shutil.chown(self.tmp, "prosody", "prosody")
        for p in self.tmp.rglob("*"):
            shutil.chown(p, "prosody", "prosody")

    def _write_cert(self):
        certs = self.tmp / "certs"
        certs.mkdir()
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,DNS:guest.localhost,IP:127.0.0.1",
                "-keyout", str(certs / "localhost.key"), "-out", str(certs / "localhost.crt"),
            ],
            check=True,
            capture_output=True,
        )
        shutil.copy(certs / "localhost.crt", certs / "guest.localhost.crt")
        shutil.copy(certs / "localhost.key", certs / "guest.localhost.key")
        self.cert_dir = certs

    def _write_config(self):
        opts = {"allow_registration": True}
        for key, value in self.overrides.items():
            opts.update(self.MAP[key](value))
        modules = [
            "disco", "roster", "saslauth", "tls", "register", "vcard_legacy", "version",
            "time", "ping", "offline", "bosh", "websocket", "http", "pep", "private", "bookmarks", "vcard4",
        ]
        if "admins" in opts:
            modules += ["adhoc", "admin_adhoc", "announce"]
        if "turn_external_secret" in opts:
            modules.append("turn_external")
            opts.setdefault("turn_external_user", "")
        extra = "\n".join(f"{k} = {_lua(v)}" for k, v in opts.items() if not (k == "turn_external_user" and v == ""))
        t = self.tmp
        cert, key = self.cert_dir / "localhost.crt", self.cert_dir / "localhost.key"
        components = "".join(
            f'\nComponent "{d}"\n  component_secret = {_lua(s)}\n' for d, s in self.components.items()
        )
        self.cfg_path.write_text(
            f"""
pidfile = "{t}/prosody.pid"
data_path = "{self.data_dir}"
log = {{ debug = "{self.prosody_log}" }}
interfaces = {{ "{LOOPBACK}" }}
c2s_ports = {{ {self.starttls_port} }}
c2s_direct_tls_ports = {{ {self.direct_tls_port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ {self.http_port} }}
http_interfaces = {{ "{LOOPBACK}" }}
https_interfaces = {{ "{LOOPBACK}" }}
certificates = "{self.cert_dir}"
ssl = {{ certificate = "{cert}"; key = "{key}" }}
https_ssl = {{ certificate = "{cert}"; key = "{key}" }}
c2s_direct_tls_ssl = {{ certificate = "{cert}"; key = "{key}" }}
modules_enabled = {{ {", ".join(_lua(m) for m in modules)} }}
modules_disabled = {{ "s2s" }}
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "{LOOPBACK}" }}
{extra}
VirtualHost "{self.domain}"
VirtualHost "{self.guest_domain}"
  authentication = "anonymous"
{components}"""
        )

    def _popen(self):
        return subprocess.Popen(
            ["prosody", "--config", str(self.cfg_path), "-F"],
            cwd=self.tmp,
            user="prosody",
            group="prosody",
            stdin=subprocess.DEVNULL,
            stdout=self._stderr_file,
            stderr=self._stderr_file,
            preexec_fn=_die_with_parent,
        )

    def _ready(self) -> bool:
        if not (port_open(self.starttls_port) and port_open(self.direct_tls_port)):
            return False
        status, _ = https_get(self.http_port, "/http-bind", timeout=1.0)
        return status in (200, 405, 400)

    def log_paths(self):
        return [self.stderr_path, self.prosody_log]

    def add_user(self, user=None, password=None):
        user = user or unique("user")
        password = password or ("pw-" + secrets.token_hex(8))
        jid = self.jid(user)
        local, host = jid.split("@", 1)
        r = subprocess.run(
            ["prosodyctl", "--config", str(self.cfg_path), "register", local, host, password],
            user="prosody",
            group="prosody",
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode != 0:
            raise RuntimeError(f"prosodyctl register {jid} failed: {r.stderr}{r.stdout}")
        return jid, password


def _lua(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(_lua(x) for x in v) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_server(overrides: dict | None = None, name: str = "server", components: dict | None = None) -> ServerBase:
    if TARGET == "prosody":
        return ProsodyServer(overrides, name, components)
    if TARGET == "conclave":
        return ConclaveServer(overrides, name, components)
    raise RuntimeError(f"unknown TARGET={TARGET!r} (conclave or prosody)")


# ---------------------------------------------------------------------------
# Raw XML stream over a plain socket, for input that libraries refuse to send
# ---------------------------------------------------------------------------


class StreamClosed(Exception):
    pass


class RawStream:
    """A minimal blocking c2s client: exact bytes on the wire, parsed replies."""

    def __init__(self, server: ServerBase, direct_tls: bool = False, timeout: float = 5.0):
        self.server = server
        self.timeout = timeout
        self.sock = socket.create_connection((server.host, server.direct_tls_port if direct_tls else server.starttls_port), timeout=timeout)
        if direct_tls:
            self.sock = insecure_ssl_context().wrap_socket(self.sock, server_hostname=server.domain)
        self.closed = False  # peer closed the TCP connection
        self.stream_ended = False  # peer sent </stream:stream>
        self.elements: list[ET.Element] = []  # top-level elements received, in order
        self.features: ET.Element | None = None
        self.jid: str | None = None
        self.raw_in = b""
        self._reset_parser()

    # --- low level -----------------------------------------------------------
    def _reset_parser(self):
        self.parser = ET.XMLPullParser(("start", "end"))
        self.depth = 0
        self.parse_error: Exception | None = None

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def try_send(self, data: str | bytes) -> bool:
        """Send, tolerating a connection the server already closed."""
        try:
            self.send(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def _feed(self, data: bytes):
        self.raw_in += data
        if self.parse_error is not None:
            return
        try:
            self.parser.feed(data)
            for event, el in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.elements.append(el)
                    elif self.depth == 0:
                        self.stream_ended = True
        except ET.ParseError as e:  # server sent something odd; keep raw bytes
            self.parse_error = e

    def _recv_once(self, timeout: float) -> bool:
        """Read once; returns False on EOF/reset."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        self._feed(data)
        return True

    def wait_for(self, pred, timeout: float | None = None):
        """Read until pred(element) matches a received top-level element; returns it.

        Raises StreamClosed if the peer closes first, TimeoutError on timeout.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for el in self.elements[seen:]:
                if pred(el):
                    self.elements.remove(el)
                    return el
            seen = len(self.elements)
            if self.closed or self.stream_ended:
                raise StreamClosed(self.describe())
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching element within {timeout}s; {self.describe()}")
            self._recv_once(min(left, 0.5))

    def wait_closed(self, timeout: float | None = None) -> None:
        """Read until the server ends the stream or closes the socket."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not (self.closed or self.stream_ended):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"stream not closed within {timeout}s; {self.describe()}")
            self._recv_once(min(left, 0.5))

    def stream_error(self, timeout: float | None = None) -> str | None:
        """Wait for a <stream:error/> (or closure); returns its condition or None if closed without one."""
        try:
            el = self.wait_for(lambda e: e.tag == f"{{{NS_STREAM}}}error", timeout)
        except StreamClosed:
            el = next((e for e in self.elements if e.tag == f"{{{NS_STREAM}}}error"), None)
            if el is None:
                return None
        return stream_error_condition(el)

    def describe(self) -> str:
        tail = self.raw_in[-1500:].decode(errors="replace")
        return f"closed={self.closed} stream_ended={self.stream_ended} received tail: {tail!r}"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- protocol steps ----------------------------------------------------
    def header(self, to: str | None = None) -> str:
        to = to or self.server.domain
        return (
            f"<?xml version='1.0'?><stream:stream to='{to}' version='1.0' xml:lang='en' "
            f"xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>"
        )

    def open(self, to: str | None = None, prefix: str = "") -> ET.Element:
        """Send a stream header; wait for stream features."""
        self._reset_parser()
        self.send(prefix + self.header(to))
        self.features = self.wait_for(lambda e: e.tag == f"{{{NS_STREAM}}}features")
        return self.features

    def starttls(self) -> None:
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        el = self.wait_for(lambda e: e.tag in (f"{{{NS_TLS}}}proceed", f"{{{NS_TLS}}}failure"))
        assert el.tag == f"{{{NS_TLS}}}proceed", f"STARTTLS refused: {ET.tostring(el)!r}"
        self.sock.settimeout(self.timeout)
        self.sock = insecure_ssl_context().wrap_socket(self.sock, server_hostname=self.server.domain)

    def mechanisms(self) -> list[str]:
        assert self.features is not None
        mechs = self.features.find(f"{{{NS_SASL}}}mechanisms")
        return [m.text for m in mechs] if mechs is not None else []

    def auth_plain(self, user: str, password: str) -> ET.Element:
        """Send SASL PLAIN; returns <success/> or <failure/> (raises StreamClosed if the server hangs up)."""
        payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
        return self.wait_for(lambda e: e.tag in (f"{{{NS_SASL}}}success", f"{{{NS_SASL}}}failure"))

    def bind(self, resource: str | None = None) -> str:
        res = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'>{res}</bind></iq>")
        el = self.wait_for(lambda e: e.tag == f"{{{NS_CLIENT}}}iq" and e.get("id") == "bind1")
        assert el.get("type") == "result", ET.tostring(el)
        self.jid = el.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid").text
        # RFC 3921 session establishment, if the server still asks for it (non-optional)
        assert self.features is not None
        sess = self.features.find("{urn:ietf:params:xml:ns:xmpp-session}session")
        if sess is not None and sess.find("{urn:ietf:params:xml:ns:xmpp-session}optional") is None:
            self.send("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
            self.wait_for(lambda e: e.get("id") == "sess1")
        return self.jid

    def login(self, user: str, password: str, resource: str | None = "raw") -> str:
        """STARTTLS (unless direct TLS), PLAIN, bind. Returns the bound JID."""
        feats = self.open()
        if not isinstance(self.sock, ssl.SSLSocket):
            assert feats.find(f"{{{NS_TLS}}}starttls") is not None, "server offers no STARTTLS"
            self.starttls()
            self.open()
        res = self.auth_plain(user, password)
        assert res.tag == f"{{{NS_SASL}}}success", f"auth failed: {ET.tostring(res)!r}"
        self.open()
        return self.bind(resource)

    def tls_open(self) -> ET.Element:
        """Open the stream and complete STARTTLS; returns post-TLS features."""
        self.open()
        self.starttls()
        return self.open()


def stream_error_condition(el: ET.Element) -> str | None:
    for child in el:
        if child.tag.startswith(f"{{{NS_STREAM_ERR}}}") and child.tag != f"{{{NS_STREAM_ERR}}}text":
            return child.tag.split("}", 1)[1]
    return None


def stanza_error_condition(el: ET.Element) -> str | None:
    err = el.find(f"{{{NS_CLIENT}}}error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(f"{{{NS_STANZA_ERR}}}") and child.tag != f"{{{NS_STANZA_ERR}}}text":
            return child.tag.split("}", 1)[1]
    return None


def sasl_failure_condition(el: ET.Element) -> str | None:
    for child in el:
        if child.tag.startswith(f"{{{NS_SASL}}}") and child.tag != f"{{{NS_SASL}}}text":
            return child.tag.split("}", 1)[1]
    return None
