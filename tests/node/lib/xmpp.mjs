// Client helpers: @xmpp/client over WebSocket, Strophe.js over BOSH.
import WebSocket from "ws";
import XHR2 from "xhr2";

// Node 20 has neither WebSocket nor XMLHttpRequest globals.
globalThis.WebSocket ??= WebSocket;

// xhr2 has no responseXML, and Strophe.js 5.0.0's BOSH transport then drops the
// response (its DOMParser fallback parses but returns null). Provide responseXML
// using the DOMParser that strophe.js's Node entry point installs (xmldom).
class XMLHttpRequestWithXML extends XHR2 {
  get responseXML() {
    if (this.readyState !== 4 || !this.responseText || !globalThis.DOMParser) return null;
    return new globalThis.DOMParser().parseFromString(this.responseText, "text/xml");
  }
}
globalThis.XMLHttpRequest ??= XMLHttpRequestWithXML;

import { client, xml } from "@xmpp/client";
import { withTimeout } from "./server.mjs";

export { xml };

const STEP = 10000;

// Log in over WebSocket; collects incoming messages in c.inbox.
export async function wsLogin(srv, jid, password, resource = "node") {
  const [username, domain] = jid.split("@");
  const c = client({
    service: `wss://127.0.0.1:${srv.http_port}/xmpp-websocket`,
    domain,
    username,
    password,
    resource,
  });
  c.reconnect.stop();
  c.inbox = [];
  c.waiters = [];
  c.on("error", (err) => {
    c.lastError = err;
  });
  c.on("stanza", (st) => {
    if (st.is("message") && st.getChild("body")) {
      c.inbox.push(st);
      for (const w of c.waiters.splice(0)) w();
    }
  });
  await withTimeout(c.start(), STEP, `websocket login of ${jid}`);
  return c;
}

export async function nextMessage(c, pred = () => true, ms = STEP) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = c.inbox.findIndex(pred);
    if (i >= 0) return c.inbox.splice(i, 1)[0];
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("no matching message received");
    await withTimeout(new Promise((ok) => c.waiters.push(ok)), left, "message wait").catch(() => {});
  }
}

export async function wsClose(c) {
  if (!c) return;
  try {
    await withTimeout(c.stop(), 5000, "stop");
  } catch {
    /* ignore */
  }
}

// --- Strophe.js over BOSH -----------------------------------------------------
let stropheMod;
async function strophe() {
  // Node entry point of strophe.js installs xmldom-based DOM globals.
  if (!stropheMod) {
    stropheMod = await import("strophe.js");
    stropheMod.Strophe.setLogLevel(stropheMod.Strophe.LogLevel.WARN);
  }
  return stropheMod;
}

// Log in over BOSH; resolves to { conn, inbox, Strophe, $msg, $pres }.
export async function boshLogin(srv, jid, password) {
  const { Strophe, $msg, $pres } = await strophe();
  const conn = new Strophe.Connection(`https://127.0.0.1:${srv.http_port}/http-bind`);
  const s = { conn, Strophe, $msg, $pres, inbox: [], waiters: [], statuses: [] };
  conn.addHandler(
    (stanza) => {
      if (stanza.getElementsByTagName("body").length > 0) {
        s.inbox.push(stanza);
        for (const w of s.waiters.splice(0)) w();
      }
      return true; // keep handler
    },
    null,
    "message",
  );
  const failStates = new Set([
    Strophe.Status.AUTHFAIL,
    Strophe.Status.CONNFAIL,
    Strophe.Status.ERROR,
    Strophe.Status.DISCONNECTED,
  ]);
  try {
    await withTimeout(
      new Promise((ok, fail) => {
        conn.connect(jid, password, (status, cond) => {
          s.statuses.push([status, cond]);
          if (status === Strophe.Status.CONNECTED) ok();
          else if (failStates.has(status)) fail(new Error(`BOSH login failed: status ${status} ${cond ?? ""}`));
        });
      }),
      STEP,
      `BOSH login of ${jid}`,
    );
  } catch (err) {
    // Strophe keeps polling after AUTHFAIL; tear the session down so node can exit.
    try {
      conn.disconnect("login failed");
    } catch {
      /* ignore */
    }
    conn._doDisconnect?.();
    throw err;
  }
  return s;
}

export async function boshNextMessage(s, pred = () => true, ms = STEP) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = s.inbox.findIndex(pred);
    if (i >= 0) return s.inbox.splice(i, 1)[0];
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("no matching BOSH message received");
    await withTimeout(new Promise((ok) => s.waiters.push(ok)), left, "message wait").catch(() => {});
  }
}

export async function boshClose(s) {
  if (!s) return;
  const { Strophe } = s;
  await withTimeout(
    new Promise((ok) => {
      s.conn.addConnectionHandler?.(() => {});
      const prev = s.conn.connect_callback;
      s.conn.connect_callback = (status, cond) => {
        prev?.(status, cond);
        if (status === Strophe.Status.DISCONNECTED) ok();
      };
      s.conn.disconnect("test done");
    }),
    5000,
    "BOSH disconnect",
  ).catch(() => s.conn.reset?.());
}
