// Raw clients for input no library sends: a bare `ws` WebSocket (and
// hand-made frames written under it), and BOSH bodies posted over HTTPS.
import assert from "node:assert/strict";
import https from "node:https";
import { randomBytes, randomInt } from "node:crypto";
import WebSocket from "ws";
import { DOMParser } from "@xmldom/xmldom";
import { withTimeout } from "./server.mjs";

export const FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
export const STREAMS = "http://etherx.jabber.org/streams";
export const STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
export const BOSH = "http://jabber.org/protocol/httpbind";
export const XBOSH = "urn:xmpp:xbosh";

export class RawWs {
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
    // How the upgrade ended: 101, or the HTTP status it was refused with
    // (0: the connection failed).
    this.upgrade = new Promise((ok) => {
      this.ws.once("open", () => ok(101));
      this.ws.once("unexpected-response", (req, res) => {
        res.resume();
        req.destroy();
        ok(res.statusCode);
      });
      this.ws.once("error", () => ok(0));
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


// One client frame (RFC 6455 §5.2), masked: `len` is what the header
// announces, `payload` what follows it (may be shorter: the rest is never sent).
export function wsFrame({ fin = true, opcode = 1, payload = Buffer.alloc(0), len = payload.length }) {
  const head = [(fin ? 0x80 : 0) | opcode];
  if (len < 126) head.push(0x80 | len);
  else if (len < 0x10000) head.push(0x80 | 126, len >> 8, len & 0xff);
  else {
    head.push(0x80 | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([Buffer.from(head), mask, body]);
}

// Writes bytes under the `ws` library, straight onto its TLS socket.
export function writeRaw(c, bytes) {
  c.ws._socket.write(bytes);
}

// A BOSH client at the level of bodies: every request is posted as given,
// each answer parsed. `rid` is the last rid used.
export class RawBosh {
  constructor(port, agent = new https.Agent({ keepAlive: true, maxSockets: 2 })) {
    this.port = port;
    this.agent = agent;
    this.rid = randomInt(1e6, 1e9);
  }

  post(xml, ms = 10000) {
    return withTimeout(
      new Promise((ok, fail) => {
        const req = https.request(
          {
            host: "127.0.0.1",
            port: this.port,
            path: "/http-bind",
            method: "POST",
            agent: this.agent,
            rejectUnauthorized: false,
            headers: { "Content-Type": "text/xml; charset=utf-8" },
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (d) => (text += d));
            res.on("end", () => {
              const el = text ? new DOMParser().parseFromString(text, "text/xml").documentElement : null;
              ok({ status: res.statusCode, text, el });
            });
          },
        );
        req.on("error", fail);
        req.end(xml);
      }),
      ms,
      "BOSH request",
    );
  }

  async create(wait = 1) {
    this.rid += 1;
    const r = await this.post(
      `<body xmlns='${BOSH}' xmlns:xmpp='${XBOSH}' content='text/xml; charset=utf-8' hold='1' ` +
        `rid='${this.rid}' to='localhost' ver='1.6' wait='${wait}' xml:lang='en' xmpp:version='1.0'/>`,
    );
    this.sid = r.el?.getAttribute("sid") || null;
    return r;
  }

  // A request of this session carrying `inner`; `rid` defaults to the next one.
  body(inner = "", { rid = ++this.rid, attrs = "" } = {}) {
    return this.post(`<body xmlns='${BOSH}' rid='${rid}' sid='${this.sid}'${attrs}>${inner}</body>`);
  }

  terminate() {
    return this.body("", { attrs: " type='terminate'" });
  }

  // Requests (empty after the first) until an answer holds a matching element.
  async until(inner, pred, ms = 10000) {
    const deadline = Date.now() + ms;
    let r = await this.body(inner);
    for (;;) {
      for (let c = r.el?.firstChild; c; c = c.nextSibling) if (c.nodeType === 1 && pred(c)) return c;
      if (r.el?.getAttribute("type") === "terminate") throw new Error(`BOSH session ended: ${r.text}`);
      if (Date.now() > deadline) throw new Error(`no matching BOSH payload; last: ${r.text}`);
      r = await this.body();
    }
  }

  // SASL PLAIN, restart, bind: returns the bound JID.
  async login(user, password) {
    const created = await this.create();
    if (!this.sid) throw new Error(`no BOSH session: ${created.text}`);
    const b64 = Buffer.from(`\0${user}\0${password}`).toString("base64");
    const res = await this.until(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth>`,
      (el) => el.localName === "success" || el.localName === "failure",
    );
    if (res.localName !== "success") throw new Error("BOSH login refused");
    this.rid += 1;
    await this.post(
      `<body xmlns='${BOSH}' xmlns:xmpp='${XBOSH}' rid='${this.rid}' sid='${this.sid}' to='localhost' xml:lang='en' xmpp:restart='true'/>`,
    );
    const bound = await this.until(
      `<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`,
      (el) => el.localName === "iq" && el.getAttribute("id") === "bind1",
    );
    this.jid = bound.getElementsByTagName("jid")[0]?.textContent;
    return this.jid;
  }
}
