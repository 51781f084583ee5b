// A client library exactly as shipped, as a new user runs it: no TLS or
// transport options, certificates verified by Node's own trust store (the
// parent points NODE_EXTRA_CA_CERTS at the server's certificate, as a user
// who trusts it would). Run as a child process so that none of the test
// suite's settings (NODE_TLS_REJECT_UNAUTHORIZED) reach it.
//
//   node stock_client.mjs xmpp|strophe SERVICE JID PASSWORD
// Prints one JSON line: {ok, jid, ms} or {ok: false, error}.
import WebSocket from "ws";
import XHR2 from "xhr2";

// Node 20 lacks the browser globals these libraries expect; a browser has
// them. This is the platform, not a setting of the libraries.
globalThis.WebSocket ??= WebSocket;

const [lib, service, jid, password] = process.argv.slice(2);
let t0 = Date.now();
let loginMs = null;
const done = (r) => {
  process.stdout.write(JSON.stringify({ ...r, ms: loginMs ?? Date.now() - t0, total: Date.now() - t0 }) + "\n");
  process.exit(0);
};
setTimeout(() => done({ ok: false, error: "no session within 20s" }), 20000).unref();

if (lib === "xmpp") {
  const { client } = await import("@xmpp/client");
  const [username, domain] = jid.split("@");
  t0 = Date.now(); // from the first byte, not from loading the library
  const c = client({ service, domain, username, password });
  c.on("error", (e) => done({ ok: false, error: String(e) }));
  c.on("online", async (address) => {
    loginMs = Date.now() - t0;
    const bound = address.toString();
    await c.stop().catch(() => {});
    done({ ok: true, jid: bound });
  });
  c.start().catch((e) => done({ ok: false, error: String(e) }));
} else if (lib === "strophe") {
  class XMLHttpRequestWithXML extends XHR2 {
    get responseXML() {
      if (this.readyState !== 4 || !this.responseText || !globalThis.DOMParser) return null;
      return new globalThis.DOMParser().parseFromString(this.responseText, "text/xml");
    }
  }
  globalThis.XMLHttpRequest ??= XMLHttpRequestWithXML;
  const { Strophe } = await import("strophe.js");
  t0 = Date.now();
  const conn = new Strophe.Connection(service);
  conn.connect(jid, password, (status, cond) => {
    if (status === Strophe.Status.CONNECTED) {
      loginMs = Date.now() - t0;
      const bound = conn.jid;
      conn.disconnect();
      done({ ok: true, jid: bound });
    } else if ([Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.ERROR].includes(status)) {
      done({ ok: false, error: `status ${status} ${cond ?? ""}` });
    }
  });
} else {
  done({ ok: false, error: `unknown library ${lib}` });
}
