// Offers in the demo shop: an admin push (or an operator's offer action) reaches the
// visitor's open page over the offers stream; sluice.js shows it with its default banner
// (accessible, dismissible, never taking the focus) or hands it to the shop's callback,
// and records offer_shown / offer_clicked / offer_dismissed exactly once each. Also: a
// key is shown once per tab, a push to everyone reaches an open page, refused marketing
// consent keeps the stream closed, a refused token is replaced. Screenshots of the demo
// with an offer shown go to build/screenshots/.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Server, serverAndBrowser, closeBoth, waitFor, assert, eq, ROOT, ADMIN_KEY, WRITE_KEY } from "./lib.mjs";

const LAPTOP = { width: 1440, height: 900 }, PHONE = { width: 390, height: 844 };
const errors = []; // uncaught errors in any page: the tracker must never throw into it
const OFFER = {
  template: "banner",
  fields: { title: "Free shipping this week", text: "On every order over €50, all the way down the canal.",
    code: "CANAL10", cta: "See the lantern", url: "/demo/product/2" },
};
// The same with a full URL: the demo does not route it, the browser loads a new page.
const FULL_URL = (srv) => ({ ...OFFER, fields: { ...OFFER.fields, url: srv.url + "/demo/product/2" } });

export const setup = () => serverAndBrowser();

export async function teardown(ctx) {
  await closeBoth(ctx);
  eq(errors, [], "page errors");
}

function shot(name) {
  const dir = join(ROOT, "build", "screenshots");
  mkdirSync(dir, { recursive: true });
  return join(dir, name + ".png");
}

const streamed = (srv, page) => page.waitForResponse(
  (r) => r.url().startsWith(srv.url + "/v1/offers?") && r.status() === 200, { timeout: 10000 });

// A page of the demo with the stream open: resolves once /v1/offers answered 200 (after
// the consent choice, which opens the stream again).
async function open(context, srv, path = "/demo/", consent = "#consent-all") {
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  let stream = streamed(srv, page);
  await page.goto(srv.url + path);
  await page.waitForFunction(() => window.sluice && window.sluice.ready);
  if (consent && await page.locator("#consent").isVisible()) {
    stream = streamed(srv, page);
    await page.click(consent);
  }
  await stream;
  return { page, aid: await page.evaluate(() => sluice.anonymousId()) };
}

// An admin push to the visitor's open pages.
async function push(srv, aid, offer) {
  const r = await admin(srv, "/v1/push", { anonymousId: aid, ...offer });
  assert(r.reached >= 1, "the push reached no stream");
  return r;
}

async function admin(srv, path, body) {
  const r = await fetch(srv.url + path, { method: "POST", body: JSON.stringify(body),
    headers: { Authorization: "Bearer " + ADMIN_KEY, "Content-Type": "application/json" } });
  const j = await r.json();
  assert(r.ok, path + ": " + r.status + " " + JSON.stringify(j));
  return j;
}

// The visitor's stored offer events, as "name template key" strings, once `n` are there
// (the page is flushed first; then a moment for anything extra to arrive).
async function offerEvents(srv, pages, aid, n) {
  const mine = () => srv.export().filter((e) => e.anonymousId === aid && /^offer_/.test(e.event));
  for (const p of pages) await p.evaluate(() => sluice.flush());
  await waitFor(() => mine().length >= n, 10000, n + " offer events");
  for (const p of pages) await p.evaluate(() => sluice.flush());
  await new Promise((r) => setTimeout(r, 500));
  return mine();
}
// The visitor's stream as a second subscriber sees it (to know what the server sent).
async function tap(srv, aid) {
  const tok = await (await fetch(srv.url + "/v1/offers/token", { method: "POST",
    headers: { Authorization: "Bearer " + WRITE_KEY }, body: JSON.stringify({ anonymousId: aid }) })).json();
  const ac = new AbortController();
  const r = await fetch(srv.url + "/v1/offers?anonymousId=" + aid + "&token=" + tok.token, { signal: ac.signal });
  eq(r.status, 200, "tap stream");
  const tapped = { text: "", close: () => ac.abort() };
  (async () => {
    const dec = new TextDecoder();
    try { for await (const c of r.body) tapped.text += dec.decode(c, { stream: true }); } catch {}
  })();
  return tapped;
}

