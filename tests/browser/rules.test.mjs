// The Rules & alerts view against the real binary with a rules directory: a rule's fires
// count following events sent through the API within 2 seconds; switching a rule off
// with the admin key (GET /v1/rules then says enabled:false); the read key seeing a
// disabled switch; a KPI alert driven over its threshold shown firing, with its
// transition, and the Overview's tile for that KPI coloured by it; an invalid rules file
// answered with its file:line:col inline; no console errors. Screenshots (laptop and
// phone) go to build/screenshots/.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, launch, waitFor, assert, eq, ROOT, READ_KEY, WRITE_KEY, ADMIN_KEY } from "./lib.mjs";

const SCREENS = join(ROOT, "build", "screenshots");
const LAPTOP = { width: 1440, height: 900 }, PHONE = { width: 390, height: 844 };
const consoleErrors = [];

const RULES = `
rule "product-viewed-offer" {
  on track "Product Viewed"
  do offer "discount" { percent: 10, product: properties.product_id }
}

rule "cart-added-offer" {
  on track "Product Added"
  do offer "free-shipping" { product: properties.product_id }
}

alert "traffic-spike" {
  kpi "events"
  over 5s
  every 1s
  above 8
  clear 1
}

alert "revenue-watch" {
  kpi "revenue"
  over 1h
  every 2s
  above 100000
}
`;

async function send(srv, events) {
  const batch = events.map((e, i) => ({ type: "track", anonymousId: "rv-" + (i % 4), messageId: crypto.randomUUID(),
    context: { consent: { categoryPreferences: { Analytics: true, Marketing: true } } }, ...e }));
  const r = await fetch(srv.url + "/v1/batch", { method: "POST", headers: { "Content-Type": "application/json",
    Authorization: "Basic " + Buffer.from(WRITE_KEY + ":").toString("base64") }, body: JSON.stringify({ batch }) });
  eq(r.status, 200, "batch accepted");
}

async function rules(srv, key) {
  const r = await fetch(srv.url + "/v1/rules", { headers: { Authorization: "Bearer " + (key || READ_KEY) } });
  eq(r.status, 200, "GET /v1/rules");
  return r.json();
}
const rule = (info, name) => info.rules.filter((r) => r.name === name)[0];

export async function setup() {
  const dir = mkdtempSync(join(tmpdir(), "sluice-browser-rules-"));
  writeFileSync(join(dir, "shop.rules"), RULES);
  const srv = await new Server(["--rules-dir=" + dir]).start();
  mkdirSync(SCREENS, { recursive: true });
  return { srv, dir, browser: await launch() };
}

export async function teardown({ srv, dir, browser }) {
  await browser.close();
  await srv.cleanup();
  rmSync(dir, { recursive: true, force: true });
  eq(consoleErrors, [], "console errors");
}

// A page signed in with key, on the Rules & alerts view with its first answer shown.
// expected: console messages that are part of the test (a 400 the test provokes).
async function rulesPage(browser, srv, key, viewport, expected) {
  const context = await browser.newContext({ viewport: viewport || LAPTOP, colorScheme: "light" });
  const page = await context.newPage();
  const note = (m) => { if (!(expected && expected.test(m))) consoleErrors.push(m); };
  page.on("console", (m) => { if (m.type() === "error") note(m.text()); });
  page.on("pageerror", (e) => note(e.message));
  await page.goto(srv.url + "/#/rules");
  await page.locator("#login-key").fill(key);
  await page.click("#login-submit");
  await page.locator("#rules-table").waitFor();
  await waitFor(() => page.evaluate(() => document.querySelectorAll("#rules-table tbody tr").length >= 2 &&
    document.querySelector("#rules-key").textContent !== ""), 10000, "rules listed");
  return { context, page };
}

const switchOf = (page, name) => page.locator('tr[data-rule="' + name + '"] .switch');
const firesOf = (page, name) => page.locator('tr[data-rule="' + name + '"] td.r').textContent();

