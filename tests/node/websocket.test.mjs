// RFC 7395 XMPP over WebSocket with @xmpp/client.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { wsLogin, wsClose, nextMessage, xml } from "./lib/xmpp.mjs";

let srv;

before(async () => {
  srv = await startServer(["wsalice", "wsbob"]);
});

after(async () => {
  if (srv) await srv.stop();
});

const cred = (name) => [`${name}@localhost`, srv.users[`${name}@localhost`]];

test("websocket: log in and bind a resource", async () => {
  const c = await wsLogin(srv, ...cred("wsalice"), "ws1");
  try {
    assert.equal(c.jid.bare().toString(), "wsalice@localhost");
    assert.equal(c.jid.resource, "ws1");
  } finally {
    await wsClose(c);
  }
});

test("websocket: roster get", async () => {
  const c = await wsLogin(srv, ...cred("wsalice"));
  try {
    await c.iqCaller.set(
      xml("query", { xmlns: "jabber:iq:roster" }, xml("item", { jid: "wsbob@localhost", name: "Bob" })),
    );
    const res = await c.iqCaller.get(xml("query", { xmlns: "jabber:iq:roster" }));
    const items = res.getChildren("item").map((i) => i.attrs.jid);
    assert.ok(items.includes("wsbob@localhost"), `roster: ${res.toString()}`);
  } finally {
    await wsClose(c);
  }
});

test("websocket: ping the server", async () => {
  const c = await wsLogin(srv, ...cred("wsbob"));
  try {
    const res = await c.iqCaller.request(
      xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
    );
    assert.equal(res.attrs.type, "result");
  } finally {
    await wsClose(c);
  }
});

test("websocket: message between two users", async () => {
  const a = await wsLogin(srv, ...cred("wsalice"), "a");
  const b = await wsLogin(srv, ...cred("wsbob"), "b");
  try {
    await a.send(xml("presence"));
    await b.send(xml("presence"));
    const body = `hello over websocket ${Date.now()}`;
    await a.send(xml("message", { to: "wsbob@localhost", type: "chat" }, xml("body", {}, body)));
    const m = await nextMessage(b, (s) => s.getChildText("body") === body);
    assert.equal(m.attrs.from, "wsalice@localhost/a");
    await b.send(xml("message", { to: m.attrs.from, type: "chat" }, xml("body", {}, "pong")));
    const r = await nextMessage(a, (s) => s.getChildText("body") === "pong");
    assert.equal(r.attrs.from, "wsbob@localhost/b");
  } finally {
    await wsClose(a);
    await wsClose(b);
  }
});

test("websocket: wrong password is rejected", async () => {
  await assert.rejects(wsLogin(srv, "wsalice@localhost", "definitely-wrong"), (err) => {
    assert.match(String(err.condition || err.message), /not-authorized/);
    return true;
  });
});
