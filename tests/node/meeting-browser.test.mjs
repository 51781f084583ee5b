// Meetings in a real browser: Debian's Chromium, driven by playwright-core,
// each participant in a fresh profile with fake camera and microphone,
// loading the web client the server itself serves at /<room>. Nothing the
// page asks for may leave the server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

import { httpsGet, startServer, TARGET, withTimeout } from "./lib/server.mjs";
import { ARGS, CHROMIUM, audioEnergy, join, playingRemoteVideos, until } from "./lib/browser.mjs";

/**
 * Replaces what the page asks the bridge for (its own asks follow the
 * size of each tile) with one height for every source.
 */
function askFor(page, maxHeight) {
  return page.evaluate(
    (maxHeight) =>
      window.conclave.conference.setReceiverConstraints({ lastN: -1, defaultConstraints: { maxHeight }, constraints: {} }),
    maxHeight,
  );
}

/** The height of `id`'s picture in `page`, or -1 if it is not moving. */
function heightOf(page, id) {
  return page.evaluate(async (id) => {
    const v = document.querySelector(`video[data-endpoint="${id}"]`);
    if (!v) return -1;
    const t0 = v.currentTime;
    await new Promise((r) => setTimeout(r, 700));
    return v.currentTime > t0 ? v.videoHeight : -1;
  }, id);
}

/** The frame heights of the simulcast layers `page` is sending. */
function sentLayers(page) {
  return page.evaluate(async () => {
    const pc = window.conclave.conference.peerConnection;
    const out = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && s.packetsSent > 0) out.push(s.frameHeight || 0);
    });
    return out;
  });
}


/**
 * Alice and Bob join one room from fresh profiles in one Chromium, against
 * a server with `overrides`; `body` gets them, their endpoint ids, the
 * server and the list of requests that tried to leave it.
 */
async function twoInAMeeting(overrides, body) {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/install-test-deps.sh installs Debian's chromium`);
  const srv = await startServer([], overrides);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  const outside = [];
  try {
    const origin = `https://localhost:${srv.http_port}`;
    const room = `Browser${Date.now()}`;
    const a = await withTimeout(join(browser, origin, room, "Alice", outside), 30000, "Alice joining");
    const b = await withTimeout(join(browser, origin, room, "Bob", outside), 30000, "Bob joining");
    const ids = await Promise.all([a, b].map((p) => p.page.evaluate(() => window.conclave.conference.endpointId)));
    await body({ a, b, ids, srv });
    assert.deepEqual(outside, [], "the page fetched something from outside the server");
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await browser.close();
    await srv.stop();
  }
}

test(
  "browser: two participants from fresh profiles see and hear each other, switch simulcast layers, exchange an endpoint message, restart ICE in place",
  { skip: TARGET !== "conclave" && "meetings are Conclave's" },
  () =>
    twoInAMeeting({}, async ({ a, b, ids, srv }) => {
      // each sees the other's camera, moving
      await until(async () => (await playingRemoteVideos(a.page)).includes(ids[1]), 30000, "Alice sees Bob");
      await until(async () => (await playingRemoteVideos(b.page)).includes(ids[0]), 30000, "Bob sees Alice");
      // and hears the other's microphone
      await until(async () => (await audioEnergy(a.page)) > 0, 15000, "Alice hears Bob");
      await until(async () => (await audioEnergy(b.page)) > 0, 15000, "Bob hears Alice");

      // an endpoint message over the bridge channel, with the sender named by the bridge
      const got = b.page.evaluate(
        () =>
          new Promise((resolve) => {
            window.conclave.conference.on("endpoint-message", (m) => resolve(m));
          }),
      );
      await until(
        () => a.page.evaluate(() => window.conclave.conference.bridgeChannelOpen),
        15000,
        "Alice's bridge channel",
      );
      await a.page.evaluate(() => window.conclave.conference.sendEndpointMessage("", { hello: "bob" }));
      const m = await withTimeout(got, 10000, "the endpoint message");
      assert.deepEqual(m, { from: ids[0], payload: { hello: "bob" } });

      // Simulcast: Alice sends three layers; Bob asks for small pictures,
      // then large ones, and Alice's video keeps moving across each switch.
      await askFor(b.page, 720);
      const layers = await sentLayers(a.page);
      assert.ok(layers.length >= 2, `Alice sends ${layers.length} video layers`);
      const full = await until(async () => {
        const h = await heightOf(b.page, ids[0]);
        return h >= 540 && h;
      }, 20000, "Bob gets Alice's top layer");
      await askFor(b.page, 180);
      const small = await until(async () => {
        const h = await heightOf(b.page, ids[0]);
        return h > 0 && h <= 360 && h;
      }, 20000, "Bob's picture of Alice gets small when he asks for 180p");
      await askFor(b.page, 720);
      await until(async () => (await heightOf(b.page, ids[0])) === full, 20000, "and large again");
      assert.ok(small < full);
      // The bridge estimates what it can send each browser (from their
      // transport-cc feedback); on loopback, enough for the top layer.
      const estimate = await until(async () => {
        const { body } = await httpsGet(srv.http_port, "/metrics");
        const m = body.match(/^conclave_meeting_estimate_bps\{conference="\d+"\} (\S+)$/m);
        return m && Number(m[1]) > 1_000_000 && Number(m[1]);
      }, 15000, "a bandwidth estimate for the meeting's receivers");
      assert.ok(estimate > 1_000_000, `estimate ${estimate}`);

      // An in-place ICE restart (new credentials with the bridge, media
      // going on meanwhile), as lib-jitsi-meet's enableIceRestart does.
      const iceOf = (page) =>
        page.evaluate(() => {
          const pc = window.conclave.conference.peerConnection;
          return [pc.iceConnectionState, (pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1]];
        });
      const [, ufragBefore] = await iceOf(a.page);
      await a.page.evaluate(() => {
        window.pcBefore = window.conclave.conference.peerConnection;
        return window.conclave.conference.restartIce();
      });
      await until(async () => {
        const [state, ufrag] = await iceOf(a.page);
        return ufrag !== ufragBefore && (state === "connected" || state === "completed");
      }, 15000, "Alice's ICE restarted with the bridge's new credentials");
      const t0 = Date.now();
      await until(async () => (await playingRemoteVideos(b.page)).includes(ids[0]), 10000, "Bob still sees Alice");
      await until(async () => (await playingRemoteVideos(a.page)).includes(ids[1]), 10000, "Alice still sees Bob");
      // in place: the same connection, not a new session
      assert.ok(await a.page.evaluate(() => window.conclave.conference.peerConnection === window.pcBefore));
      assert.ok(Date.now() - t0 < 20000);

      // Bob leaves: Alice's tile for him goes
      await b.page.evaluate(() => window.conclave.conference.leave());
      await until(
        () => a.page.evaluate((id) => !document.querySelector(`video[data-endpoint="${id}"]`), ids[1]),
        15000,
        "Bob's tile removed",
      );
    }),
);

