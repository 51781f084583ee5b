// Bad WebSocket and BOSH input, each refused at once, while a bystander
// logged in with @xmpp/client goes on receiving messages.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import { startServer, TARGET } from "./lib/server.mjs";
import { wsLogin, wsClose, nextMessage, xml } from "./lib/xmpp.mjs";
import { RawWs, RawBosh, wsFrame, writeRaw } from "./lib/raw.mjs";

const MAX_STANZA = 10000;
const MESSAGE_TIMEOUT_S = 2;

let srv;
let bystander;
let sender;

before(async () => {
  srv = await startServer(["abuser", "bystander", "sender"], {
    "limits.max_stanza_bytes": MAX_STANZA,
    "limits.ws_message_timeout_secs": MESSAGE_TIMEOUT_S,
  });
  bystander = await wsLogin(srv, "bystander@localhost", srv.users["bystander@localhost"], "by");
  sender = await wsLogin(srv, "sender@localhost", srv.users["sender@localhost"], "snd");
});

after(async () => {
  await wsClose(bystander);
  await wsClose(sender);
  if (srv) await srv.stop();
});

// The bystander still gets what is sent to it.
async function bystanderReceives() {
  const body = `still here ${Date.now()} ${Math.random()}`;
  await sender.send(xml("message", { to: bystander.jid.toString(), type: "chat" }, xml("body", {}, body)));
  const m = await nextMessage(bystander, (st) => st.getChildText("body") === body, 5000);
  assert.equal(m.attrs.from, "sender@localhost/snd");
}

async function loggedIn() {
  const c = new RawWs(srv.http_port);
  await c.login("abuser", srv.users["abuser@localhost"]);
  return c;
}

// The stream error a raw session gets, and how long after `t0`.
async function refusal(c, t0, ms) {
  const cond = await c.streamError(ms);
  return { cond, ms: Date.now() - t0 };
}

test("ws: an upgrade that does not offer the xmpp subprotocol gets 501", async () => {
  for (const protocols of [[], ["chat"], ["xmpp-framing", "mqtt"]]) {
    const t0 = Date.now();
    const c = new RawWs(srv.http_port, protocols);
    try {
      const status = await c.upgrade;
      assert.equal(status, 501, `protocols ${JSON.stringify(protocols)}: upgrade ended with ${status}`);
      assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    } finally {
      c.close();
    }
  }
  // Offered among others, xmpp is chosen.
  const c = new RawWs(srv.http_port, ["chat", "xmpp"]);
  try {
    assert.equal(await c.upgrade, 101);
    assert.equal(c.ws.protocol, "xmpp");
  } finally {
    c.close();
  }
  await bystanderReceives();
});

test("ws: a frame announcing 10 MiB is refused at its header, before its payload", async () => {
  const c = await loggedIn();
  try {
    const t0 = Date.now();
    // The header and 1 KiB: the rest of the 10 MiB is never sent, so only a
    // refusal at the header can answer.
    writeRaw(c, wsFrame({ len: 10 << 20, payload: Buffer.alloc(1024, "A") }));
    const r = await refusal(c, t0, 3000);
    assert.equal(r.cond, "policy-violation");
    assert.ok(r.ms < 2000, `refused after ${r.ms} ms`);
    await c.closed;
  } finally {
    c.close();
  }
  await bystanderReceives();
});

test("ws: fragments are counted together, refused at the header that crosses the cap", async () => {
  const c = await loggedIn();
  try {
    const t0 = Date.now();
    const part = Buffer.alloc(MAX_STANZA * 0.8, "A");
    writeRaw(c, wsFrame({ fin: false, opcode: 1, payload: Buffer.concat([Buffer.from("<message><body>"), part]) }));
    // Each fragment is under the cap; the two together are not. Only the
    // second one's header is sent.
    writeRaw(c, wsFrame({ fin: true, opcode: 0, len: part.length, payload: Buffer.alloc(0) }));
    const r = await refusal(c, t0, 3000);
    assert.equal(r.cond, "policy-violation");
    // Well before the message timeout: refused for its size, not its delay.
    assert.ok(r.ms < (MESSAGE_TIMEOUT_S * 1000) / 2, `refused after ${r.ms} ms`);
    await c.closed;
  } finally {
    c.close();
  }
  await bystanderReceives();
});

test("ws: a message finished in time passes; one left unfinished is closed after ws_message_timeout_secs", async () => {
  // A fragmented message with pings between its fragments, all within the
  // timeout, is an ordinary message.
  const ok = await loggedIn();
  try {
    const iq = Buffer.from("<iq type='get' id='frag1' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>");
    writeRaw(ok, wsFrame({ fin: false, opcode: 1, payload: iq.subarray(0, 20) }));
    await sleep(300);
    writeRaw(ok, wsFrame({ fin: true, opcode: 9, payload: Buffer.from("p") }));
    writeRaw(ok, wsFrame({ fin: false, opcode: 0, payload: iq.subarray(20, 40) }));
    await sleep(300);
    writeRaw(ok, wsFrame({ fin: true, opcode: 0, payload: iq.subarray(40) }));
    const res = await ok.next((el) => el.getAttribute("id") === "frag1");
    assert.equal(res.getAttribute("type"), "result", ok.dump());
  } finally {
    ok.close();
  }

  const cases = {
    "a first fragment, then nothing": () =>
      wsFrame({ fin: false, opcode: 1, payload: Buffer.from("<message><body>never") }),
    "half a frame, then nothing": () => wsFrame({ fin: true, opcode: 1, len: 200, payload: Buffer.alloc(100, "x") }),
    "half a frame header, then nothing": () => wsFrame({ len: 200, payload: Buffer.alloc(0) }).subarray(0, 3),
  };
  for (const [what, bytes] of Object.entries(cases)) {
    const c = await loggedIn();
    try {
      const t0 = Date.now();
      writeRaw(c, bytes());
      const r = await refusal(c, t0, MESSAGE_TIMEOUT_S * 1000 + 3000);
      assert.equal(r.cond, "policy-violation", what);
      assert.ok(
        r.ms >= MESSAGE_TIMEOUT_S * 1000 - 300 && r.ms < MESSAGE_TIMEOUT_S * 1000 + 2000,
        `${what}: refused after ${r.ms} ms`,
      );
      await c.closed;
    } finally {
      c.close();
    }
  }
  await bystanderReceives();
});

