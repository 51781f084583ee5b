// Bad WebSocket and BOSH input, each refused at once, while a bystander
// logged in with @xmpp/client goes on receiving messages.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { startServer, TARGET } from "./lib/server.mjs";
import { wsLogin, wsClose, nextMessage, xml } from "./lib/xmpp.mjs";
import { RawWs, wsFrame, writeRaw } from "./lib/raw.mjs";

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
