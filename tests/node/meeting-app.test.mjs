// The web client as people use it, in Debian's Chromium against the real
// server: the home page, the pre-join screen, a meeting of three with chat,
// private messages, hands, reactions and a screen share, and what it says
// when something is wrong. Every main screen is checked with axe-core and
// photographed at desktop size and at 360 px (target/screenshots/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import jsQR from "jsqr";

import { startServer, TARGET, withTimeout } from "./lib/server.mjs";
import {
  audioEnergy,
  axeViolations,
  join,
  knockAt,
  launch,
  openPage,
  playingRemoteVideos,
  screenshots,
  until,
} from "./lib/browser.mjs";

const skip = TARGET !== "conclave" && "the web client is Conclave's";

async function noViolations(page, screen) {
  const v = await axeViolations(page);
  assert.deepEqual(v, [], `axe on the ${screen}`);
  assert.equal(await screenshots(page, screen), 0, `the ${screen} is wider than a 360 px phone`);
}

test("web client: home page, pre-join screen, bad room names, a refused camera, no microphone, a server that is down", { skip }, async () => {
  const srv = await startServer();
  const browser = await launch();
  const strict = await launch([], { askUser: true });
  const outside = [];
  const origin = `https://localhost:${srv.http_port}`;
  let stopped = false;
  try {
    // A stranger opens the server's address.
    const home = await openPage(browser, origin, "/", outside);
    await home.page.getByRole("heading", { name: "Start a meeting" }).waitFor();
    await noViolations(home.page, "home");
    // A name that cannot be a room is refused on the spot, with why.
    await home.page.getByLabel("Meeting name or link").fill("lunch@noon");
    await home.page.getByRole("button", { name: "Join", exact: true }).click();
    const alert = await home.page.getByRole("alert").textContent();
    assert.match(alert, /can't contain/);
    assert.equal(new URL(home.page.url()).pathname, "/");
    // Starting a meeting goes to a fresh, hard-to-guess name.
    await home.page.getByRole("button", { name: "Start a new meeting" }).click();
    await home.page.waitForURL(/\/[0-9a-z]{4}(-[0-9a-z]{4}){3}$/);
    const room = new URL(home.page.url()).pathname.slice(1);

    // The pre-join screen: own camera moving, devices listed, the level meter moving.
    const pre = home.page;
    await pre.getByRole("heading", { name: `Join ${room}` }).waitFor();
    await until(
      () => pre.evaluate(() => document.querySelector("video")?.videoWidth > 0),
      15000,
      "the camera preview",
    );
    await pre.getByLabel("Camera", { exact: true }).waitFor();
    await pre.getByLabel("Microphone", { exact: true }).waitFor();
    await until(
      () => pre.evaluate(() => Number(document.querySelector("meter")?.value ?? 0) > 0.05),
      15000,
      "the microphone level meter moving",
    );
    await pre.getByLabel("Your name").fill("Zoë");
    await noViolations(pre, "prejoin");

    // An address that cannot be a meeting says so, with a way on.
    const bad = await openPage(browser, origin, "/lunch%20at%20noon", outside);
    await bad.page.getByRole("heading", { name: "This meeting name can't be used" }).waitFor();
    assert.match(await bad.page.textContent("main"), /“lunch at noon”/);
    await noViolations(bad.page, "bad-room");

    // A refused camera: explained, and joining with the microphone alone works.
    const refused = await openPage(strict, origin, `/${room}?name=Yann`, outside, { permissions: ["microphone"] });
    const why = refused.page.getByRole("alert");
    await why.waitFor({ timeout: 15000 });
    assert.match(await why.textContent(), /Access to your camera is blocked/);
    assert.match(await why.textContent(), /You can still join/);
    await refused.page.getByRole("button", { name: "Join meeting" }).click();
    await refused.page.evaluate(() => window.conclave.ready.then(() => undefined));
    await refused.page.getByRole("navigation", { name: "Meeting controls" }).waitFor();
    assert.equal(
      await refused.page.getByRole("button", { name: "Turn camera off" }).isDisabled(),
      true,
      "no camera to turn off",
    );
    // This server takes no files from guests (its default): no button that would fail.
    await refused.page.getByRole("button", { name: "Chat" }).click();
    await refused.page.getByLabel("Message", { exact: true }).waitFor();
    assert.equal(await refused.page.getByRole("button", { name: "Attach a file" }).count(), 0);

    // A computer with no microphone (nor camera): said so, and joining to
    // watch and chat still works.
    const bare = await launch([], { devices: false });
    try {
      const none = await openPage(bare, origin, `/${room}?name=Zoe`, outside);
      const missing = none.page.getByRole("alert");
      await missing.waitFor({ timeout: 15000 });
      assert.match(await missing.textContent(), /No microphone was found\. Plug one in/);
      assert.match(await missing.textContent(), /You can still join/);
      await none.page.getByRole("button", { name: "Join meeting" }).click();
      await none.page.evaluate(() => window.conclave.ready.then(() => undefined));
      assert.equal(await none.page.getByRole("button", { name: "Mute microphone" }).isDisabled(), true, "no microphone to mute");
      assert.deepEqual(none.errors, []);
    } finally {
      await bare.close();
    }

    // The server goes down under a waiting pre-join screen: joining says so.
    const late = await openPage(browser, origin, `/${room}?name=Xavier`, outside);
    await late.page.getByRole("button", { name: "Join meeting" }).waitFor();
    assert.deepEqual([...home.errors, ...refused.errors], []);
    await srv.stop();
    stopped = true;
    // Yann, in the meeting, is told the connection is lost and being retried.
    await refused.page.getByRole("status").filter({ hasText: "Reconnecting" }).waitFor({ timeout: 15000 });
    await late.page.getByRole("button", { name: "Join meeting" }).click();
    await late.page.getByRole("heading", { name: "You could not join the meeting" }).waitFor({ timeout: 30000 });
    await late.page.getByRole("button", { name: "Try again" }).waitFor();
    await noViolations(late.page, "join-failed");

    assert.deepEqual(outside, [], "the page fetched something from outside the server");
    // The bad name's page comes with a 404 status, which the browser logs.
    assert.deepEqual(bad.errors, ["Failed to load resource: the server responded with a status of 404 (Not Found)"]);
  } finally {
    await browser.close();
    await strict.close();
    if (!stopped) await srv.stop();
  }
});

/** Presses or releases a toggle button as needed. */
async function setPressed(page, name, pressed) {
  const button = page.getByRole("button", { name, exact: typeof name === "string" });
  if ((await button.getAttribute("aria-pressed")) !== String(pressed)) await button.click();
  assert.equal(await button.getAttribute("aria-pressed"), String(pressed));
}

function chatText(page) {
  return page.locator(".chat-log").textContent();
}

test("web client: three in a meeting see and hear each other, chat in the room and privately, raise a hand, react, share a screen; a latecomer gets the history", { skip }, async () => {
  const srv = await startServer([], { "upload.guest_quota_bytes": 1_000_000 });
  const browser = await launch(["--auto-select-desktop-capture-source=Entire screen"]);
  const outside = [];
  const origin = `https://localhost:${srv.http_port}`;
  const room = `App${Date.now()}`;
  try {
    const a = await withTimeout(join(browser, origin, room, "Alice", outside), 30000, "Alice joining");

    // Alone, Alice is offered to invite people: the meeting's link to copy,
    // and as a QR code that decodes (jsQR) to the same link.
    await a.page.getByText("You are the only one here.").waitFor({ timeout: 10000 });
    await a.page.getByRole("button", { name: "Invite people" }).click();
    const link = `${origin}/${room.toLowerCase()}`;
    assert.equal(await a.page.getByLabel("Meeting link").inputValue(), link);
    // For this origin, the list replaces what the context had: camera and microphone stay.
    await a.ctx.grantPermissions(["camera", "microphone", "clipboard-read", "clipboard-write"], { origin });
    await a.page.getByRole("button", { name: "Copy link" }).click();
    await a.page.getByText("Link copied.").waitFor();
    assert.equal(await a.page.evaluate(() => navigator.clipboard.readText()), link);
    await a.page.getByRole("button", { name: "QR code" }).click();
    const qr = a.page.getByRole("img", { name: `QR code of the meeting link ${link}` });
    await qr.waitFor();
    const pixels = await qr.evaluate((canvas) => {
      // Scaled up without smoothing, as a camera would see it on screen.
      const scale = 8;
      const c = new OffscreenCanvas(canvas.width * scale, canvas.height * scale);
      const g = c.getContext("2d");
      g.imageSmoothingEnabled = false;
      g.drawImage(canvas, 0, 0, c.width, c.height);
      const d = g.getImageData(0, 0, c.width, c.height);
      return { w: d.width, h: d.height, data: [...d.data] };
    });
    assert.equal(jsQR(Uint8ClampedArray.from(pixels.data), pixels.w, pixels.h)?.data, link, "the QR code's link");
    await noViolations(a.page, "meeting-invite");
    await a.page.getByRole("button", { name: "Participants" }).click();

    const b = await withTimeout(join(browser, origin, room, "Bob", outside), 30000, "Bob joining");
    const c = await withTimeout(join(browser, origin, room, "Carol", outside), 30000, "Carol joining");
    const ids = await Promise.all([a, b, c].map((p) => p.page.evaluate(() => window.conclave.conference.endpointId)));
    const [ia, ib, ic] = ids;

    // Each sees the two others' cameras moving, and hears them.
    for (const [p, others, who] of [
      [a, [ib, ic], "Alice"],
      [b, [ia, ic], "Bob"],
      [c, [ia, ib], "Carol"],
    ]) {
      await until(async () => {
        const playing = await playingRemoteVideos(p.page);
        return others.every((id) => playing.includes(id));
      }, 30000, `${who} sees both others`);
      await until(async () => (await audioEnergy(p.page)) > 0, 15000, `${who} hears the others`);
    }
    // Tiles are named.
    await a.page.getByRole("figure").filter({ hasText: "Bob" }).waitFor();

    // Carol turns her camera off: the device is released (its light goes
    // out), the others stop drawing her video; on again, they see it move.
    await c.page.getByRole("button", { name: "Turn camera off" }).click();
    await until(
      () => c.page.evaluate(() => window.conclave.store.localStream.value?.getVideoTracks()[0]?.readyState === "ended"),
      5000,
      "Carol's camera released",
    );
    await until(async () => !(await playingRemoteVideos(a.page)).includes(ic), 10000, "Carol's video gone for Alice");
    await c.page.getByRole("button", { name: "Turn camera off" }).click();
    await until(async () => (await playingRemoteVideos(a.page)).includes(ic), 15000, "Carol's video back for Alice");
    assert.equal(await c.page.evaluate(() => window.conclave.store.localStream.value?.getVideoTracks()[0]?.readyState), "live");

    // Room chat, both ways; Bob is told there is something unread.
    await a.page.getByRole("button", { name: "Chat" }).click();
    await a.page.getByLabel("Message", { exact: true }).fill("Hello from Alice");
    await a.page.getByLabel("Message", { exact: true }).press("Enter");
    await b.page.getByRole("button", { name: /Chat.*1 unread message/ }).waitFor({ timeout: 10000 });
    await b.page.getByRole("button", { name: /Chat/ }).click();
    await until(async () => (await chatText(b.page)).includes("Hello from Alice"), 10000, "Bob gets Alice's message");
    assert.match(await chatText(b.page), /Alice.*Hello from Alice/s);
    await b.page.getByLabel("Message", { exact: true }).fill("Hi Alice, Bob here");
    await b.page.getByRole("button", { name: "Send", exact: true }).click();
    await until(async () => (await chatText(a.page)).includes("Hi Alice, Bob here"), 10000, "Alice gets Bob's reply");

    // A private message from Bob to Carol, started from the participants list.
    await b.page.getByRole("button", { name: "Participants" }).click();
    await b.page.getByRole("button", { name: "Message Carol privately" }).click();
    await b.page.getByLabel("Message", { exact: true }).fill("Just between us");
    await b.page.getByLabel("Message", { exact: true }).press("Enter");
    await c.page.getByRole("button", { name: /Chat/ }).click();
    await until(async () => (await chatText(c.page)).includes("Just between us"), 10000, "Carol gets Bob's private message");
    assert.match(await chatText(c.page), /Private message to you/);
    assert.match(await chatText(b.page), /Private message to Carol/);

    // Guests share files where the operator gave them a quota: Carol's
    // reaches everyone, byte for byte.
    const agenda = Buffer.from("1. budget\n2. lunch\n".repeat(40));
    await c.page.locator(".chat input[type=file]").setInputFiles({ name: "agenda.txt", mimeType: "text/plain", buffer: agenda });
    await c.page.locator(".chat").getByText("Sent").waitFor({ timeout: 15000 });
    const agendaLink = b.page.locator(".chat").getByRole("link", { name: "Download agenda.txt" });
    await agendaLink.waitFor({ timeout: 10000 });
    const [dl] = await Promise.all([b.page.waitForEvent("download"), agendaLink.click()]);
    assert.deepEqual(readFileSync(await dl.path()), agenda);

    // Carol raises her hand: the others see it on her tile and in the list.
    await c.page.getByRole("button", { name: "Raise hand" }).click();
    await a.page.getByRole("button", { name: "Participants" }).click();
    const carolRow = a.page.locator(`.people li[data-endpoint="${ic}"]`);
    await carolRow.getByRole("img", { name: "Hand raised" }).waitFor({ timeout: 10000 });
    // Raised hands come first.
    assert.equal(await a.page.locator(".people li").nth(1).getAttribute("data-endpoint"), ic);
    await noViolations(a.page, "participants");

    // Bob sends a reaction over the bridge channel; Alice sees it with his name.
    await b.page.getByRole("button", { name: "Send a reaction" }).click();
    await b.page.getByRole("button", { name: "Thumbs up" }).click();
    await until(
      async () => (await a.page.locator(".reactions").textContent()).includes("👍 Bob"),
      10000,
      "Alice sees Bob's thumbs up",
    );

    // Alice shares her screen: it goes on the stage for Bob and Carol.
    await a.page.getByRole("button", { name: "Share screen" }).click();
    for (const [p, who] of [
      [b, "Bob"],
      [c, "Carol"],
    ]) {
      await until(
        () =>
          p.page.evaluate((id) => {
            const v = document.querySelector(`.stage .tile[data-video-type="desktop"] video[data-endpoint="${id}"]`);
            return v !== null && v.videoWidth > 0;
          }, ia),
        20000,
        `Alice's screen on ${who}'s stage`,
      );
    }
    await noViolations(b.page, "meeting-stage");
    await a.page.getByRole("button", { name: "Share screen" }).click();
    await until(
      () => b.page.evaluate((id) => document.querySelector(`.tile[data-endpoint="${id}"]`)?.dataset.videoType === "camera", ia),
      10000,
      "Alice back on camera for Bob",
    );
    // Back to tile view, chat open.
    await setPressed(b.page, "Stage view", false);
    await setPressed(b.page, /^Chat/, true);
    await noViolations(b.page, "meeting-chat");

    // A latecomer gets the room's history, but not the private message.
    const d = await withTimeout(join(browser, origin, room, "Dave", outside, "&media=none"), 30000, "Dave joining");
    await d.page.getByRole("button", { name: /Chat/ }).click();
    await until(async () => (await chatText(d.page)).includes("Hi Alice, Bob here"), 10000, "Dave gets the history");
    const history = await chatText(d.page);
    assert.match(history, /Alice.*Hello from Alice/s);
    assert.doesNotMatch(history, /Just between us/);

    // Bob leaves: he is told so, and his tile goes from Alice's view.
    await b.page.getByRole("button", { name: "Leave" }).click();
    await b.page.getByRole("heading", { name: "You left the meeting" }).waitFor();
    await until(
      () => a.page.evaluate((id) => !document.querySelector(`[data-endpoint="${id}"]`), ib),
      15000,
      "Bob's tile removed",
    );

    assert.deepEqual(outside, [], "the page fetched something from outside the server");
    assert.deepEqual([...a.errors, ...b.errors, ...c.errors, ...d.errors], []);
  } finally {
    await browser.close();
    await srv.stop();
  }
});

/**
 * Alice and Bob meet; Bob's XMPP WebSocket runs through the test, which cuts
 * it once both see each other. `after` gets them once Bob is back.
 */
async function dropBobsConnection(overrides, after) {
  const srv = await startServer([], overrides);
  const browser = await launch();
  const outside = [];
  const origin = `https://localhost:${srv.http_port}`;
  const room = `Drop${Date.now()}`;
  const sockets = [];
  const routeXmpp = (page) =>
    page.routeWebSocket(/\/xmpp-websocket$/, (ws) => {
      sockets.push({ ws, server: ws.connectToServer() });
    });
  try {
    const a = await withTimeout(join(browser, origin, room, "Alice", outside), 30000, "Alice joining");
    const b = await withTimeout(join(browser, origin, room, "Bob", outside, "", routeXmpp), 30000, "Bob joining");
    const ids = await Promise.all([a, b].map((p) => p.page.evaluate(() => window.conclave.conference.endpointId)));
    await until(async () => (await playingRemoteVideos(a.page)).includes(ids[1]), 30000, "Alice sees Bob");
    await a.page.getByRole("button", { name: "Chat" }).click();
    await b.page.getByRole("button", { name: "Chat" }).click();
    await b.page.getByLabel("Message", { exact: true }).fill("before the drop");
    await b.page.getByLabel("Message", { exact: true }).press("Enter");
    await until(async () => (await chatText(a.page)).includes("before the drop"), 10000, "Alice gets Bob's message");
    assert.equal(sockets.length, 1);

    // The network drops Bob's connection: both ends see it close.
    const loads = [];
    b.page.on("framenavigated", (f) => f === b.page.mainFrame() && loads.push(f.url()));
    sockets[0].server.close();
    await sockets[0].ws.close();
    await b.page.getByRole("status").filter({ hasText: "Reconnecting" }).waitFor({ timeout: 10000 });
    await until(() => b.page.evaluate(() => window.conclave.store.phase.value === "joined"), 30000, "Bob back in");
    assert.equal(await b.page.getByRole("status").filter({ hasText: "Reconnecting" }).count(), 0);
    assert.deepEqual(loads, [], "the page was not reloaded");
    await after({ a, b, ids, sockets });
    // Whatever happened, Bob's message shows once on each side.
    for (const p of [a, b]) assert.equal((await chatText(p.page)).split("before the drop").length - 1, 1);
    assert.deepEqual(outside, []);
    assert.deepEqual([...a.errors, ...b.errors].filter((e) => !e.includes("WebSocket")), []);
  } finally {
    await browser.close();
    await srv.stop();
  }
}

test("web client: a dropped connection is resumed (XEP-0198) without a reload: same participant, media on, chat on", { skip }, () =>
  dropBobsConnection({}, async ({ a, b, ids, sockets }) => {
    assert.equal(await b.page.evaluate(() => window.conclave.conference.endpointId), ids[1], "the same endpoint");
    assert.equal(sockets.length, 2, "one new WebSocket, which resumed the stream");
    await until(async () => (await playingRemoteVideos(a.page)).includes(ids[1]), 15000, "Alice still sees Bob");
    await until(async () => (await playingRemoteVideos(b.page)).includes(ids[0]), 15000, "Bob still sees Alice");
    await b.page.getByLabel("Message", { exact: true }).fill("after the drop");
    await b.page.getByLabel("Message", { exact: true }).press("Enter");
    await until(async () => (await chatText(a.page)).includes("after the drop"), 10000, "Bob's chat works again");
  }),
);

test("web client: where the server cannot resume, the participant rejoins by itself as a new endpoint, and the old one goes", { skip }, () =>
  dropBobsConnection({ "c2s.sm_resume_timeout_secs": 0 }, async ({ a, b, ids, sockets }) => {
    // One to try resuming, one for the new meeting session.
    assert.equal(sockets.length, 3);
    const bob2 = await b.page.evaluate(() => window.conclave.conference.endpointId);
    assert.notEqual(bob2, ids[1]);
    await until(async () => (await playingRemoteVideos(a.page)).includes(bob2), 30000, "Alice sees Bob again");
    await until(async () => (await playingRemoteVideos(b.page)).includes(ids[0]), 30000, "Bob sees Alice again");
    await until(async () => (await a.page.locator(`[data-endpoint="${ids[1]}"]`).count()) === 0, 15000, "Bob's old tile gone");
  }),
);

/** How much audio energy `page` receives over `ms`. */
async function energyOver(page, ms = 1500) {
  const e0 = await audioEnergy(page);
  await new Promise((r) => setTimeout(r, ms));
  return (await audioEnergy(page)) - e0;
}

test("web client: the moderator mutes someone (who can unmute), keeps a lobby, admits and turns away, locks with a password, removes someone, ends the meeting", { skip }, async () => {
  const srv = await startServer();
  const browser = await launch();
  const outside = [];
  const origin = `https://localhost:${srv.http_port}`;
  const room = `Mod${Date.now()}`;
  const pages = [];
  try {
    // Alice, first in, is the moderator (the focus's default).
    const a = await withTimeout(join(browser, origin, room, "Alice", outside), 30000, "Alice joining");
    const b = await withTimeout(join(browser, origin, room, "Bob", outside), 30000, "Bob joining");
    pages.push(a, b);
    const bob = await b.page.evaluate(() => window.conclave.conference.endpointId);
    await a.page.getByRole("button", { name: "Participants" }).click();
    await a.page.getByRole("heading", { name: "Moderator controls" }).waitFor({ timeout: 10000 });
    assert.equal(await b.page.getByRole("heading", { name: "Moderator controls" }).count(), 0);
    await until(async () => (await energyOver(a.page, 700)) > 0, 15000, "Alice hears Bob");

    // Muted by the moderator: Bob is told, his button says so, Alice hears nothing.
    await a.page.getByRole("button", { name: "Mute Bob" }).click();
    await b.page.getByRole("status").filter({ hasText: "A moderator muted your microphone" }).waitFor({ timeout: 10000 });
    assert.equal(await b.page.getByRole("button", { name: "Mute microphone" }).getAttribute("aria-pressed"), "true");
    await a.page.locator(`.people li[data-endpoint="${bob}"]`).getByRole("img", { name: "Microphone muted" }).waitFor();
    await until(async () => (await energyOver(a.page)) === 0, 10000, "Bob silent for Alice");
    // Bob may unmute himself: the bridge forwards him again.
    await b.page.getByRole("button", { name: "Mute microphone" }).click();
    await until(async () => (await energyOver(a.page, 700)) > 0, 15000, "Alice hears Bob again");

    // The lobby: Carol waits, Alice is told and lets her in; Dave is turned away.
    await a.page.getByRole("button", { name: "Lobby", exact: true }).click();
    await until(
      async () => (await a.page.getByRole("button", { name: "Lobby", exact: true }).getAttribute("aria-pressed")) === "true",
      10000,
      "the lobby on",
    );
    await a.page.getByRole("button", { name: "Chat" }).click();
    const c = await knockAt(browser, origin, room, "Carol", outside, "&media=none");
    pages.push(c);
    await c.page.getByRole("heading", { name: "Waiting to be let in" }).waitFor({ timeout: 15000 });
    await noViolations(c.page, "lobby-waiting");
    await a.page.getByRole("status").filter({ hasText: "Carol is waiting in the lobby." }).waitFor({ timeout: 10000 });
    await a.page.getByRole("button", { name: "Show" }).click();
    await noViolations(a.page, "moderator");
    await a.page.getByRole("button", { name: "Let Carol in" }).click();
    await c.page.evaluate(() => window.conclave.ready.then(() => undefined));
    await c.page.getByRole("navigation", { name: "Meeting controls" }).waitFor();
    const d = await knockAt(browser, origin, room, "Dave", outside, "&media=none");
    pages.push(d);
    await a.page.getByRole("button", { name: "Turn Dave away" }).click({ timeout: 15000 });
    await d.page.getByRole("heading", { name: "You were not let in" }).waitFor({ timeout: 10000 });

    // Lobby off, a password on: Erin must give it (a wrong one is refused).
    await a.page.getByRole("button", { name: "Lobby", exact: true }).click();
    await a.page.getByLabel("Password").fill("s3cret");
    await a.page.getByRole("button", { name: "Lock the meeting" }).click();
    await a.page.getByText("The meeting is locked with a password.").waitFor({ timeout: 10000 });
    const e = await knockAt(browser, origin, room, "Erin", outside, "&media=none");
    pages.push(e);
    await e.page.getByRole("heading", { name: "This meeting is locked" }).waitFor({ timeout: 15000 });
    await e.page.getByLabel("Password").fill("guess");
    await e.page.getByRole("button", { name: "Join", exact: true }).click();
    await e.page.getByRole("alert").filter({ hasText: "not the right one" }).waitFor({ timeout: 10000 });
    await noViolations(e.page, "password");
    await e.page.getByLabel("Password").fill("s3cret");
    await e.page.getByRole("button", { name: "Join", exact: true }).click();
    await e.page.evaluate(() => window.conclave.ready.then(() => undefined));

    // Bob removed; then the meeting ended for Carol and Erin.
    await a.page.getByRole("button", { name: "Remove Bob" }).click();
    await b.page.getByRole("heading", { name: "You were removed from the meeting" }).waitFor({ timeout: 10000 });
    await a.page.getByRole("button", { name: "End meeting for everyone" }).click();
    for (const p of [c, e, a]) {
      await p.page.getByRole("heading", { name: "The meeting has ended" }).waitFor({ timeout: 10000 });
    }
    assert.deepEqual(outside, []);
    assert.deepEqual(pages.flatMap((p) => p.errors), []);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
