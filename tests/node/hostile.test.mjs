// Hostile input over WebSocket and BOSH: a stanza nested 10,000 deep is
// refused with policy-violation while it is parsed, before and after
// authentication, and a bystander is still served (TCP: tests/e2e/test_hostile.py).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import WebSocket from "ws";
import { startServer, withTimeout, TARGET } from "./lib/server.mjs";
import { wsLogin, wsClose, nextMessage, xml } from "./lib/xmpp.mjs";

const skip = TARGET !== "conclave" && "Conclave's nesting limit";
const DEPTH = 10000;
const deep = (to) => `<message xmlns='jabber:client' to='${to}' type='chat'>${"<a>".repeat(DEPTH)}${"</a>".repeat(DEPTH)}</message>`;

let srv;
let bystander;

before(async () => {
  srv = await startServer(["hbystander", "hsender", "hattacker"]);
  bystander = await wsLogin(srv, "hbystander@localhost", srv.users["hbystander@localhost"], "by");
});

after(async () => {
  await wsClose(bystander);
  if (srv) await srv.stop();
});

// Someone else sends the bystander a message: it arrives.
async function bystanderServed(tag) {
  const s = await wsLogin(srv, "hsender@localhost", srv.users["hsender@localhost"], `s-${tag}`);
  try {
    await s.send(xml("message", { to: "hbystander@localhost/by", type: "chat" }, xml("body", {}, `after ${tag}`)));
    await nextMessage(bystander, (m) => m.getChildText("body") === `after ${tag}`);
  } finally {
    await wsClose(s);
  }
  assert.equal(srv.proc.exitCode, null, "the server process died");
}

// A raw WebSocket: the stream error condition the server answers with.
function wsStreamError(port, messages) {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/xmpp-websocket`, ["xmpp"], { rejectUnauthorized: false });
    const t = setTimeout(() => {
      ws.terminate();
      fail(new Error("no stream error within 5 s"));
    }, 5000);
    ws.once("open", () => messages.forEach((m) => ws.send(m)));
    ws.on("message", (d) => {
      const m = /<stream:error[^>]*><([a-z-]+) /.exec(d.toString());
      if (m) {
        clearTimeout(t);
        ws.terminate();
        ok(m[1]);
      }
    });
    ws.once("error", fail);
  });
}

test("websocket: a 10,000-deep stanza before authentication -> policy-violation", { skip }, async () => {
  const t0 = Date.now();
  const cond = await wsStreamError(srv.http_port, [
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
    deep("x@localhost"),
  ]);
  assert.equal(cond, "policy-violation");
  assert.ok(Date.now() - t0 < 2000);
  await bystanderServed("ws-pre");
});

test("websocket: a 10,000-deep stanza from a logged-in @xmpp/client -> policy-violation", { skip }, async () => {
  const c = await wsLogin(srv, "hattacker@localhost", srv.users["hattacker@localhost"], "deep");
  try {
    await c.write(deep("hbystander@localhost"));
    const deadline = Date.now() + 5000;
    while (!c.lastError && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 50));
    assert.equal(c.lastError?.condition, "policy-violation", String(c.lastError));
  } finally {
    await wsClose(c);
  }
  await bystanderServed("ws-post");
});

// --- BOSH, by hand: Strophe.js will not send such a body ---------------------
function post(body) {
  return new Promise((ok, fail) => {
    const req = https.request(
      { host: "127.0.0.1", port: srv.http_port, path: "/http-bind", method: "POST", rejectUnauthorized: false, agent: false },
      (res) => {
        let data = "";
        res.on("data", (d) => (data += d));
        res.on("end", () => ok(data));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error("BOSH request timed out")));
    req.once("error", fail);
    req.end(body);
  });
}

const BOSH = "http://jabber.org/protocol/httpbind";
async function boshSession() {
  let rid = 4000;
  const created = await post(`<body xmlns='${BOSH}' rid='${rid}' to='localhost' wait='5' hold='1' xml:lang='en' ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>`);
  const sid = /sid=['"]([^'"]+)/.exec(created)?.[1];
  assert.ok(sid, created);
  return {
    sid,
    send: async (inner, attrs = "") => {
      const r = await post(`<body xmlns='${BOSH}' rid='${++rid}' sid='${sid}'${attrs}>${inner}</body>`);
      return r;
    },
  };
}

test("bosh: a 10,000-deep stanza before and after authentication -> policy-violation", { skip }, async () => {
  const pre = await boshSession();
  const t0 = Date.now();
  const r1 = await pre.send(deep("x@localhost"));
  assert.match(r1, /type=['"]terminate['"]/, r1);
  assert.match(r1, /condition=['"]policy-violation['"]/, r1);
  assert.ok(Date.now() - t0 < 2000);
  await bystanderServed("bosh-pre");

  const s = await boshSession();
  const b64 = Buffer.from(`\0hattacker\0${srv.users["hattacker@localhost"]}`).toString("base64");
  let r = await s.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth>`);
  for (let i = 0; !/success/.test(r) && i < 3; i++) r = await s.send("");
  assert.match(r, /success/, r);
  r = await s.send("", " to='localhost' xml:lang='en' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'");
  r = await s.send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
  for (let i = 0; !/<jid>/.test(r) && i < 3; i++) r = await s.send("");
  assert.match(r, /<jid>/, r);
  const r2 = await s.send(deep("hbystander@localhost"));
  assert.match(r2, /condition=['"]policy-violation['"]/, r2);
  // ... and that session is over, as a TCP stream would be
  assert.match(await s.send(""), /condition=['"]item-not-found['"]/);
  await bystanderServed("bosh-post");
});
