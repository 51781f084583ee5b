// The embedding API (/external_api.js) from a page on another origin, in
// Debian's Chromium against the real server: a plain site on 127.0.0.1
// loads the script with a <script> tag and embeds a meeting without the
// pre-join screen; a second participant joins through the normal page.
// The site sees the meeting's events and drives it with commands; a frame
// of a third origin cannot; the home page cannot be framed at all.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";

import { LOOPBACK, startServer, TARGET, withTimeout } from "./lib/server.mjs";
import { join, launch, openPage, until } from "./lib/browser.mjs";

const skip = TARGET !== "conclave" && "the embedding API is Conclave's web client's";

/** A GET's status and headers, certificate unchecked (self-signed). */
function headersOf(port, path) {
  return new Promise((ok, fail) => {
    const req = https.get({ host: LOOPBACK, port, path, rejectUnauthorized: false, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => ok({ status: res.statusCode, headers: res.headers }));
    });
    req.on("error", fail);
    req.on("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
  });
}

/** The embedding site: its page, and (under another host name) a frame that tries to command the meeting. */
function site(meetHost) {
  const page = (room) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Embedding site</title>
<script src="https://${meetHost}/external_api.js"></script></head>
<body><h1>Our intranet</h1><div id="meet"></div>
<script>
  window.events = [];
  window.addEventListener("message", (e) => { if (e.data === "evil-done") window.evilDone = true; });
  const api = new ConclaveMeetExternalAPI(${JSON.stringify(meetHost)}, {
    roomName: ${JSON.stringify(room)},
    parentNode: document.getElementById("meet"),
    width: 900,
    height: 600,
    userInfo: { displayName: "Embedded Ann" },
    configOverwrite: { prejoinPageEnabled: false },
  });
  for (const name of ["videoConferenceJoined", "videoConferenceLeft", "participantJoined", "participantLeft",
    "displayNameChange", "audioMuteStatusChanged", "videoMuteStatusChanged", "incomingMessage", "outgoingMessage",
    "readyToClose", "tileViewChanged", "chatUpdated", "errorOccurred"]) {
    api.on(name, (data) => window.events.push({ name, data }));
  }
  window.api = api;
  window.meetHost = ${JSON.stringify(meetHost)};
</script></body></html>`;
  // Posts commands to the meeting frame (the site's first frame) from
  // another origin, in the API's own envelope, then tells the site.
  const evil = `<!doctype html><html lang="en"><head><title>Other</title></head><body><script>
  const meeting = parent.frames[0];
  const cmd = (name, args = []) => ({ tag: "conclave-meet-api", apiId: "0", kind: "command", name, args });
  for (const m of [cmd("toggleAudio"), cmd("sendChatMessage", ["from the other origin"]), cmd("hangup")]) meeting.postMessage(m, "*");
  parent.postMessage("evil-done", "*");
</script></body></html>`;
  return http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(page(url.searchParams.get("room") ?? "x"));
    } else if (url.pathname === "/evil.html") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(evil);
    } else {
      res.writeHead(204);
      res.end();
    }
  });
}

test("embedding API: a meeting embedded by another origin's page, its events and commands, and no framing elsewhere", { skip, timeout: 90000 }, async () => {
  const started = Date.now();
  const srv = await startServer();
  const meetHost = `localhost:${srv.http_port}`;
  const origin = `https://${meetHost}`;
  const server = site(meetHost);
  await new Promise((ok) => server.listen(0, LOOPBACK, ok));
  const sitePort = server.address().port;
  const siteOrigin = `http://${LOOPBACK}:${sitePort}`;
  // The same little server under another name: another origin.
  const otherOrigin = `http://localhost:${sitePort}`;
  const browser = await launch();
  const outside = [];
  const room = `embed${Date.now()}`;
  try {
    // What the server says about framing and about the script.
    const home = await headersOf(srv.http_port, "/");
    assert.match(home.headers["content-security-policy"], /frame-ancestors 'none'$/);
    const chat = await headersOf(srv.http_port, "/chat");
    assert.match(chat.headers["content-security-policy"], /frame-ancestors 'none'$/);
    const meeting = await headersOf(srv.http_port, `/${room}`);
    assert.match(meeting.headers["content-security-policy"], /frame-ancestors \*$/, "meeting pages may be framed (the default)");
    const script = await headersOf(srv.http_port, "/external_api.js");
    assert.equal(script.status, 200);
    assert.equal(script.headers["content-type"], "text/javascript; charset=utf-8");
    assert.equal(script.headers["cache-control"], "no-cache");
    assert.equal(script.headers["access-control-allow-origin"], "*");

    // The site, in a browser that may reach only the site, the other
    // origin and the meeting server.
    const { page, errors } = await openPage(browser, siteOrigin, `/?room=${room}`, outside, { alsoAllowed: [origin, otherOrigin] });
    const events = (name) => page.evaluate((n) => window.events.filter((e) => e.name === n).map((e) => e.data), name);

    const frame = page.locator("#meet iframe");
    assert.equal(await frame.getAttribute("title"), `Meeting ${room}`);
    assert.match(await frame.getAttribute("allow"), /camera; microphone; display-capture/);
    const src = await frame.getAttribute("src");
    assert.ok(src.startsWith(`${origin}/${room}#conclave_api_id=%220%22&parentOrigin=`), src);

    // No pre-join screen: joined straight away, under the name given.
    const [joined] = await until(() => events("videoConferenceJoined").then((e) => (e.length ? e : null)), 30000, "videoConferenceJoined");
    assert.equal(joined.roomName, room);
    assert.equal(joined.displayName, "Embedded Ann");
    assert.ok(joined.id, "the local participant's id");
    assert.equal(await page.evaluate(() => window.api.isAudioMuted()), false);

    // Someone joins through the normal page: the site is told, by name.
    const bob = await withTimeout(join(browser, origin, room, "Bob", outside), 30000, "Bob joining");
    const bobId = await bob.page.evaluate(() => window.conclave.store.localId.value);
    const [came] = await until(() => events("participantJoined").then((e) => (e.length ? e : null)), 15000, "participantJoined");
    assert.deepEqual({ id: came.id, displayName: came.displayName }, { id: bobId, displayName: "Bob" });
    const info = await page.evaluate(() => window.api.getParticipantsInfo());
    assert.deepEqual(
      info.map((p) => [p.participantId, p.displayName]),
      [
        [joined.id, "Embedded Ann"],
        [bobId, "Bob"],
      ],
    );
    await until(
      () => bob.page.evaluate((id) => window.conclave.store.peers.value.get(id)?.name === "Embedded Ann", joined.id),
      15000,
      "Bob sees the embedded participant",
    );

    // A frame of a third origin posts commands to the meeting: ignored.
    await page.evaluate((src) => {
      const f = document.createElement("iframe");
      f.title = "Another site";
      f.src = src;
      document.body.append(f);
    }, `${otherOrigin}/evil.html`);
    await until(() => page.evaluate(() => window.evilDone === true), 10000, "the other origin's frame posting");
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await events("audioMuteStatusChanged"), [], "a command from another origin was obeyed");
    assert.deepEqual(await events("videoConferenceLeft"), []);
    assert.equal(await page.evaluate(() => window.api.isAudioMuted()), false);

    // The site mutes its participant: it is told, and Bob sees the mute.
    await page.evaluate(() => window.api.executeCommand("toggleAudio"));
    await until(() => events("audioMuteStatusChanged").then((e) => e.length > 0), 10000, "audioMuteStatusChanged");
    assert.deepEqual(await events("audioMuteStatusChanged"), [{ muted: true }]);
    assert.equal(await page.evaluate(() => window.api.isAudioMuted()), true);
    await until(
      () => bob.page.evaluate((id) => window.conclave.store.peers.value.get(id)?.audioMuted === true, joined.id),
      10000,
      "Bob sees the embedded participant muted",
    );

    // Chat both ways.
    await page.evaluate(() => window.api.executeCommand("sendChatMessage", "Hello from the intranet"));
    await until(
      () => bob.page.evaluate(() => window.conclave.store.chat.value.some((m) => m.text === "Hello from the intranet" && m.fromName === "Embedded Ann")),
      10000,
      "Bob gets the embedded participant's message",
    );
    await bob.page.evaluate(() => window.conclave.store.sendChat("Hi from Bob"));
    const [msg] = await until(
      () => events("incomingMessage").then((e) => {
        const m = e.filter((x) => x.message === "Hi from Bob");
        return m.length ? m : null;
      }),
      10000,
      "incomingMessage",
    );
    assert.deepEqual({ ...msg, stamp: undefined }, { from: bobId, nick: "Bob", message: "Hi from Bob", privateMessage: false, stamp: undefined });
    assert.deepEqual(await events("outgoingMessage"), [{ message: "Hello from the intranet", privateMessage: false }]);
    // The other origin's message never went out.
    assert.equal(await bob.page.evaluate(() => window.conclave.store.chat.value.some((m) => m.text === "from the other origin")), false);

    // The home page refuses to be framed, in the browser too.
    await page.evaluate((src) => {
      const f = document.createElement("iframe");
      f.name = "home";
      f.title = "Home";
      f.src = src;
      document.body.append(f);
    }, `${origin}/`);
    await new Promise((r) => setTimeout(r, 1000));
    const homeFrame = page.frame({ name: "home" });
    assert.ok(homeFrame, "the home frame");
    assert.ok(!homeFrame.url().startsWith(origin), `the home page was framed: ${homeFrame.url()}`);
    assert.equal(await homeFrame.getByRole("heading", { name: "Start a meeting" }).count(), 0);

    // Hanging up: left, and ready to close; Bob sees the participant go.
    await page.evaluate(() => window.api.executeCommand("hangup"));
    await until(() => events("readyToClose").then((e) => e.length > 0), 10000, "readyToClose");
    assert.deepEqual(await events("videoConferenceLeft"), [{ roomName: room }]);
    // The end screen inside the frame offers to rejoin, never the home page
    // (which refuses framing: it would leave a broken frame).
    const meetFrame = page.frameLocator("#meet iframe");
    await meetFrame.getByRole("button", { name: "Rejoin" }).waitFor({ timeout: 10000 });
    assert.equal(await meetFrame.getByRole("link", { name: "Go to the home page" }).count(), 0);
    await until(
      () => bob.page.evaluate((id) => !window.conclave.store.peers.value.has(id), joined.id),
      15000,
      "Bob sees the embedded participant leave",
    );
    assert.deepEqual(await page.evaluate(() => window.api.getParticipantsInfo()), []);
    await page.evaluate(() => window.api.dispose());
    assert.equal(await page.locator("#meet iframe").count(), 0);

    // Bob, alone and moderator now, locks the meeting. The site embeds it
    // again: told it is locked, it gives the password, and is in.
    const lockErr = await bob.page.evaluate(() => window.conclave.store.setPassword("s3cret").then(() => null, (e) => `${e} ${e?.toString?.()} moderator=${window.conclave.store.isModerator.value}`));
    assert.equal(lockErr, null, "Bob locking the meeting");
    await page.evaluate((room) => {
      window.events = [];
      window.api = new ConclaveMeetExternalAPI(window.meetHost, {
        roomName: room,
        parentNode: document.getElementById("meet"),
        userInfo: { displayName: "Embedded Ann" },
        configOverwrite: { prejoinPageEnabled: false },
      });
      for (const name of ["errorOccurred", "videoConferenceJoined"]) window.api.on(name, (data) => window.events.push({ name, data }));
    }, room);
    const [locked] = await until(() => events("errorOccurred").then((e) => (e.length ? e : null)), 30000, "errorOccurred for the locked meeting");
    assert.deepEqual(
      { name: locked.name, type: locked.type, isFatal: locked.isFatal },
      { name: "conference.authenticationRequired", type: "CONFERENCE", isFatal: false },
    );
    await page.evaluate(() => window.api.executeCommand("password", "s3cret"));
    await until(() => events("videoConferenceJoined").then((e) => e.length > 0), 30000, "joining with the password");
    assert.equal((await events("errorOccurred")).length, 1);

    assert.deepEqual(outside, [], "something was fetched from outside the site and the server");
    // The one error logged is the browser refusing to frame the home page.
    const refusal = (e) => e.startsWith(`Framing '${origin}/' violates`) && e.includes(`"frame-ancestors 'none'"`);
    assert.equal(errors.filter(refusal).length, 1, errors.join("\n"));
    assert.deepEqual(errors.filter((e) => !refusal(e)), []);
    assert.deepEqual(bob.errors, []);
    console.log(`embedding test: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await browser.close();
    await new Promise((ok) => server.close(ok));
    await srv.stop();
  }
});
