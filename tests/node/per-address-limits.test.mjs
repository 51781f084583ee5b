// limits.max_connections_per_ip covers WebSocket and BOSH sessions for as
// long as they last, not only their handshakes. Every client here is on
// 127.0.0.1, the bystander (logged in with @xmpp/client) included.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import { startServer, TARGET } from "./lib/server.mjs";
import { wsLogin, wsClose, nextMessage, xml } from "./lib/xmpp.mjs";
import { RawWs, RawBosh } from "./lib/raw.mjs";

const CAP = 5;

let srv;
let bystander;

before(async () => {
  if (TARGET !== "conclave") return;
  srv = await startServer(["bystander", "sender"], { "limits.max_connections_per_ip": CAP });
  // One of the CAP slots, for the whole file.
  bystander = await wsLogin(srv, "bystander@localhost", srv.users["bystander@localhost"], "by");
});

after(async () => {
  agent.destroy();
  await wsClose(bystander);
  if (srv) await srv.stop();
});

// With every test's own sessions gone: a sender logs in and the bystander
// still gets its message.
async function bystanderReceives() {
  const sender = await retry(() => wsLogin(srv, "sender@localhost", srv.users["sender@localhost"], "snd"));
  try {
    const body = `still here ${Date.now()}`;
    await sender.send(xml("message", { to: bystander.jid.toString(), type: "chat" }, xml("body", {}, body)));
    await nextMessage(bystander, (st) => st.getChildText("body") === body, 5000);
  } finally {
    await wsClose(sender);
  }
}

// A slot is given back when the server has finished with the session:
// retry for a moment.
async function retry(f, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}

async function openWs() {
  const c = new RawWs(srv.http_port);
  const status = await c.upgrade;
  if (status !== 101) {
    c.close();
    throw Object.assign(new Error(`upgrade refused: ${status}`), { status });
  }
  return c;
}

// BOSH requests share two keep-alive connections, as a browser's would:
// HTTPS connections are counted too, apart from sessions.
const agent = new https.Agent({ keepAlive: true, maxSockets: 2 });

async function openBosh() {
  const b = new RawBosh(srv.http_port, agent);
  const r = await b.create(1);
  if (!b.sid) {
    throw Object.assign(new Error(`session refused: ${r.text}`), { refused: r });
  }
  return b;
}

async function closeBosh(b) {
  await b.terminate().catch(() => {});
}

const opts = { skip: TARGET !== "conclave" && "Conclave's limits settings" };

test("websocket sessions hold their slot; the one over the cap gets 429, and a closed one frees a slot", opts, async () => {
  const held = [];
  try {
    // The bystander holds one slot.
    for (let i = 1; i < CAP; i++) held.push(await openWs());
    // Idle upgraded sockets stay counted: still refused a moment later.
    await sleep(300);
    const t0 = Date.now();
    const over = new RawWs(srv.http_port);
    assert.equal(await over.upgrade, 429);
    over.close();
    assert.ok(Date.now() - t0 < 2000, `refused after ${Date.now() - t0} ms`);
    held.shift().close();
    held.push(await retry(openWs));
    const again = new RawWs(srv.http_port);
    assert.equal(await again.upgrade, 429);
    again.close();
  } finally {
    for (const c of held) c.close();
  }
  await bystanderReceives();
});

test("bosh sessions hold their slot: of a burst of 50 creations CAP - 1 are granted, the rest get policy-violation", opts, async () => {
  const held = [];
  try {
    const t0 = Date.now();
    // 50 creations at once from the same address (over the two keep-alive
    // connections); the bystander holds one slot.
    const burst = Array.from({ length: 50 }, () => new RawBosh(srv.http_port, agent));
    const answers = await Promise.all(burst.map((b) => b.create(1)));
    const ms = Date.now() - t0;
    burst.forEach((b) => b.sid && held.push(b));
    assert.equal(held.length, CAP - 1, `granted: ${held.length}`);
    for (const r of answers.filter((r) => !r.el?.getAttribute("sid"))) {
      assert.equal(r.el?.getAttribute("type"), "terminate", r.text);
      assert.equal(r.el?.getAttribute("condition"), "policy-violation", r.text);
    }
    assert.ok(ms < 3000, `50 creations took ${ms} ms`);
    // Still refused while they live.
    await sleep(300);
    const r = await new RawBosh(srv.http_port, agent).create(1);
    assert.equal(r.el?.getAttribute("condition"), "policy-violation", r.text);
    // Ending one session frees its slot.
    await closeBosh(held.shift());
    held.push(await retry(openBosh));
    const r2 = await new RawBosh(srv.http_port, agent).create(1);
    assert.equal(r2.el?.getAttribute("condition"), "policy-violation", r2.text);
  } finally {
    for (const h of held) await closeBosh(h);
  }
  await bystanderReceives();
});

test("websocket and bosh sessions count together", opts, async () => {
  const ws = [];
  const bosh = [];
  try {
    ws.push(await openWs(), await openWs());
    bosh.push(await openBosh(), await openBosh());
    // Bystander + 2 + 2 = CAP.
    const w = new RawWs(srv.http_port);
    assert.equal(await w.upgrade, 429);
    w.close();
    const r = await new RawBosh(srv.http_port, agent).create(1);
    assert.equal(r.el?.getAttribute("condition"), "policy-violation", r.text);
    // A WebSocket closed makes room for a BOSH session.
    ws.shift().close();
    bosh.push(await retry(openBosh));
  } finally {
    for (const c of ws) c.close();
    for (const b of bosh) await closeBosh(b);
  }
  await bystanderReceives();
});