test(
  "browser: a receiver capped by meetings.max_receive_kbps gets the simulcast layer that fits, still moving",
  { skip: TARGET !== "conclave" && "meetings are Conclave's" },
  // 150 kbit/s: room for Alice's smallest layer (her audio takes some)
  () =>
    twoInAMeeting({ "meetings.max_receive_kbps": 150 }, async ({ a, b, ids }) => {
      await until(async () => (await heightOf(b.page, ids[0])) > 0, 30000, "Bob sees Alice");
      // Bob asks for no limit, and Alice sends her 720p layer...
      await askFor(b.page, 720);
      await until(async () => (await sentLayers(a.page)).some((h) => h >= 540), 30000, "Alice sending 720p");
      // ...but what Bob gets of her fits his 150 kbit/s, and moves.
      await until(async () => {
        const h = await heightOf(b.page, ids[0]);
        return h > 0 && h <= 240;
      }, 15000, "Bob's picture of Alice fitting his cap");
      for (let i = 0; i < 4; i++) {
        const h = await heightOf(b.page, ids[0]);
        assert.ok(h > 0 && h <= 240, `Bob's picture of Alice is ${h} pixels high`);
      }
    }),
);

for (const codec of ["VP9", "AV1"]) {
test(
  `browser: a ${codec} SVC sender, and two receivers each given the spatial layers they ask for`,
  { skip: TARGET !== "conclave" && "meetings are Conclave's" },
  async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/install-test-deps.sh installs Debian's chromium`);
    const srv = await startServer();
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    const outside = [];
    try {
      const origin = `https://localhost:${srv.http_port}`;
      const room = `Svc${Date.now()}`;
      // Alice sends three spatial layers in one stream, as lib-jitsi-meet
      // sends VP9 and AV1; Bob and Carol only watch.
      const a = await withTimeout(join(browser, origin, room, "Alice", outside, `&codec=${codec}`), 30000, "Alice joining");
      const b = await withTimeout(join(browser, origin, room, "Bob", outside, "&media=none"), 30000, "Bob joining");
      const c = await withTimeout(join(browser, origin, room, "Carol", outside, "&media=none"), 30000, "Carol joining");
      const alice = await a.page.evaluate(() => window.conclave.conference.endpointId);
      // Both see Alice in the tile their page sized. How many layers she
      // sends follows the tallest of those tiles, which depends on the
      // layout of the moment, so both ask for her full size first.
      await until(async () => (await heightOf(b.page, alice)) > 0, 20000, "Bob sees Alice");
      await until(async () => (await heightOf(c.page, alice)) > 0, 20000, "Carol sees Alice");
      await askFor(b.page, 720);
      await askFor(c.page, 720);
      const svc = await until(async () => {
        const st = await a.page.evaluate(async () => {
          const out = [];
          const pc = window.conclave.conference.peerConnection;
          if (!pc) return out;
          (await pc.getStats()).forEach((s) => {
            if (s.type === "outbound-rtp" && s.kind === "video" && s.packetsSent > 0) out.push(s.scalabilityMode);
          });
          return out;
        });
        return st.length === 1 && st[0] === "L3T3_KEY" && st;
      }, 30000, `Alice sending one ${codec} stream with three spatial layers`);
      assert.deepEqual(svc, ["L3T3_KEY"]);
      // Then Bob asks for small pictures, Carol still for everything: the
      // bridge sends each what they asked for, out of the one stream.
      await askFor(b.page, 180);
      await until(async () => {
        const h = await heightOf(b.page, alice);
        return h > 0 && h <= 240 && h;
      }, 20000, "Bob gets Alice's lowest layer, moving");
      await until(async () => (await heightOf(c.page, alice)) >= 540, 20000, "Carol gets Alice's top layer, moving");
      for (let i = 0; i < 3; i++) {
        const [hb, hc] = await Promise.all([heightOf(b.page, alice), heightOf(c.page, alice)]);
        assert.ok(hb > 0 && hb <= 240 && hc >= 540, `Bob sees ${hb}, Carol ${hc}`);
      }
      // Bob asks for everything again
      await askFor(b.page, 720);
      await until(async () => (await heightOf(b.page, alice)) >= 540, 20000, "Bob gets the top layer back");
      assert.deepEqual(outside, [], "the page fetched something from outside the server");
      assert.deepEqual([...a.errors, ...b.errors, ...c.errors], []);
    } finally {
      await browser.close();
      await srv.stop();
    }
  },
);
}
