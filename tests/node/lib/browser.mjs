// Browser helpers for the meeting suites: Debian's Chromium driven by
// playwright-core, each participant in a fresh profile (a new context)
// with fake camera and microphone, and nothing allowed to leave the server.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join as join_ } from "node:path";
import { chromium } from "playwright-core";

import { REPO } from "./server.mjs";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// As a person would start it, but headless, with fake devices, and no
// background traffic to Google. No flag for loopback ICE candidates or
// local-network access: a page served by the server itself, on the
// server's own machine, needs neither (the bridge learns each browser's
// address from its connectivity checks).
export const ARGS = [
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A page in a fresh profile (a new context: no cookies, storage or
 * permissions beyond `permissions`) at `origin + path`; every request
 * elsewhere is refused and listed in `outside`, every page error and
 * console error in the returned `errors`. `alsoAllowed`: more origins the
 * page may reach (an embedding site's page reaching the meeting server).
 */
export async function openPage(browser, origin, path, outside, { permissions = ["camera", "microphone"], viewport, setup, alsoAllowed = [] } = {}) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, permissions, ...(viewport ? { viewport } : {}) });
  const allowed = [origin, ...alsoAllowed, "data:", "blob:"];
  await ctx.route("**/*", (route) => {
    const url = route.request().url();
    if (allowed.some((o) => url.startsWith(o))) return route.continue();
    outside.push(url);
    return route.abort();
  });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  if (setup) await setup(page);
  await page.goto(`${origin}${path}`);
  return { ctx, page, errors };
}

/**
 * Opens `/<room>` and presses "Join meeting" on the pre-join screen, as a
 * person does (the name filled in from the link; the button waits for the
 * devices), without waiting to be in: a lobby or a password may come first.
 */
export async function knockAt(browser, origin, room, name, outside, query = "", setup = undefined) {
  const opened = await openPage(browser, origin, `/${room}?name=${name}${query}`, outside, { setup });
  await opened.page.getByRole("button", { name: "Join meeting" }).click({ timeout: 15000 });
  return opened;
}

/** Opens `/<room>` and joins through the pre-join screen; `setup(page)` runs before it loads. */
export async function join(browser, origin, room, name, outside, query = "", setup = undefined) {
  const { ctx, page, errors } = await knockAt(browser, origin, room, name, outside, query, setup);
  await page.waitForFunction(() => window.conclave !== undefined, null, { timeout: 15000 });
  await page.evaluate(() => window.conclave.ready.then(() => undefined));
  return { ctx, page, errors };
}

/** Remote <video> elements with a picture whose time advances. */
export async function playingRemoteVideos(page) {
  return page.evaluate(async () => {
    const vids = [...document.querySelectorAll("video[data-endpoint]")].filter((v) => !v.closest("[data-local]"));
    const t0 = vids.map((v) => v.currentTime);
    await new Promise((r) => setTimeout(r, 700));
    return vids.filter((v, i) => v.videoWidth > 0 && v.currentTime > t0[i]).map((v) => v.dataset.endpoint);
  });
}

/** Inbound audio with energy, from the peer connection's statistics. */
export async function audioEnergy(page) {
  return page.evaluate(async () => {
    const pc = window.conclave.conference.peerConnection;
    if (!pc) return 0;
    let e = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") e += s.totalAudioEnergy || 0;
    });
    return e;
  });
}

export async function until(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.fail(`${what}: not within ${ms} ms (last: ${JSON.stringify(last)})`);
}

/**
 * Chromium as the suites launch it; fails clearly when it is not installed.
 * With `askUser: false` (the default) every device prompt is accepted; with
 * true, a device the context was not granted is refused, as when a person
 * says no. With `devices: false`, the browser has no camera or microphone.
 */
export function launch(extraArgs = [], { askUser = false, devices = true } = {}) {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/install-test-deps.sh installs Debian's chromium`);
  // devices: false is a computer without camera or microphone (this test
  // machine has none of its own: Chromium then finds no device at all).
  const base = ARGS.filter(
    (a) => !(askUser && a === "--use-fake-ui-for-media-stream") && !(!devices && a === "--use-fake-device-for-media-stream"),
  );
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...base, ...extraArgs] });
}

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * axe-core's serious and critical violations on the page as it is now,
 * WCAG 2.1 A and AA rules, as "rule: target" lines. Injected through the
 * DevTools protocol, which the page's CSP does not govern.
 */
export async function axeViolations(page) {
  await page.evaluate(AXE);
  // Without motion (as the page honours it): a reaction fading out is not
  // checked for contrast halfway through its fade, but as it is read.
  await page.emulateMedia({ reducedMotion: "reduce" });
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(" ")} (${n.failureSummary?.split("\n")[1]?.trim() ?? ""})`));
  });
  await page.emulateMedia({ reducedMotion: null });
  return found;
}

export const SHOTS = join_(REPO, "target", "screenshots");

/** The page as a desktop (as it is) and a 360 px phone show it, kept as test artifacts. */
export async function screenshots(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const size = page.viewportSize();
  await page.screenshot({ path: join_(SHOTS, `${name}-desktop.png`) });
  await page.setViewportSize({ width: 360, height: 740 });
  await new Promise((r) => setTimeout(r, 400));
  // Nothing may stick out sideways on a phone.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: join_(SHOTS, `${name}-360.png`) });
  if (size) await page.setViewportSize(size);
  await new Promise((r) => setTimeout(r, 200));
  return overflow;
}