test("bosh: requests are taken in rid order; a repeat gets its answer again", async () => {
  const b = new RawBosh(srv.http_port);
  try {
    await b.login("abuser", srv.users["abuser@localhost"]);
    const to = bystander.jid.toString();
    const msg = (body) => `<message to='${to}' type='chat' xmlns='jabber:client'><body>${body}</body></message>`;
    const mark = `${Date.now()}`;
    const first = b.rid + 1;
    const second = b.rid + 2;
    b.rid = second;
    // The second request arrives first: it must wait for the first.
    const late = b.body(msg(`second ${mark}`), { rid: second });
    await sleep(300);
    const early = b.body(msg(`first ${mark}`), { rid: first });
    const [rLate] = await Promise.all([late, early]);
    const got1 = await nextMessage(bystander, (st) => st.getChildText("body")?.endsWith(mark), 5000);
    assert.equal(got1.getChildText("body"), `first ${mark}`);
    const got2 = await nextMessage(bystander, (st) => st.getChildText("body")?.endsWith(mark), 5000);
    assert.equal(got2.getChildText("body"), `second ${mark}`);
    // Sent again (its answer lost, say): the same answer, and the message is
    // not delivered twice.
    const again = await b.body(msg(`second ${mark}`), { rid: second });
    assert.equal(again.text, rLate.text);
    await b.body(msg(`third ${mark}`));
    const got3 = await nextMessage(bystander, (st) => st.getChildText("body")?.endsWith(mark), 5000);
    assert.equal(got3.getChildText("body"), `third ${mark}`);
    await b.terminate();
  } finally {
    b.agent.destroy();
  }
  await bystanderReceives();
});

test("bosh: a held request whose connection broke can be repeated (XEP-0124 §14.2)", async () => {
  const b = new RawBosh(srv.http_port);
  try {
    await b.login("abuser", srv.users["abuser@localhost"]);
    b.rid += 1;
    const rid = b.rid;
    // Held (nothing to send), and its connection cut under it.
    const xml = `<body xmlns='http://jabber.org/protocol/httpbind' rid='${rid}' sid='${b.sid}'/>`;
    const cut = new RawBosh(srv.http_port, new https.Agent({ keepAlive: false }));
    const held = cut.post(xml).catch((e) => e);
    await sleep(300);
    cut.agent.destroy();
    assert.ok((await held) instanceof Error, "the held request was not cut");
    // The repeat gets an answer at once, and the session goes on.
    const t0 = Date.now();
    const again = await b.post(xml);
    assert.notEqual(again.el?.getAttribute("type"), "terminate", again.text);
    assert.ok(Date.now() - t0 < 1000, `answered after ${Date.now() - t0} ms`);
    const to = bystander.jid.toString();
    const body = `after the repeat ${Date.now()}`;
    await b.body(`<message to='${to}' type='chat' xmlns='jabber:client'><body>${body}</body></message>`);
    await nextMessage(bystander, (st) => st.getChildText("body") === body, 5000);
    await b.terminate();
  } finally {
    b.agent.destroy();
  }
  await bystanderReceives();
});

test("bosh: a rid beyond the window ends the session with item-not-found", async () => {
  const b = new RawBosh(srv.http_port);
  try {
    await b.login("abuser", srv.users["abuser@localhost"]);
    const expected = b.rid + 1;
    const t0 = Date.now();
    const r = await b.body("", { rid: expected + 1000 });
    const ms = Date.now() - t0;
    assert.equal(r.el?.getAttribute("type"), "terminate", r.text);
    assert.equal(r.el?.getAttribute("condition"), "item-not-found", r.text);
    assert.ok(ms < 1000, `answered after ${ms} ms`);
    // The session is gone: even the expected rid finds nothing.
    const after = await b.body("", { rid: expected });
    assert.equal(after.el?.getAttribute("condition"), "item-not-found", after.text);
  } finally {
    b.agent.destroy();
  }
  await bystanderReceives();
});

test("bosh: a request without a rid is refused", { skip: TARGET !== "conclave" && "Conclave's choice" }, async () => {
  const b = new RawBosh(srv.http_port);
  try {
    await b.create();
    const r = await b.post(`<body xmlns='http://jabber.org/protocol/httpbind' sid='${b.sid}'/>`);
    assert.equal(r.el?.getAttribute("type"), "terminate", r.text);
    assert.equal(r.el?.getAttribute("condition"), "bad-request", r.text);
  } finally {
    b.agent.destroy();
  }
  await bystanderReceives();
});
