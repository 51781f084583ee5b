// RFC 7395 framing checked on the wire with a bare `ws` WebSocket.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, withTimeout, TARGET } from "./lib/server.mjs";
import { RawWs, FRAMING } from "./lib/raw.mjs";

let srv;

before(async () => {
  srv = await startServer(["rawws"], { "limits.max_stanza_bytes": 10000 });
});

after(async () => {
  if (srv) await srv.stop();
});

const pw = () => srv.users["rawws@localhost"];

test("ws raw: subprotocol xmpp, <open/> reply and features", async () => {
  const c = new RawWs(srv.http_port);
  try {
    await c.opened();
    assert.equal(c.ws.protocol, "xmpp");
    const { open, features } = await c.openStream();
    assert.equal(open.namespaceURI, FRAMING);
    assert.equal(open.getAttribute("from"), "localhost");
    assert.equal(open.getAttribute("version"), "1.0");
    assert.ok(open.getAttribute("id"), "no stream id");
    const mechs = Array.from(features.getElementsByTagName("mechanism")).map((m) => m.textContent);
    assert.ok(mechs.includes("PLAIN") || mechs.includes("SCRAM-SHA-1"), `mechanisms: ${mechs}`);
    assert.equal(features.getElementsByTagName("starttls").length, 0, "no STARTTLS inside WebSocket");
  } finally {
    c.close();
  }
});

test("ws raw: login, ping, and <close/> handshake", async () => {
  const c = new RawWs(srv.http_port);
  try {
    const jid = await c.login("rawws", pw());
    assert.match(jid, /^rawws@localhost\/.+/);
    c.send(`<iq type='get' id='p1' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const res = await c.next((el) => el.getAttribute("id") === "p1");
    assert.equal(res.getAttribute("type"), "result");
    c.send(`<close xmlns='${FRAMING}'/>`);
    await c.next((el) => el.localName === "close" && el.namespaceURI === FRAMING);
    await withTimeout(c.closed, 5000, "server closing the WebSocket");
  } finally {
    c.close();
  }
});

test("ws raw: <open/> and bind pipelined after <auth/> are taken in the new stream", async () => {
  const c = new RawWs(srv.http_port);
  try {
    await c.opened();
    await c.openStream();
    const b64 = Buffer.from(`\0rawws\0${pw()}`).toString("base64");
    // Three messages without waiting for <success/>: each WebSocket message is a
    // whole element, so nothing of the restarted stream may be lost or refused.
    c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth>`);
    c.send(`<open xmlns='${FRAMING}' to='localhost' version='1.0'/>`);
    c.send(`<iq type='set' id='pb1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    await c.next((el) => el.localName === "success");
    await c.next((el) => el.localName === "open");
    const features = await c.next((el) => el.localName === "features");
    assert.equal(features.getElementsByTagName("bind").length, 1, c.dump());
    const bound = await c.next((el) => el.getAttribute("id") === "pb1");
    assert.equal(bound.getAttribute("type"), "result", c.dump());
    assert.match(bound.getElementsByTagName("jid")[0].textContent, /^rawws@localhost\/.+/);
  } finally {
    c.close();
  }
});

test("ws raw: oversized stanza -> policy-violation", async () => {
  const c = new RawWs(srv.http_port);
  try {
    const jid = await c.login("rawws", pw());
    c.send(`<message to='${jid}' xmlns='jabber:client'><body>${"A".repeat(20000)}</body></message>`);
    assert.equal(await c.streamError(), "policy-violation");
    await withTimeout(c.closed, 5000, "close after stream error");
  } finally {
    c.close();
  }
});

test("ws raw: malformed XML -> not-well-formed", async () => {
  const c = new RawWs(srv.http_port);
  try {
    const jid = await c.login("rawws", pw());
    c.send(`<message to='${jid}' xmlns='jabber:client'><body>x</bod></message>`);
    assert.equal(await c.streamError(), "not-well-formed");
    await withTimeout(c.closed, 5000, "close after stream error");
  } finally {
    c.close();
  }
});

test("ws raw: wrong password -> SASL not-authorized", async () => {
  const c = new RawWs(srv.http_port);
  try {
    await c.opened();
    await c.openStream();
    const b64 = Buffer.from(`\0rawws\0wrong-password`).toString("base64");
    c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth>`);
    const res = await c.next((el) => el.localName === "failure");
    assert.equal(res.getElementsByTagName("not-authorized").length, 1, c.dump());
  } finally {
    c.close();
  }
});

test("ws raw: XEP-0198 resumption after the WebSocket is cut", { skip: TARGET !== "conclave" && "Conclave's resumption settings" }, async () => {
  const SM = "urn:xmpp:sm:3";
  const a = new RawWs(srv.http_port);
  let b;
  let a2;
  try {
    const full = await a.login("rawws", pw());
    a.send(`<enable xmlns='${SM}' resume='true'/>`);
    const en = await a.next((el) => el.localName === "enabled" && el.namespaceURI === SM);
    const id = en.getAttribute("id");
    assert.ok(id, a.dump());
    a.close(); // terminate: no <close/>, the TCP connection just goes
    b = new RawWs(srv.http_port);
    await b.login("rawws", pw());
    b.send(`<message to='${full}' type='chat' xmlns='jabber:client'><body>while cut</body></message>`);
    b.send(`<iq type='get' id='bp' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await b.next((el) => el.getAttribute("id") === "bp");
    a2 = new RawWs(srv.http_port);
    await a2.opened();
    await a2.openStream();
    const b64 = Buffer.from(`\0rawws\0${pw()}`).toString("base64");
    a2.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth>`);
    await a2.next((el) => el.localName === "success");
    await a2.openStream();
    a2.send(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    const r = await a2.next((el) => el.localName === "resumed" || el.localName === "failed");
    assert.equal(r.localName, "resumed", a2.dump());
    const m = await a2.next((el) => el.localName === "message");
    assert.equal(m.getElementsByTagName("body")[0].textContent, "while cut");
    assert.equal(m.getAttribute("to"), full);
    // No message was bounced to the sender.
    assert.equal(b.frames.filter((f) => f.el.localName === "message").length, 0, b.dump());
  } finally {
    a.close();
    b?.close();
    a2?.close();
  }
});

test("ws raw: SIGTERM -> system-shutdown, then <close/>", { skip: TARGET !== "conclave" && "needs direct control of the conclave process" }, async () => {
  const own = await startServer(["bye"]);
  const c = new RawWs(own.http_port);
  try {
    await c.login("bye", own.users["bye@localhost"]);
    c.send(`<iq type='get' id='p2' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await c.next((el) => el.getAttribute("id") === "p2");
    own.proc.kill("SIGTERM");
    assert.equal(await c.streamError(), "system-shutdown");
    await withTimeout(c.closed, 5000, "close after system-shutdown");
    const { code } = await withTimeout(own.exited, 10000, "process exit");
    assert.equal(code, 0);
  } finally {
    c.close();
    await own.stop();
  }
});
