// RFC 7395 framing checked on the wire with a bare `ws` WebSocket.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { DOMParser } from "@xmldom/xmldom";
import { startServer, withTimeout, TARGET } from "./lib/server.mjs";

const FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
const STREAMS = "http://etherx.jabber.org/streams";
const STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";

let srv;

before(async () => {
  srv = await startServer(["rawws"], { "limits.max_stanza_bytes": 10000 });
});

after(async () => {
  if (srv) await srv.stop();
});

class RawWs {
  constructor(port, protocols = ["xmpp"]) {
    this.ws = new WebSocket(`wss://127.0.0.1:${port}/xmpp-websocket`, protocols, { rejectUnauthorized: false });
    this.frames = [];
    this.waiters = [];
    this.closed = new Promise((ok) => this.ws.once("close", (code) => ok(code)));
    this.isClosed = false;
    this.closed.then(() => {
      this.isClosed = true;
      this.wake();
    });
    this.ws.on("message", (data) => {
      const text = data.toString();
      const doc = new DOMParser().parseFromString(text, "text/xml");
      this.frames.push({ text, el: doc.documentElement });
      this.wake();
    });
    this.ws.on("error", (e) => {
      this.error = e;
    });
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  opened() {
    return withTimeout(
      new Promise((ok, fail) => {
        this.ws.once("open", ok);
        this.ws.once("error", fail);
      }),
      5000,
      "websocket open",
    );
  }

  send(s) {
    this.ws.send(s);
  }

  async next(pred = () => true, ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.frames.findIndex((f) => pred(f.el, f.text));
      if (i >= 0) return this.frames.splice(i, 1)[0].el;
      if (this.isClosed) throw new Error(`websocket closed; frames: ${this.dump()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame; frames: ${this.dump()}`);
      await withTimeout(new Promise((ok) => this.waiters.push(ok)), left, "frame").catch(() => {});
    }
  }

  dump() {
    return JSON.stringify(this.frames.map((f) => f.text).slice(-5));
  }

  async openStream() {
    this.send(`<open xmlns='${FRAMING}' to='localhost' version='1.0'/>`);
    const open = await this.next((el) => el.localName === "open");
    const features = await this.next((el) => el.localName === "features");
    return { open, features };
  }

  async login(user, password) {
    await this.opened();
    await this.openStream();
    const b64 = Buffer.from(`\0${user}\0${password}`).toString("base64");
    this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth>`);
    const res = await this.next((el) => el.localName === "success" || el.localName === "failure");
    assert.equal(res.localName, "success", this.dump());
    await this.openStream();
    this.send(`<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    const bound = await this.next((el) => el.getAttribute("id") === "b1");
    assert.equal(bound.getAttribute("type"), "result", this.dump());
    this.jid = bound.getElementsByTagName("jid")[0].textContent;
    return this.jid;
  }

  async streamError(ms = 5000) {
    const el = await this.next((e) => e.localName === "error" && e.namespaceURI === STREAMS, ms);
    for (let c = el.firstChild; c; c = c.nextSibling) {
      if (c.nodeType === 1 && c.namespaceURI === STREAM_ERRORS && c.localName !== "text") return c.localName;
    }
    return null;
  }

  close() {
    try {
      this.ws.terminate();
    } catch {
      /* ignore */
    }
  }
}

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
