// The chat for registered users, as people use it, in Debian's Chromium
// against the real server: signing in (a wrong password first), a contact
// request accepted, messages both ways with unread counts, reply, react,
// edit and delete, notifications and a muted conversation, a reload that
// keeps the session and the history, a search that finds an old message, a
// group, "Start a call" from it with a file shared in the meeting's chat
// (the progress bar reaching 100%, the other side downloading the same
// bytes), the meeting's chat kept in the group's history, and a full upload
// quota said in words. Every main screen goes through axe-core and is
// photographed at desktop size and at 360 px.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { REPO, startServer, TARGET } from "./lib/server.mjs";
import { axeViolations, launch, openPage, playingRemoteVideos, screenshots, until } from "./lib/browser.mjs";

const skip = TARGET !== "conclave" && "the web client is Conclave's";

async function noViolations(page, screen) {
  const v = await axeViolations(page);
  assert.deepEqual(v, [], `axe on the ${screen}`);
  assert.equal(await screenshots(page, screen), 0, `the ${screen} is wider than a 360 px phone`);
}

/** Records the notifications the page shows (the browser's own, with the permission granted). */
async function recordNotifications(page) {
  await page.addInitScript(() => {
    window.__notes = [];
    const Real = window.Notification;
    window.Notification = class extends Real {
      constructor(title, options) {
        super(title, options);
        window.__notes.push({ title, body: options?.body ?? "" });
      }
    };
  });
}

async function signIn(page, user, password) {
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Conversations" }).or(page.getByText("No conversations yet")).first().waitFor({ timeout: 15000 });
}

const conversation = (page, name) => page.getByRole("navigation", { name: "Conversations" }).getByRole("button", { name: new RegExp(`\\b${name}\\b`) });
const messages = (page) => page.getByRole("list", { name: /^Messages with/ });
const composer = (page) => page.locator("#compose");

async function say(page, text) {
  await composer(page).fill(text);
  await composer(page).press("Enter");
  await messages(page).getByText(text, { exact: true }).waitFor({ timeout: 10000 });
}

