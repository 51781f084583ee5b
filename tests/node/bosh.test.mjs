// XEP-0124/0206 BOSH with Strophe.js, talking to an @xmpp/client WebSocket user.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, withTimeout, TARGET } from "./lib/server.mjs";
import { wsLogin, wsClose, nextMessage, xml, boshLogin, boshClose, boshNextMessage } from "./lib/xmpp.mjs";

let srv;

before(async () => {
  srv = await startServer(["boshcarol", "wsdave"]);
});

after(async () => {
  if (srv) await srv.stop();
});

const pw = (jid) => srv.users[jid];

test("bosh: log in with Strophe.js", async () => {
  const s = await boshLogin(srv, "boshcarol@localhost/bosh1", pw("boshcarol@localhost"));
  try {
    assert.equal(s.Strophe.getBareJidFromJid(s.conn.jid), "boshcarol@localhost");
    assert.ok(s.Strophe.getResourceFromJid(s.conn.jid), `no resource in ${s.conn.jid}`);
  } finally {
    await boshClose(s);
  }
});

test("bosh: exchange messages with a websocket user", async () => {
  const s = await boshLogin(srv, "boshcarol@localhost", pw("boshcarol@localhost"));
  const w = await wsLogin(srv, "wsdave@localhost", pw("wsdave@localhost"), "ws");
  try {
    s.conn.send(s.$pres());
    await w.send(xml("presence"));
    // BOSH -> WebSocket
    const body1 = `from bosh ${Date.now()}`;
    s.conn.send(s.$msg({ to: "wsdave@localhost", type: "chat" }).c("body").t(body1));
    const m = await nextMessage(w, (st) => st.getChildText("body") === body1);
    assert.equal(m.attrs.from, s.conn.jid);
    // WebSocket -> BOSH (to the full JID the message came from)
    const body2 = `from websocket ${Date.now()}`;
    await w.send(xml("message", { to: m.attrs.from, type: "chat" }, xml("body", {}, body2)));
    const r = await boshNextMessage(s, (st) => st.getElementsByTagName("body")[0].textContent === body2);
    assert.equal(r.getAttribute("from"), "wsdave@localhost/ws");
  } finally {
    await wsClose(w);
    await boshClose(s);
  }
});

test("bosh: wrong password fails", async () => {
  await assert.rejects(boshLogin(srv, "boshcarol@localhost", "nope"), /BOSH login failed/);
});

test("bosh: stream management acks, but no resumption offered", { skip: TARGET !== "conclave" && "Conclave's choice for BOSH" }, async () => {
  const SM = "urn:xmpp:sm:3";
  const s = await boshLogin(srv, "boshcarol@localhost/smtest", pw("boshcarol@localhost"));
  try {
    const enabled = new Promise((ok) =>
      s.conn.addHandler((el) => {
        ok(el);
        return false;
      }, SM, "enabled"),
    );
    s.conn.send(s.Strophe.xmlElement("enable", { xmlns: SM, resume: "true" }));
    const el = await withTimeout(enabled, 5000, "<enabled/>");
    // A BOSH session already outlives its HTTP requests; there is no
    // stream to resume, so no id is handed out.
    assert.equal(el.getAttribute("resume"), null);
    assert.equal(el.getAttribute("id"), null);
  } finally {
    await boshClose(s);
  }
});

test("bosh: SIGTERM terminates the session with system-shutdown", { skip: TARGET !== "conclave" && "needs direct control of the conclave process" }, async () => {
  const own = await startServer(["boshbye"]);
  let s;
  try {
    s = await boshLogin(own, "boshbye@localhost", own.users["boshbye@localhost"]);
    const raw = [];
    s.conn.rawInput = (d) => raw.push(d);
    const ended = new Promise((ok) => {
      const prev = s.conn.connect_callback;
      s.conn.connect_callback = (status, cond) => {
        prev?.(status, cond);
        if (status === s.Strophe.Status.CONNFAIL || status === s.Strophe.Status.DISCONNECTED) ok(cond);
      };
    });
    s.conn.send(s.$pres());
    await new Promise((r) => setTimeout(r, 300));
    own.proc.kill("SIGTERM");
    const cond = await withTimeout(ended, 10000, "BOSH termination");
    const seen = raw.join("\n");
    assert.ok(
      cond === "system-shutdown" || /system-shutdown/.test(seen),
      `no system-shutdown: cond=${cond} raw=${seen.slice(-500)}`,
    );
    const { code } = await withTimeout(own.exited, 10000, "process exit");
    assert.equal(code, 0);
  } finally {
    if (s) s.conn._doDisconnect?.();
    await own.stop();
  }
});
