// Delivery: offline (events wait in localStorage and arrive exactly once when the
// browser is back, also from a later page), retries with backoff after server errors,
// and sendBeacon when the tab closes with a batch still pending.
import { serverAndBrowser, closeBoth, waitFor, assert, eq } from "./lib.mjs";

export const setup = () => serverAndBrowser();

export const teardown = closeBoth;

async function open(context, srv, path) {
  const page = await context.newPage();
  await page.goto(srv.url + path);
  await page.waitForFunction(() => window.sluice && window.sluice.ready);
  return page;
}

// Stored events of one visitor, by messageId: [event, count].
function stored(srv, aid) {
  const m = new Map();
  for (const e of srv.export())
    if (e.anonymousId === aid) m.set(e.messageId, [e, (m.get(e.messageId) || [0, 0])[1] + 1]);
  return m;
}

const queued = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("sluice_queue") || "[]"));

// Every event in `ids` stored exactly once, and nothing else of this visitor beyond `ids`.
async function exactlyOnce(srv, aid, ids, what) {
  await waitFor(() => { const m = stored(srv, aid); return ids.every((i) => m.has(i)); }, 15000, what);
  const m = stored(srv, aid);
  for (const [id, [e, n]] of m) eq(n, 1, "copies of " + (e.event || e.type) + " " + id);
  eq([...m.keys()].sort(), [...ids].sort(), what + ": stored ids");
}

export const tests = [
  ["offline: events wait, then arrive exactly once", async ({ srv, browser }) => {
    const context = await browser.newContext();
    const page = await open(context, srv, "/demo/");
    const aid = await page.evaluate(() => sluice.anonymousId());
    await page.evaluate(() => sluice.flush());
    await waitFor(() => stored(srv, aid).size === 1, 10000, "the first page view");
    const first = [...stored(srv, aid).keys()];

    await context.setOffline(true);
    await page.click("#p-3");
    await page.click("#add");
    await page.click("#go-cart");
    await page.locator("h1", { hasText: "Your cart" }).waitFor();
    await page.evaluate(() => { for (let i = 0; i < 25; i++) sluice.track("Offline " + i, { i }); });
    await page.evaluate(() => sluice.flush());
    // 30 or more events (past flush-at) and nothing could go out: all still queued, none stored.
    const q = await queued(page);
    assert(q.length >= 30, "queued while offline: " + q.length);
    eq(stored(srv, aid).size, 1, "nothing stored while offline");

    await context.setOffline(false);
    await exactlyOnce(srv, aid, first.concat(q.map((e) => e.messageId)), "the offline events");
    await waitFor(async () => (await queued(page)).length === 0, 5000, "an empty queue");
    await context.close();
  }],

  ["offline queue survives the page: a later page sends it, once", async ({ srv, browser }) => {
    const context = await browser.newContext();
    let page = await open(context, srv, "/demo/product/4");
    const aid = await page.evaluate(() => sluice.anonymousId());
    await context.setOffline(true);
    await page.evaluate(() => { sluice.track("Wish Listed", { product_id: "4" }); sluice.identify("u-42", { plan: "gold" }); });
    const q = await queued(page);
    await page.close(); // offline: no beacon can go; the queue stays in localStorage
    await context.setOffline(false);
    page = await open(context, srv, "/demo/cart");
    const later = await queued(page);
    const ids = q.map((e) => e.messageId).concat(later.map((e) => e.messageId));
    await exactlyOnce(srv, aid, [...new Set(ids)], "queued events from the closed page");
    const m = stored(srv, aid);
    const wish = [...m.values()].find(([e]) => e.event === "Wish Listed")[0];
    eq([wish.properties.product_id, wish.context.page.path], ["4", "/demo/product/4"]);
    const cartView = [...m.values()].find(([e]) => e.type === "page" && e.context.page.path === "/demo/cart")[0];
    eq(cartView.userId, "u-42", "the identity persists across pages");
    await context.close();
  }],

  ["server errors: retried with backoff until stored, once", async ({ srv, browser }) => {
    const context = await browser.newContext();
    const attempts = [];
    await context.route("**/v1/batch", (route) => {
      attempts.push(Date.now());
      return attempts.length <= 2
        ? route.fulfill({ status: 503, headers: { "Retry-After": "1" }, body: '{"success":false,"error":"overloaded"}' })
        : route.continue();
    });
    const page = await open(context, srv, "/demo/");
    const aid = await page.evaluate(() => sluice.anonymousId());
    await page.evaluate(() => { sluice.track("Retried", { n: 1 }); sluice.flush(); });
    const ids = (await queued(page)).map((e) => e.messageId);
    eq(ids.length, 2, "page view + Retried queued");
    await exactlyOnce(srv, aid, ids, "retried events");
    assert(attempts.length >= 3, "attempts " + attempts.length);
    const gap1 = attempts[1] - attempts[0], gap2 = attempts[2] - attempts[1];
    assert(gap1 >= 400 && gap2 >= 900, "backoff grows: " + gap1 + " ms, then " + gap2 + " ms");
    await context.close();
  }],

  ["closing the tab mid-batch: sendBeacon delivers it", async ({ srv, browser }) => {
    const context = await browser.newContext();
    const page = await open(context, srv, "/demo/");
    const aid = await page.evaluate(() => sluice.anonymousId());
    await page.evaluate(() => sluice.flush());
    await waitFor(() => stored(srv, aid).size === 1, 10000, "the first page view");
    // The server stores the page view before the tracker reads the answer and drops it
    // from its queue: wait for that too, so the queue below holds only the three.
    await page.waitForFunction(() => JSON.parse(localStorage.getItem("sluice_queue") || "[]").length === 0,
      null, { timeout: 10000 });
    const first = [...stored(srv, aid).keys()];
    const fetched = [];
    page.on("request", (r) => { if (r.url().endsWith("/v1/batch")) fetched.push([r.resourceType(), r.postData() || ""]); });
    // Three events, then the tab closes well before the 2 s batch timer.
    const ids = await page.evaluate(() => {
      for (const n of ["Beacon A", "Beacon B", "Beacon C"]) sluice.track(n);
      return JSON.parse(localStorage.getItem("sluice_queue")).map((e) => e.messageId);
    });
    eq(ids.length, 3);
    await page.close();
    await exactlyOnce(srv, aid, first.concat(ids), "events pending when the tab closed");
    assert(!fetched.some(([t, body]) => t === "fetch" && body.includes("Beacon A")),
      "the batch timer had not sent them: " + JSON.stringify(fetched.map(([t]) => t)));
    await context.close();
  }],
];