test("chat: sign in, contacts, conversations, history, search, a group's call with a file, a full quota", { skip }, async () => {
  // Room for the meeting's file, not for the one after it.
  const srv = await startServer([], { "upload.quota_bytes": 3_000_000 });
  const alice = srv.addUser("alice");
  const bob = srv.addUser("bob");
  const browser = await launch();
  const outside = [];
  const origin = `https://localhost:${srv.http_port}`;
  const permissions = ["camera", "microphone", "notifications"];
  try {
    // A stranger finds the chat from the home page, and a wrong password is said so.
    const a = await openPage(browser, origin, "/", outside, { permissions });
    await a.page.getByRole("link", { name: "Sign in to chat" }).click();
    await a.page.getByRole("heading", { name: "Sign in to chat" }).waitFor();
    await noViolations(a.page, "chat-sign-in");
    await a.page.getByLabel("Username").fill("alice");
    await a.page.getByLabel("Password").fill("not-the-password");
    await a.page.getByRole("button", { name: "Sign in" }).click();
    assert.match(await a.page.getByRole("alert").textContent({ timeout: 15000 }), /username or password is wrong/);
    await signIn(a.page, "alice", alice.password);

    const b = await openPage(browser, origin, "/chat", outside, { permissions, setup: recordNotifications });
    await signIn(b.page, "bob@localhost", bob.password);

    // Alice asks Bob to be a contact; Bob accepts; each sees the other online.
    await a.page.getByRole("button", { name: "Add contact" }).click();
    await a.page.getByLabel("Address").fill("bob");
    await a.page.getByLabel("Name (optional)").fill("Bob");
    await a.page.getByRole("button", { name: "Add", exact: true }).click();
    await b.page.getByText("alice@localhost wants to be your contact").waitFor({ timeout: 10000 });
    await noViolations(b.page, "chat-request");
    await b.page.getByRole("button", { name: "Accept" }).click();
    await conversation(a.page, "Bob").getByRole("img", { name: "Online" }).waitFor({ timeout: 10000 });
    await conversation(b.page, "alice").getByRole("img", { name: "Online" }).waitFor({ timeout: 10000 });

    // Messages both ways, counted as unread until read.
    await conversation(a.page, "Bob").click();
    await say(a.page, "The budget for 2027 is in the shared folder");
    await say(a.page, "lunch?");
    await conversation(b.page, "alice").getByLabel("2 unread messages").waitFor({ timeout: 10000 });
    await conversation(b.page, "alice").click();
    await messages(b.page).getByText("lunch?", { exact: true }).waitFor();
    assert.equal(await conversation(b.page, "alice").getByLabel(/unread/).count(), 0, "read once open");

    // Bob replies to one and reacts to the other; Alice sees both.
    const lunch = messages(b.page).locator("li.msg", { hasText: "lunch?" });
    await lunch.hover();
    await lunch.getByRole("button", { name: "Reply to alice" }).click();
    await say(b.page, "yes, at noon");
    const budgetAtBob = messages(b.page).locator("li.msg", { hasText: "budget for 2027" });
    await budgetAtBob.hover();
    await budgetAtBob.getByRole("button", { name: "React", exact: true }).click();
    await budgetAtBob.getByRole("button", { name: "React with 👍" }).click();
    const reply = messages(a.page).locator("li.msg", { hasText: "yes, at noon" });
    await reply.locator("blockquote", { hasText: "lunch?" }).waitFor({ timeout: 10000 });
    await messages(a.page).locator("li.msg", { hasText: "budget for 2027" }).getByRole("button", { name: "👍 from 1" }).waitFor({ timeout: 10000 });
    // Any emoji, from the full picker (searched by name): a reaction, and
    // one put in a message where the cursor is.
    await budgetAtBob.hover();
    await budgetAtBob.getByRole("button", { name: "React", exact: true }).click();
    await budgetAtBob.getByRole("button", { name: "More reactions" }).click();
    const picker = b.page.getByRole("dialog", { name: "Pick a reaction" });
    await picker.getByRole("searchbox", { name: "Search emoji" }).fill("rocket");
    await picker.getByRole("button", { name: "rocket", exact: true }).click();
    await messages(a.page).locator("li.msg", { hasText: "budget for 2027" }).getByRole("button", { name: "🚀 from 1" }).waitFor({ timeout: 10000 });
    await composer(a.page).fill("ship it");
    await a.page.getByRole("button", { name: "Insert emoji" }).click();
    const insert = a.page.getByRole("dialog", { name: "Pick an emoji to insert" });
    await insert.getByRole("button", { name: "Animals & nature" }).click();
    await insert.getByRole("button", { name: "dog face" }).waitFor();
    await noViolations(a.page, "chat-emoji");
    await insert.getByRole("searchbox", { name: "Search emoji" }).fill("party pop");
    await insert.getByRole("button", { name: "party popper" }).click();
    assert.equal(await composer(a.page).inputValue(), "ship it🎉");
    await composer(a.page).press("Enter");
    await messages(b.page).getByText("ship it🎉").waitFor({ timeout: 10000 });

    // Alice corrects a message and deletes another; Bob sees both.
    const mine = messages(a.page).locator("li.msg.mine", { hasText: "lunch?" });
    await mine.hover();
    await mine.getByRole("button", { name: "Edit" }).click();
    await composer(a.page).fill("lunch at noon?");
    await composer(a.page).press("Enter");
    await messages(b.page).locator("li.msg", { hasText: "lunch at noon?" }).getByText("(edited)").waitFor({ timeout: 10000 });
    await say(a.page, "oops, wrong chat");
    await messages(b.page).getByText("oops, wrong chat").waitFor({ timeout: 10000 });
    const oops = messages(a.page).locator("li.msg", { hasText: "oops, wrong chat" });
    await oops.hover();
    a.page.once("dialog", (d) => d.accept());
    await oops.getByRole("button", { name: "Delete" }).click();
    await messages(b.page).locator("li.msg.retracted").getByText("This message was deleted.").waitFor({ timeout: 10000 });
    assert.equal(await messages(b.page).getByText("oops, wrong chat").count(), 0);
    await noViolations(a.page, "chat-conversation");

    // A group with Bob: he is invited and joins.
    await a.page.getByRole("button", { name: "New group" }).click();
    await a.page.getByLabel("Group name").fill("Team");
    await a.page.getByRole("checkbox", { name: "Bob" }).check();
    await a.page.getByRole("button", { name: "Create" }).click();
    await a.page.getByRole("heading", { name: "Team" }).waitFor({ timeout: 15000 });
    await b.page.getByText("alice invited you to the group Team").waitFor({ timeout: 10000 });
    await b.page.getByRole("button", { name: "Join", exact: true }).click();
    await conversation(b.page, "Team").click();
    await say(a.page, "hello team");
    await messages(b.page).getByText("hello team").waitFor({ timeout: 10000 });

    // Notifications: a message from Alice while Bob reads the group notifies
    // him; once he mutes her conversation, the next one only counts.
    assert.ok((await b.page.evaluate(() => window.__notes.length)) >= 2, "Alice's first messages notified Bob");
    await b.page.evaluate(() => (window.__notes = []));
    await conversation(a.page, "Bob").click();
    await say(a.page, "are you there?");
    await until(() => b.page.evaluate(() => window.__notes.length), 10000, "a notification");
    assert.deepEqual(await b.page.evaluate(() => window.__notes), [{ title: "alice", body: "are you there?" }]);
    await conversation(b.page, "alice").click();
    await b.page.getByRole("button", { name: "Mute notifications for this conversation" }).click();
    await conversation(b.page, "Team").click();
    await say(a.page, "no rush");
    await conversation(b.page, "alice").getByLabel("1 unread message").waitFor({ timeout: 10000 });
    assert.equal(await b.page.evaluate(() => window.__notes.length), 1, "a muted conversation does not notify");

    // Over two pages of history: the older part is read back on demand.
    await a.page.evaluate(async () => {
      for (let i = 1; i <= 105; i += 1) await window.conclaveChat.send("bob@localhost", `filler ${i}`);
    });

    // Which earlier pages Alice's client asks the archive for (RSM <before>).
    const asked = [];
    a.page.on("websocket", (ws) =>
      ws.on("framesent", ({ payload }) => {
        for (const m of String(payload).matchAll(/<before>([^<]+)<\/before>/g)) asked.push(m[1]);
      }),
    );

    // A reload keeps Alice signed in (this tab), and the history is there,
    // corrected, with the deletion and the reaction; search finds the old message.
    await a.page.reload();
    await conversation(a.page, "Bob").click();
    await messages(a.page).getByText("filler 105", { exact: true }).waitFor({ timeout: 15000 });
    const held = () =>
      a.page.evaluate(() => window.conclaveChat.conversations.value.get("bob@localhost").items.map((m) => m.text));
    assert.ok(!(await held()).includes("lunch at noon?"), "one page of history at first");
    // Scrolling up reads the older part back, page by page, and what the
    // reader was at stays in view as the older page comes in above it.
    const oldestRead = (await held())[0];
    const inView = (text) =>
      messages(a.page)
        .getByText(text, { exact: true })
        .evaluate((el) => {
          const r = el.getBoundingClientRect();
          const box = el.closest(".messages").getBoundingClientRect();
          return r.bottom > box.top && r.top < box.bottom;
        })
        .catch(() => false);
    await messages(a.page).hover();
    await a.page.mouse.wheel(0, -100000);
    await until(async () => (await held()).length > 50, 10000, "an earlier page, read on scrolling up");
    await until(() => inView(oldestRead), 5000, `"${oldestRead}" still in view`);
    // Near the top every scroll event asks for the page before: asked
    // again while it is on its way, it is still read once.
    await a.page.evaluate(() => Promise.all([1, 2, 3].map(() => window.conclaveChat.loadEarlier("bob@localhost"))));
    await until(
      async () => {
        if (await inView("This is the start of the conversation.")) return true;
        await a.page.mouse.wheel(0, -4000);
        return false;
      },
      15000,
      "the history back to its start",
    );
    assert.ok(asked.length >= 2, `earlier pages asked for: ${asked.length}`);
    assert.deepEqual(asked, [...new Set(asked)], "no page asked for twice");
    // Only what is in view is drawn: the log holds every message.
    const drawn = await messages(a.page).locator("li.msg").count();
    const all = (await held()).length;
    assert.ok(all >= 110 && drawn < all / 4, `${drawn} of ${all} messages drawn`);
    await messages(a.page).getByText("lunch at noon?").waitFor();
    for (const text of ["budget for 2027", "yes, at noon", "no rush"]) {
      await messages(a.page).getByText(text).first().waitFor({ timeout: 5000 });
    }
    await messages(a.page).locator("li.msg", { hasText: "budget for 2027" }).getByRole("button", { name: "👍 from 1" }).waitFor();
    await messages(a.page).getByText("This message was deleted.").waitFor();
    assert.equal(await messages(a.page).getByText("oops, wrong chat").count(), 0);
    await a.page.getByRole("searchbox", { name: "Search messages" }).fill("budget");
    await a.page.getByRole("searchbox", { name: "Search messages" }).press("Enter");
    const result = a.page.getByRole("button", { name: /budget for 2027/ });
    await result.waitFor({ timeout: 10000 });
    await noViolations(a.page, "chat-search");
    assert.equal(await a.page.getByRole("button", { name: /lunch/ }).count(), 0, "only what matches");
    await result.click();
    await a.page.getByRole("heading", { name: "Bob" }).waitFor();

    // "Start a call" in the group: the meeting is the group's room.
    await conversation(a.page, "Team").click();
    await a.page.getByRole("button", { name: "Start a call" }).click();
    await a.page.getByRole("button", { name: "Join meeting" }).click({ timeout: 15000 });
    const room = new URL(a.page.url()).pathname.slice(1);
    assert.match(room, /^g-[0-9a-f]{16}$/);
    const invite = messages(b.page).getByRole("link", { name: `${origin}/${room}` });
    await invite.waitFor({ timeout: 10000 });
    await invite.click();
    await b.page.getByRole("button", { name: "Join meeting" }).click({ timeout: 15000 });
    for (const p of [a.page, b.page]) {
      await p.waitForFunction(() => window.conclave !== undefined, null, { timeout: 15000 });
      await p.evaluate(() => window.conclave.ready.then(() => undefined));
      await until(async () => (await playingRemoteVideos(p)).length === 1, 20000, "the other's video");
    }

    // A file in the meeting's chat: the bar reaches 100%, Bob downloads the same bytes.
    const bytes = randomBytes(2_000_000);
    await a.page.getByRole("button", { name: "Chat" }).click();
    await a.page.locator(".chat input[type=file]").setInputFiles({ name: "minutes.bin", mimeType: "application/octet-stream", buffer: bytes });
    const bar = a.page.getByRole("progressbar", { name: "Uploading minutes.bin" });
    await until(async () => (await bar.getAttribute("value")) === "100", 20000, "the upload's progress reaching 100%");
    await a.page.locator(".chat").getByText("Sent").waitFor();
    await b.page.getByRole("button", { name: /Chat/ }).click();
    const link = b.page.locator(".chat").getByRole("link", { name: "Download minutes.bin" });
    await link.waitFor({ timeout: 10000 });
    const [download] = await Promise.all([b.page.waitForEvent("download"), link.click()]);
    const got = readFileSync(await download.path());
    assert.equal(got.length, bytes.length, "the downloaded file's size");
    assert.equal(createHash("sha256").update(got).digest("hex"), createHash("sha256").update(bytes).digest("hex"));
    await a.page.getByLabel("Message", { exact: true }).fill("notes from the call");
    await a.page.getByLabel("Message", { exact: true }).press("Enter");
    await b.page.locator(".chat").getByText("notes from the call").waitFor({ timeout: 10000 });

    // After the call, its chat is in the group's history.
    await a.page.getByRole("button", { name: "Leave" }).click();
    await a.page.goto(`${origin}/chat`);
    await conversation(a.page, "Team").click();
    await messages(a.page).getByText("notes from the call").waitFor({ timeout: 15000 });
    await messages(a.page).getByText("hello team").waitFor();

    // An image and a video in the conversation: Bob sees the image's
    // preview and seeks in the video (a 4 s clip whose colour changes each
    // second: the frame shown after the seek is the one at that time).
    const png = Buffer.from(
      await a.page.evaluate(async () => {
        const c = new OffscreenCanvas(64, 48);
        const g = c.getContext("2d");
        g.fillStyle = "#3a6";
        g.fillRect(0, 0, 64, 48);
        const blob = await c.convertToBlob({ type: "image/png" });
        return [...new Uint8Array(await blob.arrayBuffer())];
      }),
    );
    const clip = join(mkdtempSync(join(tmpdir(), "conclave-clip-")), "clip.webm");
    execFileSync(join(REPO, "tests", ".venv", "bin", "python"), [join(REPO, "tests", "node", "lib", "sample_video.py"), clip]);
    for (const f of [
      { name: "diagram.png", mimeType: "image/png", buffer: png },
      { name: "clip.webm", mimeType: "video/webm", buffer: readFileSync(clip) },
    ]) {
      await a.page.locator(".conversation input[type=file]").setInputFiles(f);
      await messages(a.page).getByRole("link", { name: `Download ${f.name}` }).or(messages(a.page).getByRole("img", { name: f.name })).first().waitFor({ timeout: 15000 });
    }
    await b.page.goto(`${origin}/chat`);
    await conversation(b.page, "Team").click();
    const img = messages(b.page).getByRole("img", { name: "diagram.png" });
    await img.waitFor({ timeout: 15000 });
    await until(() => img.evaluate((el) => el.complete && el.naturalWidth === 64 && el.naturalHeight === 48), 10000, "the image's preview");
    const video = messages(b.page).locator('video[aria-label="clip.webm"]');
    await video.waitFor({ timeout: 15000 });
    await until(() => video.evaluate((el) => el.readyState >= 1 && Math.abs(el.duration - 4) < 0.3), 10000, "the video's metadata (a 4 s clip)");
    const seeked = await video.evaluate(
      (el) =>
        new Promise((resolve, reject) => {
          el.addEventListener("error", () => reject(new Error(`video error ${el.error?.code}`)), { once: true });
          el.addEventListener(
            "seeked",
            () => {
              const c = new OffscreenCanvas(el.videoWidth, el.videoHeight);
              const g = c.getContext("2d");
              g.drawImage(el, 0, 0);
              const [r] = g.getImageData(1, 1, 1, 1).data;
              resolve({ at: el.currentTime, width: el.videoWidth, red: r });
            },
            { once: true },
          );
          el.currentTime = 2.5;
        }),
    );
    assert.ok(Math.abs(seeked.at - 2.5) < 0.2, `seeked to ${seeked.at}`);
    assert.equal(seeked.width, 160);
    // Second 2's frames are red 120 (0, 60, 120, 180 by second), within
    // the codec's rounding.
    assert.ok(Math.abs(seeked.red - 120) < 20, `the frame after the seek has red ${seeked.red}, not second 2's`);

    // "Start a call" with Bob alone: a room for the two of them, whose
    // invitation Bob gets; what is said in the call is in their
    // conversation afterwards, for both.
    await conversation(a.page, "Bob").click();
    await a.page.getByRole("button", { name: "Start a call" }).click();
    await a.page.getByRole("button", { name: "Join meeting" }).click({ timeout: 15000 });
    const callRoom = new URL(a.page.url()).pathname.slice(1);
    assert.match(callRoom, /^c-[0-9a-f]{16}$/);
    await a.page.waitForFunction(() => window.conclave !== undefined, null, { timeout: 15000 });
    await a.page.evaluate(() => window.conclave.ready.then(() => window.conclave.store.sendChat("the contract is signed")));
    // Back in the call (a reload: a new session of the same account), her
    // message in the room's history is hers.
    await a.page.reload();
    await a.page.getByRole("button", { name: "Join meeting" }).click({ timeout: 15000 });
    await a.page.waitForFunction(() => window.conclave !== undefined, null, { timeout: 15000 });
    await a.page.evaluate(() => window.conclave.ready.then(() => undefined));
    await a.page.getByRole("button", { name: "Chat" }).click();
    await a.page.locator(".chat li", { hasText: "the contract is signed" }).getByText("You", { exact: true }).waitFor({ timeout: 10000 });
    await a.page.getByRole("button", { name: "Leave" }).click();
    await a.page.goto(`${origin}/chat`);
    await conversation(a.page, "Bob").click();
    await messages(a.page).locator("li.msg", { hasText: "the contract is signed" }).getByText("in the call").waitFor({ timeout: 15000 });
    await conversation(b.page, "alice").click();
    await messages(b.page).getByRole("link", { name: `${origin}/${callRoom}` }).waitFor({ timeout: 10000 });
    await messages(b.page).locator("li.msg", { hasText: "the contract is signed" }).getByText("in the call").waitFor({ timeout: 15000 });

    // The quota is used up: the next file is refused in words.
    await a.page.locator(".conversation input[type=file]").setInputFiles({ name: "big.bin", mimeType: "application/octet-stream", buffer: randomBytes(1_500_000) });
    assert.match(await messages(a.page).getByRole("alert").textContent({ timeout: 10000 }), /used all the space this server gives you for files/);

    assert.deepEqual(outside, [], "requests outside the server");
    assert.deepEqual(a.errors.filter((e) => !/WebSocket|net::/.test(e)), [], "Alice's page errors");
  } finally {
    await browser.close();
    await srv.stop();
  }
});
