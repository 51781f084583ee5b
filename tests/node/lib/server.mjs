// Start the real conclave binary on loopback for node:test suites.
// TARGET=prosody delegates to tests/e2e/serve_target.py (reference server).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, openSync, closeSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import https from "node:https";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

// Self-signed certificates everywhere in these tests.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, "..", "..", "..");
export const TARGET = (process.env.TARGET || "conclave").toLowerCase();
export const BIN = process.env.CONCLAVE_BIN || join(REPO, "target", "debug", "conclave");
export const LOOPBACK = "127.0.0.1";

export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((ok, fail) => {
        s.once("error", fail);
        s.listen(0, LOOPBACK, ok);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  }
}

function portOpen(port) {
  return new Promise((ok) => {
    const sock = net.connect({ host: LOOPBACK, port });
    sock.setTimeout(500);
    sock.once("connect", () => {
      sock.destroy();
      ok(true);
    });
    sock.once("error", () => ok(false));
    sock.once("timeout", () => {
      sock.destroy();
      ok(false);
    });
  });
}

export function httpsGet(port, path) {
  return new Promise((ok) => {
    const req = https.get(
      { host: LOOPBACK, port, path, rejectUnauthorized: false, timeout: 1000, agent: false },
      (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => ok({ status: res.statusCode, body }));
      },
    );
    req.on("error", () => ok({ status: 0, body: "" }));
    req.on("timeout", () => {
      req.destroy();
      ok({ status: 0, body: "" });
    });
  });
}

class ConclaveServer {
  constructor(overrides = {}) {
    this.overrides = overrides;
    this.kind = "conclave";
    this.domain = "localhost";
    this.host = LOOPBACK;
    this.tmp = mkdtempSync(join(tmpdir(), "e2e-node-conclave-"));
    this.logPath = join(this.tmp, "server.stderr.log");
    this.users = {};
  }

  env() {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith("CONCLAVE_") && k !== "RUST_LOG") env[k] = v;
    }
    const cfg = {
      "registration.allow": true,
      "limits.auth_failures_per_minute": 100000,
      "log.level": "debug",
      data_dir: join(this.tmp, "data"),
      hosts: '["localhost"]',
      "c2s.bind": '["127.0.0.1"]',
      "c2s.starttls_port": this.starttls_port,
      "c2s.direct_tls_port": this.direct_tls_port,
      "http.bind": '["127.0.0.1"]',
      "http.port": this.http_port,
      // servers run side by side: each takes a free media port
      "meetings.udp_port": 0,
      ...this.overrides,
    };
    for (const [k, v] of Object.entries(cfg)) {
      env["CONCLAVE_" + k.toUpperCase().replaceAll(".", "__")] = String(v);
    }
    return env;
  }

  cli(args, input = "") {
    return spawnSync(BIN, args, { cwd: this.tmp, env: this.env(), input, encoding: "utf8", timeout: 30000 });
  }

  async start(userNames = []) {
    if (!existsSync(BIN)) throw new Error(`conclave binary not found at ${BIN}`);
    [this.starttls_port, this.direct_tls_port, this.http_port] = await freePorts(3);
    const fd = openSync(this.logPath, "a");
    this.proc = spawn(BIN, ["serve"], { cwd: this.tmp, env: this.env(), stdio: ["ignore", fd, fd] });
    closeSync(fd);
    this.exited = new Promise((ok) => this.proc.once("exit", (code, sig) => ok({ code, sig })));
    let dead = null;
    this.exited.then((r) => (dead = r));
    const deadline = Date.now() + 30000;
    for (;;) {
      if (dead) throw new Error(`conclave exited during startup (${JSON.stringify(dead)}):\n${this.log()}`);
      if (
        (await portOpen(this.starttls_port)) &&
        (await portOpen(this.direct_tls_port)) &&
        (await httpsGet(this.http_port, "/health")).status === 200
      )
        break;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`conclave not ready after 30s:\n${this.log()}`);
      }
      await sleep(100);
    }
    for (const name of userNames) this.addUser(name);
    return this;
  }

  addUser(name, password = "pw-" + randomBytes(6).toString("hex")) {
    const jid = name.includes("@") ? name : `${name}@${this.domain}`;
    const r = this.cli(["user", "add", jid], password + "\n");
    if (r.status !== 0) throw new Error(`conclave user add ${jid} failed (${r.status}): ${r.stderr}`);
    this.users[jid] = password;
    return { jid, password };
  }

  log() {
    try {
      return readFileSync(this.logPath, "utf8").slice(-20000);
    } catch {
      return "";
    }
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGTERM");
      const t = setTimeout(() => this.proc.kill("SIGKILL"), 10000);
      await this.exited;
      clearTimeout(t);
    }
    if (process.env.E2E_KEEP_TMP !== "1") rmSync(this.tmp, { recursive: true, force: true });
  }
}

// Reference server through the Python harness (tests/e2e/harness.py).
class BridgedServer {
  constructor(overrides = {}) {
    this.overrides = overrides;
  }

  async start(userNames = []) {
    const py = join(REPO, "tests", ".venv", "bin", "python");
    const args = [join(REPO, "tests", "e2e", "serve_target.py"), "--overrides", JSON.stringify(this.overrides)];
    this.proc = spawn(py, [...args, ...userNames], {
      cwd: join(REPO, "tests", "e2e"),
      env: process.env,
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.exited = new Promise((ok) => this.proc.once("exit", (code) => ok(code)));
    const line = await new Promise((ok, fail) => {
      let buf = "";
      const t = setTimeout(() => fail(new Error("reference server did not start")), 60000);
      this.proc.stdout.on("data", (d) => {
        buf += d;
        const i = buf.indexOf("\n");
        if (i >= 0) {
          clearTimeout(t);
          ok(buf.slice(0, i));
        }
      });
      this.exited.then((code) => fail(new Error(`serve_target.py exited ${code}`)));
    });
    Object.assign(this, JSON.parse(line));
    if (this.unsupported) {
      await this.exited;
      const err = new Error(this.unsupported);
      err.unsupported = true;
      throw err;
    }
    return this;
  }

  log() {
    try {
      return readFileSync(this.log_path, "utf8").slice(-20000);
    } catch {
      return "";
    }
  }

  async stop() {
    this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 20000);
    await this.exited;
    clearTimeout(t);
  }
}

export async function startServer(userNames = [], overrides = {}) {
  const srv = TARGET === "conclave" ? new ConclaveServer(overrides) : new BridgedServer(overrides);
  return srv.start(userNames);
}

export function withTimeout(promise, ms, what = "operation") {
  let t;
  return Promise.race([
    promise,
    new Promise((_, fail) => {
      t = setTimeout(() => fail(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}
