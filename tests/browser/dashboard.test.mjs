// The live dashboard at /: sign-in with the read key (a wrong key shows the sign-in
// screen with a message), the Now strip and charts following events sent through the
// API within 2 seconds, Explore's filtered figures equal to what POST /v1/query answers,
// the sampled live feed, the System view (version, geo credit, health), keyboard use, no
// console errors; the KPIs view (every KPI of GET /v1/kpis, a configured one included, with
// the API's values), Funnels and Retention against the API's answers, Explore's
// multi-condition filter answered by a log scan, the act stage in System. Screenshots of
// each view, laptop and phone, go to build/screenshots/.
import { existsSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { Server, launch, waitFor, assert, eq, ROOT, READ_KEY, WRITE_KEY } from "./lib.mjs";

const SCREENS = join(ROOT, "build", "screenshots");
const LAPTOP = { width: 1440, height: 900 }, PHONE = { width: 390, height: 844 };
const consoleErrors = [];
// Console errors a test provokes on purpose (a regular expression), or null.
let expectedErrors = null;

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

// A configured KPI: the KPIs view must list it beside the built-in ones.
const CONFIG = `kpis:
  - name: add_to_cart_rate
    format: percent
    numerator: {event: Product Added, metric: uniques}
    denominator: {event: Product Viewed, metric: uniques}
`;

export async function setup() {
  const geo = [join(ROOT, "build", "geoip-country.mmdb"), join(ROOT, "build", "test-geo.mmdb")].find(existsSync);
  mkdirSync(join(ROOT, "build"), { recursive: true });
  const conf = join(ROOT, "build", "dashboard-test-config.yaml");
  writeFileSync(conf, CONFIG);
  const srv = await new Server((geo ? ["--geo-db=" + geo] : []).concat(["--config=" + conf])).start();
  srv.conf = conf;
  await history(srv);
  mkdirSync(SCREENS, { recursive: true });
  return { srv, browser: await launch() };
}

export async function teardown({ srv, browser }) {
  await browser.close();
  await srv.cleanup();
  rmSync(srv.conf, { force: true });
  eq(consoleErrors, [], "console errors");
}

async function open(browser, srv, viewport, expectAuthErrors, colorScheme) {
  const context = await browser.newContext({ viewport: viewport || LAPTOP, colorScheme: colorScheme || "light" });
  const page = await context.newPage();
  const note = (m) => {
    if (expectAuthErrors && /status of 40[13]/.test(m)) return;
    if (expectedErrors && expectedErrors.test(m)) return;
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
// The dashboard's own formatting of a figure, to compare what it shows with an answer.
const shown = (page, kind, v) => page.evaluate(([k, x]) => SD.fmt[k](x), [kind, v]);

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
    for (let i = 0; i < 3; i++) batch.push({ type: "track", event: "Order Completed", anonymousId: "live-" + i, timestamp: t, properties: { revenue: 50, product_id: 4711 } },
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
    // Top products: the orders carry a numeric properties.product_id.
    await waitFor(async () => /4711/.test(await text(page, "#top-product")), 5000, "top products listed");
    // The figures are the query API's.
    // The strip's "today" is the server's: since 00:00 UTC.
    const today = (await query(srv, { type: "kpi", kpi: "orders", from: Math.floor(Date.now() / 86400000) * 86400000, to: "now" })).value;
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
      await send(srv, [0, 1, 2, 3, 4].flatMap((i) => visit(100 + k * 5 + i, t)));
      await page.waitForTimeout(400);
    }
    // The feed shows at most 20 events of each second, picked at random: the probe goes
    // alone, after the visits' second has passed, so it is always among them.
    // It carries a page URL and a user agent only: campaign, browser and device are what
    // enrichment derived from them.
    await page.waitForTimeout(1200);
    await send(srv, [{ type: "track", event: "Feed Probe", anonymousId: "probe", timestamp: new Date().toISOString(),
      context: { page: { url: "https://shop.example/spring?utm_source=newsletter&utm_medium=email&utm_campaign=probe-campaign", path: "/spring" },
        userAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" } }]);
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

  ["KPIs: a tile for every KPI of the catalogue, the configured one included, with the API's value", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    await page.click("#nav-kpis");
    const cat = await (await fetch(srv.url + "/v1/kpis", { headers: { Authorization: "Bearer " + READ_KEY } })).json();
    assert(cat.kpis.length >= 23 && cat.kpis.some((k) => k.name === "add_to_cart_rate" && k.custom), "catalogue with the configured KPI");
    await waitFor(() => page.evaluate((n) => document.querySelectorAll("#kpi-tiles .kpi").length === n &&
      [...document.querySelectorAll("#kpi-tiles .kpi .value")].every((v) => v.textContent !== "…"), cat.kpis.length), 15000, "every tile loaded");
    const ids = await page.locator("#kpi-tiles .kpi").evaluateAll((ns) => ns.map((n) => n.id.slice(5)));
    eq(ids.slice().sort(), cat.kpis.map((k) => k.name).sort(), "one tile per KPI");
    assert(/custom/.test(await text(page, "#kpit-add_to_cart_rate .label")), "configured KPI marked");
    // The 7-day tiles: values and deltas are the API's for the same range.
    const to = Date.now(), from = to - 7 * 86400000;
    for (const name of ["add_to_cart_rate", "revenue", "orders", "conversion_rate", "aov", "active_users"]) {
      const a = await query(srv, { type: "kpi", kpi: name, from, to, compare: "previous" });
      const kind = a.format === "percent" ? "pct" : a.format === "currency" ? "money" : "compact";
      eq(await text(page, "#kpit-" + name + " .value"), await shown(page, kind, a.value), name + " tile");
    }
    assert(/%$/.test(await text(page, "#kpit-add_to_cart_rate .value")), "percent format");
    assert(/\d\.\d\d$/.test(await text(page, "#kpit-revenue .value")), "currency format");
    assert(/vs previous period|previous/.test(await text(page, "#kpit-revenue .sub")), "previous period");
    // Per-campaign KPIs: one row per campaign with traffic.
    await page.locator("#kpi-campaigns tbody tr").first().waitFor();
    const camp = await query(srv, { type: "kpi", kpi: "conversion_rate", from, to, filter: { dim: "utm_campaign", value: "winter-sale" } });
    const row = await page.locator("#kpi-campaigns tr", { hasText: "winter-sale" }).locator("td").first().textContent();
    eq(row, await shown(page, "pct", camp.value), "conversion rate of winter-sale");
    await shoot(page, "dash-kpis-laptop", true);
    await context.close();
  }],

  ["Funnels: the bars and the table show the API's answer; busy is retried, limits explained", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    // The first funnel request answers 503 busy: the view says so and asks again.
    expectedErrors = /status of (503|422)/;
    let busy = 1;
    await page.route("**/v1/query", (route) => {
      const body = route.request().postDataJSON();
      if (body && body.type === "funnel" && busy-- > 0)
        return route.fulfill({ status: 503, headers: { "Retry-After": "1", "Content-Type": "application/json" }, body: '{"success":false,"error":"busy","message":"too many log scans are running; retry shortly"}' });
      return route.continue();
    });
    await page.click("#nav-funnel");
    await waitFor(async () => /busy, retrying/i.test(await text(page, "#fn-status")), 5000, "busy shown");
    await page.locator("#fn-table tbody tr").first().waitFor({ state: "attached", timeout: 15000 });
    const check = async () => {
      const q = JSON.parse(await page.locator("#fn-result").getAttribute("data-query"));
      const a = await query(srv, q);
      const rows = await page.locator("#fn-table tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
      eq(rows.length, a.steps.length, "one row a step");
      for (let i = 0; i < rows.length; i++) {
        const s = a.steps[i];
        eq(rows[i].slice(1, 5), [await shown(page, "int", s.users), await shown(page, "pct", s.conversionFromFirst),
          await shown(page, "pct", s.conversionFromPrevious), await shown(page, "int", s.dropOff)], "step " + (i + 1));
        eq(number(await page.locator("#fn-bars li").nth(i).locator(".fn-users").textContent()), s.users, "bar " + (i + 1));
      }
      return { q, a };
    };
    const { q, a } = await check();
    eq(q.steps.map((s) => s.event), ["$page", "Product Viewed", "Product Added", "Order Completed"], "default steps from the top events");
    assert(a.steps[0].users > 0 && a.steps[3].users > 0, "people went through");
    await shoot(page, "dash-funnel-laptop", true);
    // Keyboard: add a step, remove it, break down by device, run with Enter.
    await page.focus("#fn-add");
    await page.keyboard.press("Enter");
    await page.locator("#fn-step-5").waitFor();
    eq(await page.evaluate(() => document.activeElement.id), "fn-step-5", "focus on the new step");
    await page.locator("[aria-label='Remove step 5']").focus();
    await page.keyboard.press("Enter");
    eq(await page.locator("#fn-steps li").count(), 4, "step removed");
    await page.selectOption("#fn-by", "device_type");
    await page.selectOption("#fn-window", "1h");
    await page.focus("#fn-run");
    await page.keyboard.press("Enter");
    await waitFor(async () => (await page.locator("#fn-groups tbody tr").count()) > 0 &&
      JSON.parse(await page.locator("#fn-result").getAttribute("data-query")).window === "1h", 15000, "breakdown");
    const b = await check();
    eq(b.q.breakdown, "device_type", "breakdown asked");
    const groups = await page.locator("#fn-groups tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
    eq(groups.map((g) => g[0]), b.a.groups.map((g) => g.value == null ? "(none)" : g.value), "breakdown groups");
    eq(groups.map((g) => g.slice(1, 5).map(number)), b.a.groups.map((g) => g.steps.map((s) => s.users)), "users per group and step");
    await shoot(page, "dash-funnel-breakdown-laptop", true);
    // A scan over its bounds: the limit is explained, nothing drawn as if complete.
    await page.unroute("**/v1/query");
    await page.route("**/v1/query", (route) => route.request().postDataJSON().type === "funnel"
      ? route.fulfill({ status: 422, headers: { "Content-Type": "application/json" }, body: '{"success":false,"error":"scan_limit","message":"the scan read more than 20000000 records; narrow from..to","scanned":20000000}' })
      : route.continue());
    await page.click("#fn-run");
    await waitFor(async () => /shorter range/.test(await text(page, ".card [role=alert].error")), 5000, "limit explained");
    await context.close();
    expectedErrors = null;
  }],

  ["Retention: the heat-map grid and lifetime value are the API's cohorts", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    await page.click("#nav-retention");
    for (const unit of ["day", "week"]) {
      await page.click("#ret-" + unit);
      await waitFor(async () => (await page.locator("#ret-box").getAttribute("data-query") || "").includes("retention_" + unit) &&
        await page.locator("#ret-grid tbody tr").count() > 0, 8000, unit + " grid");
      const a = await query(srv, JSON.parse(await page.locator("#ret-box").getAttribute("data-query")));
      const rows = await page.locator("#ret-grid tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
      const want = [];
      for (const c of a.cohorts.slice().reverse()) {
        const cells = [];
        for (let k = 0; k < c.retained.length; k++) cells.push((await shown(page, "pct", c.rate[k])) + (await shown(page, "int", c.retained[k])));
        want.push([String(c.users), ...cells]);
      }
      eq(rows.map((r) => r.slice(1, 1 + want[rows.indexOf(r)].length)), want, unit + " cohorts");
      eq(await page.locator("#ret-grid thead th[scope=col]").first().textContent(), "Cohort", "column headers");
      if (unit === "day") await shoot(page, "dash-retention-laptop", true);
    }
    const clv = await query(srv, { type: "kpi", kpi: "clv", from: "-30d" });
    await waitFor(async () => (await text(page, "#clv-value")) === await shown(page, "money", clv.value), 5000, "lifetime value");
    eq(await page.locator("#clv-table tbody tr").count(), clv.cohorts.length, "one row per weekly cohort");
    await context.close();
  }],

  ["Explore: several conditions go to the log scan and show its exact count", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    await page.click("#nav-explore");
    await page.locator("#ex-chart svg").waitFor();
    await page.selectOption("#ex-range", "24h");
    await page.selectOption("#ex-dim", "country");
    await page.selectOption("#ex-op", "in");
    await page.locator("#ex-value").fill("NL, DE");
    await page.click("#ex-add-cond");
    await page.selectOption("#ex-dim-2", "device_type");
    await page.selectOption("#ex-op-2", "not");
    await page.locator("#ex-value-2").fill("mobile");
    await page.click("#ex-apply");
    await waitFor(async () => /records read/.test(await text(page, "#ex-scan")), 15000, "scan answer");
    const q = JSON.parse(await page.locator("#ex-chart").getAttribute("data-query"));
    eq(q.filter, { and: [{ dim: "country", in: ["NL", "DE"] }, { not: { dim: "device_type", value: "mobile" } }] }, "filter sent");
    const a = await query(srv, { type: "totals", from: q.from, to: q.to, filter: q.filter });
    eq(a.source, "log", "answered by a scan");
    eq(number(await text(page, "#ex-total")), a.count, "events shown = the scan's count");
    assert(/country in NL, DE and device_type ≠ mobile/.test(await text(page, "#ex-total-label")), "filter described");
    await shoot(page, "dash-explore-filter-laptop", true);
    await context.close();
  }],

  ["System: the act stage's webhook and offer figures", async ({ srv, browser }) => {
    const { context, page } = await signedIn(browser, srv);
    await page.click("#nav-system");
    const m = await (await fetch(srv.url + "/metrics", { headers: { Authorization: "Bearer " + READ_KEY } })).text();
    const val = (name) => Number(m.match(new RegExp("^" + name + " (\\S+)$", "m"))[1]);
    await waitFor(async () => (await text(page, "#sys-wh-outbox")) !== "–", 6000, "act figures");
    eq(number(await text(page, "#sys-wh-outbox")), val("sluice_webhook_outbox_depth"), "outbox depth");
    eq(number(await text(page, "#sys-wh-dead")), val("sluice_webhook_dead_letters"), "dead letters");
    eq(number(await text(page, "#sys-offers")), val("sluice_offers_published_total"), "offers published");
    await shoot(page, "dash-system-laptop", true);
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
    for (const v of ["overview", "kpis", "explore", "funnel", "retention", "feed", "system"]) {
      await page.click("#nav-" + v);
      if (v === "feed") {
        await page.waitForTimeout(300);
        await send(srv, [0, 1, 2, 3, 4, 5, 6, 7].flatMap((i) => visit(300 + i, Date.now())));
        await page.locator("#feed-rows tr").first().waitFor({ timeout: 5000 });
      }
      await page.waitForTimeout(v === "overview" ? 600 : 1500);
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
