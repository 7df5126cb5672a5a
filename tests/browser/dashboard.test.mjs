// The live dashboard at /: sign-in with the read key (a wrong key shows the sign-in
// screen with a message), the Now strip and charts following events sent through the
// API within 2 seconds, Explore's filtered figures equal to what POST /v1/query answers,
// the sampled live feed, the System view (version, geo credit, health), keyboard use, no
// console errors. Screenshots of each view, laptop and phone, go to build/screenshots/.
import { existsSync, mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { Server, launch, waitFor, assert, eq, ROOT, READ_KEY, WRITE_KEY } from "./lib.mjs";

const SCREENS = join(ROOT, "build", "screenshots");
const LAPTOP = { width: 1440, height: 900 }, PHONE = { width: 390, height: 844 };
const consoleErrors = [];

const PAGES = ["/", "/products/lantern", "/products/canal-map", "/cart", "/checkout", "/blog/locks", "/about"];
const CAMPAIGNS = [["google", "cpc", "winter-sale"], ["newsletter", "email", "november-digest"], ["instagram", "social", "lantern-launch"], null, null];
const COUNTRIES = ["NL", "DE", "BE", "FR", "GB", "US", "NL", "DE"];
const DEVICES = [["desktop", "Chrome"], ["mobile", "Mobile Safari"], ["desktop", "Firefox"], ["mobile", "Chrome Mobile"], ["tablet", "Safari"]];
const REFS = ["search", "social", "email", "direct", "internal"];

async function send(srv, batch) {
  const r = await fetch(srv.url + "/v1/batch", { method: "POST", headers: { "Content-Type": "application/json",
    Authorization: "Basic " + Buffer.from(WRITE_KEY + ":").toString("base64") }, body: JSON.stringify({ batch }) });
  eq(r.status, 200, "batch accepted");
}

async function query(srv, q) {
  const r = await fetch(srv.url + "/v1/query", { method: "POST", headers: { Authorization: "Bearer " + READ_KEY }, body: JSON.stringify(q) });
  eq(r.status, 200, "query " + JSON.stringify(q));
  return r.json();
}

// A shopper's visit: page views, maybe a product view and an order; deterministic by i.
function visit(i, t) {
  const c = CAMPAIGNS[i % CAMPAIGNS.length], [device, browser] = DEVICES[i % DEVICES.length];
  const ctx = { location: { country: COUNTRIES[i % COUNTRIES.length] }, device: { type: device }, browser: { name: browser },
    referrer: { class: REFS[i % REFS.length] }, sessionId: "s-" + i };
  if (c) ctx.campaign = { source: c[0], medium: c[1], name: c[2] };
  const ev = (extra, k) => ({ anonymousId: "visitor-" + i, timestamp: new Date(t + k * 20000).toISOString(), context: { ...ctx, page: { path: PAGES[(i + k) % PAGES.length] } }, ...extra });
  const out = [ev({ type: "page" }, 0), ev({ type: "page" }, 1)];
  if (i % 2 === 0) out.push(ev({ type: "track", event: "Product Viewed", properties: { product_id: "p" + (i % 5) } }, 2));
  if (i % 3 === 0) out.push(ev({ type: "track", event: "Product Added" }, 3));
  if (i % 5 === 0) out.push(ev({ type: "track", event: "Order Completed", properties: { revenue: 20 + (i * 37) % 140 } }, 4));
  return out;
}

// A day of history, denser in the afternoon, so the charts have a shape.
async function history(srv) {
  const now = Date.now(), batch = [];
  let seed = 7;
  const rand = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
  for (let i = 0; i < 900; i++) {
    const h = Math.floor(rand() * 1440), hour = new Date(now - h * 60000).getHours();
    if (rand() > 0.25 + 0.75 * Math.sin(((hour + 18) % 24) / 24 * Math.PI)) continue;
    batch.push(...visit(i, now - h * 60000 - 120000));
  }
  for (let k = 0; k < batch.length; k += 400) await send(srv, batch.slice(k, k + 400));
}

export async function setup() {
  const geo = [join(ROOT, "build", "geoip-country.mmdb"), join(ROOT, "build", "test-geo.mmdb")].find(existsSync);
  const srv = await new Server(geo ? ["--geo-db=" + geo] : []).start();
  await history(srv);
  mkdirSync(SCREENS, { recursive: true });
  return { srv, browser: await launch() };
}

export async function teardown({ srv, browser }) {
  await browser.close();
  await srv.cleanup();
  eq(consoleErrors, [], "console errors");
}

async function open(browser, srv, viewport, expectAuthErrors, colorScheme) {
  const context = await browser.newContext({ viewport: viewport || LAPTOP, colorScheme: colorScheme || "light" });
  const page = await context.newPage();
  const note = (m) => {
    if (expectAuthErrors && /status of 40[13]/.test(m)) return;
    consoleErrors.push(m);
  };
  page.on("console", (m) => { if (m.type() === "error") note(m.text()); });
  page.on("pageerror", (e) => note(e.message));
  await page.goto(srv.url + "/");
  return { context, page };
}

async function signIn(page, key) {
  await page.locator("#login-key").fill(key);
  await page.click("#login-submit");
}

// A page signed in with the read key, the app shown.
async function signedIn(browser, srv, viewport, colorScheme) {
  const { context, page } = await open(browser, srv, viewport, false, colorScheme);
  await signIn(page, READ_KEY);
  await page.locator("#app").waitFor();
  return { context, page };
}

async function overviewReady(page) {
  await page.locator("#app").waitFor();
  await waitFor(() => page.evaluate(() => document.querySelector("#kpi-events .value") &&
    document.querySelector("#traffic-chart svg") && document.querySelector("#now-eps").textContent !== "–"), 15000, "overview loaded");
}

const text = (page, sel) => page.locator(sel).textContent();
const number = (s) => Number(s.replace(/[^0-9.\-]/g, ""));

async function shoot(page, name, fullPage) {
  await page.screenshot({ path: join(SCREENS, name + ".png"), fullPage: !!fullPage });
}

export const tests = [
  ["the whole dashboard is under 40 KB gzipped and loads nothing from elsewhere", async ({ srv }) => {
    const html = await (await fetch(srv.url + "/")).text();
    const refs = [...html.matchAll(/(?:src|href)="([^"#][^"]*)"/g)].map((m) => m[1]);
    assert(refs.length >= 8 && refs.every((r) => r.startsWith("/dashboard/")), "assets are ours: " + refs);
    let total = gzipSync(Buffer.from(html), { level: 9 }).length;
    for (const r of refs) {
      const res = await fetch(srv.url + r);
      eq(res.status, 200, r);
      total += gzipSync(Buffer.from(await res.arrayBuffer()), { level: 9 }).length;
    }
    console.log("     dashboard: " + (refs.length + 1) + " files, " + total + " bytes gzipped");
    assert(total < 40 * 1024, "gzipped size " + total);
  }],

  ["a wrong key shows the sign-in screen with a clear message", async ({ srv, browser }) => {
    const { context, page } = await open(browser, srv, LAPTOP, true);
    await page.locator("#login").waitFor();
    assert(await page.locator("#app").isHidden(), "nothing but the sign-in screen before a key");
    await shoot(page, "dash-login-laptop");
    await signIn(page, "not-a-key");
    await page.locator("#login-msg").waitFor();
    assert(/not accepted/.test(await text(page, "#login-msg")), "message for an unknown key");
    await shoot(page, "dash-login-wrong-key-laptop");
    await signIn(page, WRITE_KEY);
    await waitFor(async () => /write key/.test(await text(page, "#login-msg")), 5000, "message for the write key");
    assert(await page.locator("#app").isHidden(), "still signed out");
    // A key kept from before that is no longer valid: back to the sign-in screen.
    await page.evaluate(() => sessionStorage.setItem("sluice_read_key", "revoked"));
    await page.reload();
    await page.locator("#login-msg").waitFor();
    assert(/not accepted/.test(await text(page, "#login-msg")), "message for a stale key");
    eq(await page.evaluate(() => sessionStorage.getItem("sluice_read_key")), null, "stale key forgotten");
    await context.close();
  }],

  ["the read key opens the overview; counters and charts follow new events within 2 s", async ({ srv, browser }) => {
    const { context, page } = await open(browser, srv);
    const foreign = [];
    page.on("request", (r) => { if (!r.url().startsWith(srv.url + "/")) foreign.push(r.url()); });
    await signIn(page, READ_KEY);
    await overviewReady(page);
    await page.locator("#conn.on").waitFor();
    eq(await page.evaluate(() => sessionStorage.getItem("sluice_read_key")), READ_KEY, "key kept for the tab");
    const before = { orders: await text(page, "#now-orders"), revenue: await text(page, "#now-revenue"),
      chart: await page.locator("#traffic-chart svg").getAttribute("aria-label"),
      revChart: await page.locator("#revenue-chart svg").getAttribute("aria-label"), kpiOrders: await text(page, "#kpi-orders .value") };
    const t = new Date().toISOString();
    const batch = [];
    for (let i = 0; i < 3; i++) batch.push({ type: "track", event: "Order Completed", anonymousId: "live-" + i, timestamp: t, properties: { revenue: 50 } },
      { type: "track", event: "Dashboard Probe", anonymousId: "live-" + i, timestamp: t });
    await send(srv, batch);
    const acked = Date.now();
    await waitFor(async () => (await text(page, "#now-orders")) !== before.orders &&
      (await text(page, "#now-revenue")) !== before.revenue, 2000, "Now strip within 2 s");
    const strip = Date.now() - acked;
    await waitFor(async () => (await page.locator("#traffic-chart svg").getAttribute("aria-label")) !== before.chart &&
      (await page.locator("#revenue-chart svg").getAttribute("aria-label")) !== before.revChart, 2000, "charts within 2 s");
    console.log("     Now strip changed after " + strip + " ms, charts after " + (Date.now() - acked) + " ms");
    // KPI tiles and top lists follow within 5 s.
    await waitFor(async () => /Dashboard Probe/.test(await text(page, "#top-event")) &&
      (await text(page, "#kpi-orders .value")) !== before.kpiOrders, 6000, "top list and KPI tiles");
    eq(number(await text(page, "#now-orders")) - number(before.orders), 3, "three more orders");
    // The figures are the query API's.
    const today = (await query(srv, { type: "kpi", kpi: "orders", from: await page.evaluate(() => SD.startOfToday()), to: "now" })).value;
    await waitFor(async () => number(await text(page, "#now-orders")) === today, 3000, "orders today = query API");
    eq(foreign, [], "requests outside sluice");
    await page.waitForTimeout(300);
    await shoot(page, "dash-overview-laptop", true);
    await context.close();
  }],

  ["Explore: a filter shows the numbers the query API gives", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    await overviewReady(page);
    await page.click("#nav-explore");
    await page.locator("#ex-chart svg").waitFor();
    await page.selectOption("#ex-range", "24h");
    await page.selectOption("#ex-dim", "country");
    await page.locator("#ex-value").fill("NL");
    await page.click("#ex-apply");
    await waitFor(async () => /country = NL/.test(await text(page, "#ex-total-label")), 5000, "filtered total");
    const shown = number(await text(page, "#ex-total"));
    const asked = JSON.parse(await page.locator("#ex-chart").getAttribute("data-query"));
    eq(asked.filter, { dimension: "country", value: "NL" }, "the query asked");
    assert(Date.now() - asked.from >= 24 * 3600000 && Date.now() - asked.from < 25 * 3600000, "24 hours: " + asked.from);
    const api = await query(srv, { type: "totals", from: asked.from, to: asked.to, filter: asked.filter });
    eq(shown, api.count, "events where country = NL");
    assert(shown > 0, "some NL events");
    // The chart's table holds the points the query API gives for the same query.
    const cells = await page.locator("#ex-chart ~ div table tbody tr td:nth-child(2)").allTextContents();
    const pts = (await query(srv, { type: "timeseries", ...asked })).points;
    eq(cells.map(number), pts.map((p) => p.count), "the table's points");
    // Revenue for the same filter.
    await page.selectOption("#ex-metric", "sum");
    await waitFor(async () => /^Revenue/.test(await text(page, "#ex-total-label")), 5000, "revenue");
    const rev = number(await text(page, "#ex-total"));
    assert(Math.abs(rev - api.sum) < 0.01, "revenue " + rev + " = " + api.sum);
    // The previous period is drawn as a second series.
    eq(await page.locator("#ex-chart path.line").count(), 2, "current and previous period");
    // Keyboard: the chart reads out points.
    await page.focus("#ex-chart svg");
    await page.keyboard.press("ArrowRight");
    assert(await page.locator("#ex-chart .tip").isVisible(), "tooltip from the keyboard");
    await page.selectOption("#ex-metric", "count");
    // The breakdown's rows are the topN answer; picking one filters the chart by it.
    await page.selectOption("#ex-by", "device_type");
    await page.locator("#ex-breakdown th", { hasText: "Device" }).waitFor();
    const top = await query(srv, { type: "topN", dimension: "device_type", from: asked.from, to: asked.to, limit: 15 });
    eq(await page.locator("#ex-breakdown tbody td:first-child").allTextContents(), top.rows.map((r) => r.value), "breakdown rows");
    await page.click("#ex-breakdown button >> text=mobile");
    await waitFor(async () => /device_type = mobile/.test(await text(page, "#ex-total-label")), 5000, "filter from the breakdown");
    const mobile = await query(srv, { type: "totals", ...JSON.parse(await page.locator("#ex-chart").getAttribute("data-query")) });
    eq(number(await text(page, "#ex-total")), mobile.count, "events where device_type = mobile");
    await page.waitForTimeout(400);
    await shoot(page, "dash-explore-laptop", true);
    // 90 days: days summed from hourly points (more than 1000 hours: several requests).
    await page.selectOption("#ex-range", "90d");
    await waitFor(async () => /last 90 days/.test(await text(page, "#ex-total-label")), 8000, "90 days");
    const days = await page.locator("#ex-chart ~ div table tbody tr").count();
    assert(days >= 90 && days <= 92, "one row a day: " + days);
    const q90 = JSON.parse(await page.locator("#ex-chart").getAttribute("data-query"));
    eq(q90.granularity, "day", "automatic granularity for 90 days");
    let hourly = 0;
    for (let f = q90.from; f < q90.to; f += 900 * 3600000) {
      const r = await query(srv, { type: "timeseries", filter: q90.filter, granularity: "hour", from: f, to: Math.min(q90.to, f + 900 * 3600000) });
      hourly += r.points.reduce((a, p) => a + p.count, 0);
    }
    const daily = (await page.locator("#ex-chart ~ div table tbody td:nth-child(2)").allTextContents()).reduce((a, c) => a + number(c), 0);
    eq(daily, hourly, "the days add up to the API's hours");
    assert(!(await text(page, "[role=alert].error")), "no error");
    await context.close();
  }],

  ["the live feed shows new events with their enrichment", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    // Keyboard navigation: Enter on a focused link switches the view.
    await page.focus("#nav-feed");
    await page.keyboard.press("Enter");
    await page.locator("h1", { hasText: "Live feed" }).waitFor();
    await page.waitForTimeout(300);
    const t = Date.now();
    for (let k = 0; k < 3; k++) {
      // The probe carries a page URL and a user agent only: campaign, browser and device
      // are what enrichment derived from them.
      await send(srv, [0, 1, 2, 3, 4].flatMap((i) => visit(100 + k * 5 + i, t)).concat([{ type: "track", event: "Feed Probe",
        anonymousId: "probe", timestamp: new Date().toISOString(), context: {
          page: { url: "https://shop.example/spring?utm_source=newsletter&utm_medium=email&utm_campaign=probe-campaign", path: "/spring" },
          userAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" } }]));
      await page.waitForTimeout(400);
    }
    const row = page.locator("#feed-rows tr", { hasText: "Feed Probe" }).first();
    await row.waitFor({ timeout: 5000 });
    const cells = await row.locator("td").allTextContents();
    assert(cells.includes("probe-campaign") && cells.includes("newsletter") && cells.includes("Firefox") &&
      cells.includes("desktop") && cells.includes("/spring"), "enriched fields: " + cells);
    assert(/events in the last second/.test(await text(page, "#feed-status")), "status line");
    await shoot(page, "dash-feed-laptop");
    await context.close();
  }],

  ["System shows version, geo credit, health and storage", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    await page.click("#nav-system");
    const v = await (await fetch(srv.url + "/version")).json();
    await waitFor(async () => (await text(page, "#sys-version")) === "sluice " + v.version, 5000, "version");
    if (v.geoDatabase) {
      eq(await text(page, "#sys-geo"), v.geoDatabase, "geo credit in System");
      assert((await text(page, "#foot-geo")).includes(v.geoDatabase), "geo credit in the footer");
    }
    await waitFor(async () => (await text(page, "#sys-ingest")) !== "…" && (await text(page, "#sys-log")) !== "–", 6000, "metrics");
    assert(/B$/.test(await text(page, "#sys-log")), "log size in bytes");
    assert(/OK/.test(await text(page, "#sys-health")), "health");
    await shoot(page, "dash-system-laptop");
    await context.close();
  }],

  ["dark mode follows the system setting", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv, LAPTOP, "dark");
    await overviewReady(page);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    assert(r + g + b < 150 && !/rgba\(0, 0, 0, 0\)/.test(bg), "dark background: " + bg);
    await page.waitForTimeout(500);
    await shoot(page, "dash-overview-laptop-dark");
    await context.close();
  }],

  ["phone layout: every view fits 390 px", async ({ srv, browser }) => {
    const { context, page } = await open(browser, srv, PHONE);
    await shoot(page, "dash-login-phone");
    await signIn(page, READ_KEY);
    await overviewReady(page);
    for (const v of ["overview", "explore", "feed", "system"]) {
      await page.click("#nav-" + v);
      if (v === "feed") {
        await page.waitForTimeout(300);
        await send(srv, [0, 1, 2, 3, 4, 5, 6, 7].flatMap((i) => visit(300 + i, Date.now())));
        await page.locator("#feed-rows tr").first().waitFor({ timeout: 5000 });
      }
      await page.waitForTimeout(v === "overview" ? 600 : 1200);
      const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(over <= 0, v + ": " + over + " px wider than the phone");
      await shoot(page, "dash-" + v + "-phone");
      if (v === "overview") {
        await page.locator("#traffic-chart").scrollIntoViewIfNeeded();
        await shoot(page, "dash-overview-phone-charts");
      }
    }
    await context.close();
  }],
];