const names = (evs) => evs.map((e) => e.event).sort();

const banner = (page) => page.locator("[role=dialog][aria-live=polite]");

export const tests = [
  ["a pushed offer shows as an accessible banner within 2 s; its link is followed and its click recorded once", async ({ srv, browser }) => {
    const context = await browser.newContext({ viewport: LAPTOP });
    const { page, aid } = await open(context, srv);
    await page.locator(".card").first().waitFor();
    await page.focus("#nl-email");
    const t0 = Date.now();
    eq((await push(srv, aid, FULL_URL(srv))).reached, 1, "streams reached");
    const b = banner(page);
    await b.waitFor({ timeout: 2000 });
    console.log("  banner shown " + (Date.now() - t0) + " ms after the push");
    eq(await b.getAttribute("aria-label"), OFFER.fields.title, "the banner is labelled by its title");
    for (const s of [OFFER.fields.title, OFFER.fields.text, OFFER.fields.code])
      assert((await b.innerText()).includes(s), "banner shows " + s);
    eq(await b.locator("a").getAttribute("href"), srv.url + "/demo/product/2");
    eq(await b.locator("a").innerText(), "See the lantern");
    // The focus stays where it was; the link and the close button follow in the tab order.
    eq(await page.evaluate(() => document.activeElement.id), "nl-email", "focus not taken");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    eq(await page.evaluate(() => document.activeElement.textContent), "See the lantern", "the link by keyboard");
    await page.keyboard.press("Tab");
    eq(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), "Close",
      "the close button by keyboard");
    await page.evaluate(() => document.activeElement.blur());
    await page.screenshot({ path: shot("offer-laptop") });
    // The link is followed (a new page: the events wait in the stored queue meanwhile).
    await Promise.all([page.waitForEvent("load"), b.locator("a").click()]);
    await page.locator("h1", { hasText: "Lock Keeper's Lantern" }).waitFor();
    await page.waitForFunction(() => window.sluice && window.sluice.ready);
    eq(await banner(page).count(), 0, "the banner is gone after its click");
    const evs = await offerEvents(srv, [page], aid, 2);
    eq(names(evs), ["offer_clicked", "offer_shown"], "each recorded exactly once");
    for (const e of evs) eq(e.properties, { template: "banner" }, e.event + " properties");
    await context.close();
  }],

  ["phone: the banner fits; Escape dismisses it and records offer_dismissed once", async ({ srv, browser }) => {
    const context = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true });
    const { page, aid } = await open(context, srv, "/demo/product/1");
    await push(srv, aid, OFFER);
    const b = banner(page);
    await b.waitFor({ timeout: 2000 });
    const box = await b.boundingBox();
    assert(box.x >= 0 && box.x + box.width <= PHONE.width && box.y + box.height <= PHONE.height,
      "banner inside the phone's viewport: " + JSON.stringify(box));
    await page.screenshot({ path: shot("offer-phone") });
    await page.keyboard.press("Escape");
    await b.waitFor({ state: "detached", timeout: 2000 });
    await page.keyboard.press("Escape"); // nothing left to close: nothing more recorded
    // The close button dismisses too.
    await push(srv, aid, { template: "banner", fields: { text: "Second thoughts?" } });
    await b.waitFor({ timeout: 2000 });
    eq(await b.getAttribute("aria-label"), "Offer", "a banner without a title is still labelled");
    await b.locator("button[aria-label=Close]").click();
    await b.waitFor({ state: "detached", timeout: 2000 });
    const evs = await offerEvents(srv, [page], aid, 4);
    eq(names(evs), ["offer_dismissed", "offer_dismissed", "offer_shown", "offer_shown"]);
    await context.close();
  }],

  ["two tabs: each shows a keyed offer once and records its own offer_shown; a reload does not show it again",
    async ({ srv, browser }) => {
      const context = await browser.newContext({ viewport: LAPTOP });
      const tokens = [];
      context.on("request", (r) => { if (r.url().endsWith("/v1/offers/token")) tokens.push(r.url()); });
      const a = await open(context, srv), b = await open(context, srv, "/demo/cart", null);
      eq(a.aid, b.aid, "one visitor");
      const tapped = await tap(srv, a.aid);
      const aid = a.aid, key = "spring-" + Date.now().toString(36);
      const act = { kind: "offer", target: "banner", anonymousId: aid, key, rule: "spring-sale",
        payload: { title: "Spring sale", text: "20% off kayaks", cta: "Shop kayaks", url: "/demo/product/1" } };
      await admin(srv, "/v1/actions", act);
      await banner(a.page).waitFor({ timeout: 2000 });
      await banner(b.page).waitFor({ timeout: 2000 });
      // The same decision again (a replay): neither tab shows it twice.
      await admin(srv, "/v1/actions", act);
      // A reload keeps the tab's memory of the key, and the token: no new token asked.
      const before = tokens.length;
      const reopened = streamed(srv, a.page);
      await a.page.reload();
      await reopened;
      eq(tokens.length, before, "the cached token is used after a reload");
      await admin(srv, "/v1/actions", act);
      // A marker offer shows what arrived before it was seen.
      await push(srv, aid, { template: "banner", fields: { title: "Marker" } });
      for (const p of [a.page, b.page]) await p.locator("[aria-label=Marker]").waitFor({ timeout: 2000 });
      eq(tapped.text.split('"key":"' + key + '"').length - 1, 3, "the server sent the keyed offer three times");
      tapped.close();
      const evs = (await offerEvents(srv, [a.page, b.page], aid, 4)).filter((e) => e.properties.key === key);
      eq(names(evs), ["offer_shown", "offer_shown"], "one offer_shown per tab");
      eq(evs[0].properties, { template: "banner", rule: "spring-sale", key }, "properties");
      await context.close();
    }],

  ["a callback the page registers gets the offer instead of the banner; the demo's cart shows its own", async ({ srv, browser }) => {
    const context = await browser.newContext({ viewport: LAPTOP });
    const { page, aid } = await open(context, srv, "/demo/product/3");
    await page.click("#add");
    await page.click("#go-cart");
    await page.locator("h1", { hasText: "Your cart" }).waitFor();
    // The demo's own callback: "cart-note" offers appear in the cart, not as a banner.
    await push(srv, aid, { template: "cart-note",
      fields: { title: "Add a mug, ship for free.", text: "Code MUG5 takes €5 off.", code: "MUG5" } });
    await page.locator("#cart-offer:not([hidden])").waitFor({ timeout: 2000 });
    eq(await banner(page).count(), 0, "no banner for a cart note");
    await page.screenshot({ path: shot("offer-cart-laptop") });
    await page.click("#cart-offer-apply");
    await page.locator("#cart-offer .ok").waitFor();
    // A callback registered now replaces the demo's.
    await page.evaluate(() => sluice.onOffer((o, record) => { window.got = o; window.record = record; }));
    await push(srv, aid, { template: "custom", fields: { n: 1 } });
    const got = await waitFor(() => page.evaluate(() => window.got), 2000, "the callback");
    eq(got, { template: "custom", fields: { n: 1 } });
    eq(await banner(page).count(), 0, "no banner when the callback takes the offer");
    await page.evaluate(() => { record("dismissed"); record("dismissed"); });
    const evs = await offerEvents(srv, [page], aid, 4);
    eq(evs.map((e) => e.event + " " + e.properties.template).sort(),
      ["offer_clicked cart-note", "offer_dismissed custom", "offer_shown cart-note", "offer_shown custom"]);
    await context.close();
  }],

  ["an offer pushed while the tab is between pages is shown on the next page, once", async ({ srv, browser }) => {
    const context = await browser.newContext({ viewport: LAPTOP });
    const { page, aid } = await open(context, srv);
    await push(srv, aid, { template: "here", fields: { title: "Seen here" } });
    await page.locator("[aria-label='Seen here']").waitFor({ timeout: 2000 });
    await page.evaluate(() => sluice.flush());
    // The tab leaves the shop; a push meanwhile reaches no stream.
    await page.goto("about:blank");
    await waitFor(async () => (await admin(srv, "/v1/push", { anonymousId: aid, template: "probe" })).reached === 0,
      5000, "the stream to close");
    await admin(srv, "/v1/push", { anonymousId: aid, template: "away", fields: { title: "While away" } });
    const reopened = streamed(srv, page);
    await page.goto(srv.url + "/demo/cart");
    await reopened;
    await page.locator("[aria-label='While away']").waitFor({ timeout: 2000 });
    // (The probes are replayed too; how many depends on when the stream closed.)
    const evs = (await offerEvents(srv, [page], aid, 3)).filter((e) => e.properties.template !== "probe");
    eq(evs.map((e) => e.event + " " + e.properties.template).sort(),
      ["offer_shown away", "offer_shown here"], "each shown once");
    await context.close();
  }],

  ["a push to all reaches an open page", async ({ srv, browser }) => {
    const context = await browser.newContext({ viewport: LAPTOP });
    const { page } = await open(context, srv);
    const r = await admin(srv, "/v1/push", { all: true, template: "banner",
      fields: { title: "Flash sale", text: "Until 18:00: 15% off everything.", code: "FLASH15" } });
    assert(r.reached >= 1, "reached " + r.reached);
    await page.locator("[role=dialog][aria-label='Flash sale']").waitFor({ timeout: 2000 });
    await context.close();
  }],

  ["without marketing consent the stream is closed and not opened again", async ({ srv, browser }) => {
    const context = await browser.newContext();
    const { page, aid } = await open(context, srv, "/demo/", null);
    await page.click("#consent-analytics");
    // The stream closes: pushes soon reach nobody.
    await waitFor(async () => (await admin(srv, "/v1/push", { anonymousId: aid, template: "t" })).reached === 0,
      5000, "the stream to close");
    const streams = [];
    page.on("request", (r) => { if (r.url().includes("/v1/offers")) streams.push(r.url()); });
    await page.reload();
    await page.waitForFunction(() => window.sluice && window.sluice.ready);
    await new Promise((r) => setTimeout(r, 1000));
    eq(streams, [], "no token or stream requests");
    eq(await banner(page).count(), 0, "no banner");
    await context.close();
  }],

  ["a refused token (expired) is replaced and the stream opened again", async ({ browser }) => {
    const srv = await new Server(["--offers-token-ttl-s=2"]).start();
    try {
      const context = await browser.newContext();
      const tokens = [], refused = [];
      context.on("response", (r) => {
        if (r.url().endsWith("/v1/offers/token")) tokens.push(r.status());
        if (r.url().includes("/v1/offers?") && r.status() === 401) refused.push(r.status());
      });
      const { page, aid } = await open(context, srv);
      // one token, or more when a loaded machine took longer than its 2 s lifetime
      assert(tokens.length >= 1 && tokens.every((s) => s === 200), "tokens " + tokens);
      // The token expires on the server; a page whose clock is behind still thinks it
      // valid and opens the stream with it: 401, and the tracker asks for a new one.
      await new Promise((r) => setTimeout(r, 3000));
      await page.evaluate(() => {
        const t = JSON.parse(sessionStorage.sluice_token);
        t.expiresAt = new Date(Date.now() + 3600e3).toISOString();
        sessionStorage.sluice_token = JSON.stringify(t);
      });
      const before = tokens.length;
      const reopened = streamed(srv, page);
      await page.reload();
      await reopened;
      eq(refused, [401], "the stale token was refused once");
      eq(tokens.slice(before), [200], "one new token");
      await push(srv, aid, { template: "banner", fields: { title: "Back again" } });
      await page.locator("[aria-label='Back again']").waitFor({ timeout: 2000 });
      await context.close();
    } finally {
      await srv.cleanup();
    }
  }],
];