export const tests = [
  ["the menu lists Rules & alerts and the view shows each rule, the engine's counters and the alerts", async ({ srv, browser }) => {
    const { context, page } = await rulesPage(browser, srv, READ_KEY);
    eq(await page.locator("#nav-rules").textContent(), "Rules & alerts", "menu entry");
    const names = await page.locator("#rules-table tbody th").allTextContents();
    eq(names.sort(), ["cart-added-offer", "product-viewed-offer"], "rules listed");
    eq(await firesOf(page, "product-viewed-offer"), "0", "no fires yet");
    eq(await page.locator('tr[data-rule="product-viewed-offer"] td:last-child').textContent(), "never", "last fire");
    eq(await page.locator("[data-alert]").count(), 2, "alerts shown");
    eq(await page.locator('[data-alert="revenue-watch"]').getAttribute("data-state"), "ok", "revenue alert ok");
    assert((await page.locator('[data-alert="traffic-spike"] .alert-desc').textContent()).includes("above 8, clears at 1"),
      "alert threshold and clear shown");
    await context.close();
  }],

  ["a rule's fires and last fire follow events within 2 seconds", async ({ srv, browser }) => {
    const { context, page } = await rulesPage(browser, srv, READ_KEY);
    const before = Number(await firesOf(page, "product-viewed-offer"));
    const t0 = Date.now();
    await send(srv, [1, 2, 3].map((i) => ({ event: "Product Viewed", properties: { product_id: "p" + i } })));
    const api = await waitFor(async () => { const r = rule(await rules(srv), "product-viewed-offer"); return r.fires >= before + 3 && r; },
      5000, "the API counting the fires");
    await waitFor(async () => Number(await firesOf(page, "product-viewed-offer")) === api.fires, 2000, "the view showing the fires");
    console.log("     fires shown " + (Date.now() - t0) + " ms after the events were sent");
    eq(await page.locator('tr[data-rule="product-viewed-offer"] td:last-child').textContent(), "just now", "last fire");
    eq(await firesOf(page, "cart-added-offer"), "0", "the other rule did not fire");
    await context.close();
  }],

  ["the read key sees disabled switches saying they need the admin key", async ({ srv, browser }) => {
    const { context, page } = await rulesPage(browser, srv, READ_KEY);
    eq(await page.locator("#rules-key").textContent(), "Read key: view only", "key kind");
    const sw = switchOf(page, "cart-added-offer");
    assert(await sw.isDisabled(), "switch disabled");
    eq(await sw.getAttribute("aria-checked"), "true", "rule shown on");
    eq(await page.locator('tr[data-rule="cart-added-offer"] .sw-wrap').getAttribute("title"), "needs the admin key", "tooltip");
    assert(await page.locator("#rules-apply").isDisabled(), "upload disabled");
    await context.close();
  }],

  ["the admin key switches a rule off and on; switched off, its actions are suppressed", async ({ srv, browser }) => {
    const { context, page } = await rulesPage(browser, srv, ADMIN_KEY);
    eq(await page.locator("#rules-key").textContent(), "Admin key: you can switch rules and upload files", "key kind");
    const sw = switchOf(page, "cart-added-offer");
    await waitFor(async () => !(await sw.isDisabled()), 5000, "switch enabled");
    await sw.click();
    await waitFor(async () => rule(await rules(srv), "cart-added-offer").enabled === false, 5000, "GET /v1/rules saying enabled:false");
    // The server may answer the test's GET before the page has read the PUT's answer.
    await waitFor(async () => (await sw.getAttribute("aria-checked")) === "false", 3000, "switch shown off");
    // The next refresh keeps it off (the server's word), and the count of rules off.
    await waitFor(async () => (await page.locator(".card-head .muted").first().textContent()) === "2 rules · 1 off", 5000, "rules off count");
    const sup = (await rules(srv)).stats.suppressed;
    await send(srv, [{ event: "Product Added", properties: { product_id: "p9" } }]);
    await waitFor(async () => (await rules(srv)).stats.suppressed > sup, 5000, "the action suppressed");
    eq(rule(await rules(srv), "cart-added-offer").fires, 0, "no fire while off");
    const suppressed = (await rules(srv)).stats.suppressed;
    await waitFor(async () => (await page.locator("#rs-actions + .sub").textContent()) === suppressed + " suppressed (rules off)", 3000, "suppressed shown");
    await page.screenshot({ path: join(SCREENS, "rules-admin-laptop.png"), fullPage: true });
    await sw.click();
    await waitFor(async () => rule(await rules(srv), "cart-added-offer").enabled === true, 5000, "switched back on");
    await context.close();
  }],

  ["an alert driven over its threshold shows firing, with its transition, and colours the Overview's tile", async ({ srv, browser }) => {
    const { context, page } = await rulesPage(browser, srv, READ_KEY);
    const card = page.locator('[data-alert="traffic-spike"]');
    eq(await card.getAttribute("data-state"), "ok", "ok before");
    const burst = () => send(srv, Array.from({ length: 20 }, (_, i) => ({ event: "Button Clicked", properties: { i } })));
    await burst();
    // More every second, so it keeps firing (its window is 5 s) while the checks run.
    const keep = setInterval(() => burst().catch(() => {}), 1000);
    try {
      await waitFor(async () => (await rules(srv)).alerts.filter((a) => a.name === "traffic-spike")[0].firing, 10000, "the alert firing (API)");
      await waitFor(async () => (await card.getAttribute("data-state")) === "firing", 3000, "the alert shown firing");
      eq(await card.locator(".badge").textContent(), "Firing", "badge");
      assert(/\d:\d\d.*fired at \d+$/.test((await card.locator(".hist li.is-firing").first().textContent()).trim()), "transition listed");
      assert(await card.locator(".tl-firing").count() >= 1, "timeline shows the firing span");
      await page.screenshot({ path: join(SCREENS, "rules-laptop.png"), fullPage: true });
      // The Overview's events tile carries the alert's state while it fires.
      await page.click("#nav-overview");
      await waitFor(() => page.evaluate(() => {
        const t = document.querySelector("#kpi-events");
        return t && t.classList.contains("down") && t.getAttribute("data-alert") === "firing";
      }), 8000, "the events tile coloured firing");
      eq(await page.locator("#kpi-events").evaluate((t) => getComputedStyle(t).borderTopColor), "rgb(217, 54, 69)", "red top border");
      assert((await page.locator("#kpi-events").getAttribute("title")).startsWith("Alert traffic-spike: Events over 5 s above 8"), "tile tooltip");
      eq(await page.locator("#kpi-revenue").getAttribute("data-alert"), "ok", "revenue tile ok");
      await page.screenshot({ path: join(SCREENS, "rules-overview-laptop.png") });
    } finally {
      clearInterval(keep);
    }
    await context.close();
  }],

  ["an invalid rules file is refused with file:line:col shown inline; a valid one is applied", async ({ srv, browser }) => {
    const { context, page } = await rulesPage(browser, srv, ADMIN_KEY, LAPTOP, /status of 400/);
    await page.locator(".editor summary").click();
    await page.locator("#rules-file").fill("extra.rules");
    await page.locator("#rules-text").fill('rule "broken" {\n  on track "X"\n  do nothing\n}\n');
    await page.click("#rules-apply");
    const msg = () => page.locator("#rules-msg").textContent();
    await waitFor(async () => /^extra\.rules:3:6: expected an action/.test(await msg()), 5000, "the error inline")
      .catch(async (e) => { throw new Error(e.message + "; shown: " + await msg()); });
    eq(await page.locator("#rules-msg").getAttribute("class"), "error", "shown as an error");
    eq(await page.locator("#rules-text").evaluate((t) => t.value.slice(t.selectionStart, t.selectionEnd)), "  do nothing", "the line selected");
    eq((await rules(srv)).rules.length, 2, "the running rules stay");
    await page.screenshot({ path: join(SCREENS, "rules-upload-error-laptop.png") });
    await page.locator("#rules-text").fill('rule "welcome" {\n  on track "Signed Up"\n  do offer "welcome" { percent: 5 }\n}\n');
    await page.click("#rules-apply");
    await waitFor(async () => (await page.locator("#rules-msg").textContent()).startsWith("Applied extra.rules: 3 rules"), 5000, "applied");
    await waitFor(async () => (await page.locator("#rules-table tbody tr").count()) === 3, 3000, "the new rule listed");
    await context.close();
  }],

  ["phone width: no sideways scrolling", async ({ srv, browser }) => {
    const { context, page } = await rulesPage(browser, srv, READ_KEY, PHONE);
    await page.locator("[data-alert]").first().waitFor();
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(over <= 0, "scrolls sideways by " + over + " px");
    await page.screenshot({ path: join(SCREENS, "rules-phone.png"), fullPage: true });
    await context.close();
  }],
];
