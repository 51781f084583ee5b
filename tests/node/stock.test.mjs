// Each client library exactly as shipped (no TLS or transport options),
// the way a new user first tries a server: each logs in at once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { startServer, TARGET } from "./lib/server.mjs";

const here = new URL(".", import.meta.url).pathname;
let srv;
let alice;

before(async () => {
  srv = await startServer();
  alice = srv.addUser("stockalice");
});

after(async () => {
  if (srv) await srv.stop();
});

function stock(lib, service) {
  const cert = join(srv.tmp, "data", "tls", "cert.pem");
  assert.ok(existsSync(cert), "the server generated no certificate");
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: cert };
  delete env.NODE_TLS_REJECT_UNAUTHORIZED;
  return new Promise((ok, fail) => {
    const p = spawn(process.execPath, [join(here, "lib", "stock_client.mjs"), lib, service, alice.jid, alice.password], {
      env,
      cwd: here,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.once("error", fail);
    p.once("exit", () => {
      try {
        const r = JSON.parse(out.trim().split("\n").pop());
        console.log(`${lib} ${service}: ${JSON.stringify(r)}`);
        ok(r);
      } catch {
        fail(new Error(`no result from the stock client: ${out}`));
      }
    });
  });
}

// @xmpp/client derives the SCRAM key in JavaScript: 10,000 PBKDF2 rounds
// take it about 1.4 s of its own CPU here, the whole exchange with the
// server a few milliseconds. A hang (a stream waiting for the 30 s
// unauthenticated timeout) is what these bounds catch.
const PROMPT_MS = { xmpp: 5000, strophe: 2000 };

const skip = TARGET !== "conclave" && "the reference server has its own certificate setup";

test("stock @xmpp/client over TCP with STARTTLS logs in at once", { skip }, async () => {
  const r = await stock("xmpp", `xmpp://localhost:${srv.starttls_port}`);
  assert.ok(r.ok, r.error);
  assert.match(r.jid, /^stockalice@localhost\//);
  assert.ok(r.ms < PROMPT_MS.xmpp, `login took ${r.ms} ms`);
});

test("stock @xmpp/client over WebSocket logs in at once", { skip }, async () => {
  const r = await stock("xmpp", `wss://localhost:${srv.http_port}/xmpp-websocket`);
  assert.ok(r.ok, r.error);
  assert.match(r.jid, /^stockalice@localhost\//);
  assert.ok(r.ms < PROMPT_MS.xmpp, `login took ${r.ms} ms`);
});

test("stock Strophe.js over BOSH logs in at once", { skip }, async () => {
  const r = await stock("strophe", `https://localhost:${srv.http_port}/http-bind`);
  assert.ok(r.ok, r.error);
  assert.match(r.jid, /^stockalice@localhost\//);
  assert.ok(r.ms < PROMPT_MS.strophe, `login took ${r.ms} ms`);
});
