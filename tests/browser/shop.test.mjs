// Browse the demo shop and buy something, as a shopper would; then check through
// `sluice export` that exactly the expected events were stored, in order, with
// Segment-compatible payloads. Screenshots go to build/browser-screenshots/.
import { serverAndBrowser, closeBoth, waitFor, shotPath, assert, eq, brief } from "./lib.mjs";

const OPT_IN = ["Element Hovered", "Scroll Depth Reached", "Key Pressed"];
const errors = []; // uncaught errors in any page: the tracker must never throw into it
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export const setup = () => serverAndBrowser();

export async function teardown(ctx) {
  await closeBoth(ctx);
  eq(errors, [], "page errors");
}

async function open(browser, srv, path, viewport) {
  const context = await browser.newContext({ viewport: viewport || { width: 1200, height: 860 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(srv.url + path);
  await page.waitForFunction(() => window.sluice && window.sluice.ready);
  return { context, page, aid: await page.evaluate(() => sluice.anonymousId()) };
}

function mine(srv, aid) {
  return srv.export().filter((e) => e.anonymousId === aid);
}

export const tests = [
  ["browse and buy: exactly the expected events, Segment-shaped", async ({ srv, browser }) => {
    const { context, page, aid } = await open(browser, srv, "/demo/");
    await page.locator("#consent").waitFor();
    await page.screenshot({ path: shotPath("1-catalog") });
    await page.click("#consent-all");
    await page.click("#p-2");
    await page.locator("h1", { hasText: "Lock Keeper's Lantern" }).waitFor();
    await page.click("#add");
    await page.locator("#go-cart").waitFor();
    await page.screenshot({ path: shotPath("2-product") });
    await page.click("#go-cart");
    await page.locator("h1", { hasText: "Your cart" }).waitFor();
    await page.screenshot({ path: shotPath("3-cart") });
    await page.click("#checkout");
    await page.locator("h1", { hasText: "Checkout" }).waitFor();
    await page.locator("#email").pressSequentially("ada@example.com");
    await page.locator("#name").pressSequentially("Ada Lovelace");
    await page.locator("#address").pressSequentially("1 Secret Canal Street");
    await page.screenshot({ path: shotPath("4-checkout") });
    await page.click("#place-order");
    await page.locator("h1", { hasText: "Thank you" }).waitFor();
    await page.locator("#nl-email").pressSequentially("typed-only@example.org");
    await page.click("#nl-submit");
    await page.locator("#nl-thanks").waitFor();
    await page.screenshot({ path: shotPath("5-thanks"), fullPage: true });

    const expected = [
      "page /demo/", "click button#consent-all", "click a#p-2", "page /demo/product/2",
      "track Product Viewed", "click button#add", "track Product Added", "click a#go-cart",
      "page /demo/cart", "track Cart Viewed", "click a#checkout", "page /demo/checkout",
      "track Checkout Started", "click button#place-order", "identify " /* + id */,
      "track Order Completed", "page /demo/thanks", "click button#nl-submit",
      "track Newsletter Signed Up"];
    const core = () => mine(srv, aid).filter((e) => !OPT_IN.includes(e.event));
    await waitFor(() => core().length >= expected.length, 15000, "the shop's events");
    // Anything queued but unsent would show up now: flush, then look again.
    await page.evaluate(() => sluice.flush());
    await waitFor(() => page.evaluate(() => JSON.parse(localStorage.sluice_queue).length === 0), 5000, "empty queue");
    const all = mine(srv, aid), evs = all.filter((e) => !OPT_IN.includes(e.event));
    const got = evs.map(brief);
    const userId = evs.find((e) => e.type === "identify").userId;
    assert(/^cust-[0-9a-z]+$/.test(userId), "userId " + userId);
    expected[14] = "identify " + userId;
    eq(got, expected, "stored events");

    // Segment-compatible payloads.
    const ids = new Set(all.map((e) => e.messageId));
    eq(ids.size, all.length, "messageIds are unique");
    for (const e of all) {
      assert(UUID.test(e.messageId), "messageId " + e.messageId);
      assert(e.timestamp && e.sentAt && e.context.userAgent, "timestamp, sentAt, userAgent: " + JSON.stringify(e));
      eq(e.context.library, { name: "sluice.js", version: "0.1.0" }, "library");
      assert(UUID.test(e.context.sessionId) && e.context.sessionId === all[0].context.sessionId, "one session");
      for (const k of ["url", "path", "referrer", "title"]) assert(k in e.context.page, "context.page." + k);
    }
    const byBrief = (b) => evs[got.indexOf(b)];
    // Consent: none before the choice, Segment's categoryPreferences after it.
    assert(!byBrief("page /demo/").context.consent.categoryPreferences, "no preferences before the choice");
    eq(byBrief("track Product Added").context.consent.categoryPreferences, { Analytics: true, Advertising: true });
    eq(byBrief("track Product Added").context.consent.marketing, true, "server's marketing consent");
    eq(byBrief("track Product Added").properties,
      { product_id: "2", name: "Lock Keeper's Lantern", price: 64, quantity: 1, currency: "EUR" });
    // Clicks are described briefly.
    eq(byBrief("click a#p-2").properties, { tag: "a", id: "p-2", classes: ["card"],
      text: "Lock Keeper's Lantern €64.00", href: srv.url + "/demo/product/2" });
    // SPA page views: path, title once the app set it, the previous page as referrer.
    const pv = byBrief("page /demo/product/2");
    eq([pv.properties.path, pv.properties.title, pv.properties.referrer, pv.context.page.title],
      ["/demo/product/2", "Lock Keeper's Lantern · Sluice Supply", srv.url + "/demo/",
        "Lock Keeper's Lantern · Sluice Supply"], "page view");
    eq(byBrief("track Product Viewed").context.page.path, "/demo/product/2");
    // identify sets the user for what follows; the order carries the cart.
    const order = byBrief("track Order Completed");
    eq(order.userId, userId);
    eq([order.properties.total, order.properties.products.length], [64, 1]);
    assert(!byBrief("track Product Added").userId, "no userId before identify");

    // Key presses: the field type, never what was typed.
    const keys = all.filter((e) => e.event === "Key Pressed").map((e) => e.properties.fieldType);
    for (const t of ["email", "text", "textarea"]) assert(keys.includes(t), "key press in a " + t + " field: " + keys);
    const disk = srv.allBytes();
    for (const typed of ["Secret Canal", "typed-only@example.org"])
      assert(!disk.includes(typed), "'" + typed + "' was typed, never sent: found on disk");
    await context.close();
  }],

  ["opt-in hovers and scroll depth", async ({ srv, browser }) => {
    const { context, page, aid } = await open(browser, srv, "/demo/", { width: 900, height: 500 });
    await page.click("#consent-analytics");
    await page.hover("#p-5");
    await waitFor(() => mine(srv, aid).some((e) => e.event === "Element Hovered" && e.properties.id === "p-5"),
      10000, "hover on #p-5");
    await page.mouse.move(5, 5);
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await waitFor(() => mine(srv, aid).some((e) => e.event === "Scroll Depth Reached" && e.properties.depth === 100),
      10000, "scroll depth 100");
    const prefs = mine(srv, aid).filter((e) => e.event === "Element Hovered")[0].context.consent;
    eq([prefs.categoryPreferences, prefs.marketing], [{ Analytics: true, Advertising: false }, false]);
    // A hover is recorded once per element per page view.
    eq(mine(srv, aid).filter((e) => e.event === "Element Hovered" && e.properties.id === "p-5").length, 1);
    await context.close();
  }],
];
