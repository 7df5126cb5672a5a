// What sluice serves itself: /sluice.js (size budget, caching headers, ETag, gzip) and
// the demo shop (write key substituted, SPA routes), and nothing else: paths that try to
// leave the embedded set get 404.
import { connect } from "node:net";
import { gzipSync, gunzipSync } from "node:zlib";
import vm from "node:vm";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Server, WRITE_KEY, assert, eq } from "./lib.mjs";

const BUDGET = 3 * 1024; // sluice.js, minified and gzipped
const OFFERS_BUDGET = 1536; // sluice-offers.js (only pages with data-offers load it)

// A raw request, so that the path reaches the server exactly as written.
function raw(port, path) {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () =>
      s.write("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
    let d = "";
    s.on("data", (x) => (d += x));
    s.on("end", () => resolve(d));
    s.on("error", reject);
  });
}

// A script as served: parses; its size as is, with gzip -9, and gzipped on the wire.
async function served(srv, path) {
  const r = await fetch(srv.url + path, { headers: { "Accept-Encoding": "identity" } });
  eq(r.status, 200, path);
  const js = Buffer.from(await r.arrayBuffer());
  new vm.Script(js.toString(), { filename: path }); // throws on a syntax error
  // What goes over the wire to a browser that accepts gzip (node's fetch would inflate it).
  const wire = await new Promise((resolve, reject) => {
    const s = connect(srv.port, "127.0.0.1", () => s.write(
      "GET " + path + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n"));
    const parts = [];
    s.on("data", (x) => parts.push(x));
    s.on("end", () => resolve(Buffer.concat(parts)));
    s.on("error", reject);
  });
  const sep = wire.indexOf("\r\n\r\n");
  const head = wire.subarray(0, sep).toString(), body = wire.subarray(sep + 4);
  assert(/content-encoding: gzip/i.test(head), path + ": gzip encoding: " + head);
  eq(gunzipSync(body).toString(), js.toString(), path + ": gzip body inflates to the script");
  return { bytes: js.length, wire: body.length, ours: gzipSync(js, { level: 9 }).length };
}

export async function setup() {
  return { srv: await new Server().start() };
}

export async function teardown({ srv }) {
  await srv.cleanup();
}

export const tests = [
  ["sluice.js is under 3 KB gzipped, sluice-offers.js under 1.5 KB, and what is served parses", async ({ srv }) => {
    const sj = await served(srv, "/sluice.js"), so = await served(srv, "/sluice-offers.js");
    for (const [name, x] of [["sluice.js", sj], ["sluice-offers.js", so]])
      console.log("  " + name + ": " + x.bytes + " bytes served, " + x.wire + " gzipped on the wire, " +
        x.ours + " with gzip -9 (budget " + (name === "sluice.js" ? BUDGET : OFFERS_BUDGET) + ")");
    console.log("  a page with data-offers loads both: " + (sj.wire + so.wire) + " gzipped on the wire");
    assert(sj.wire < BUDGET && sj.ours < BUDGET, "sluice.js over budget: " + sj.wire + " / " + sj.ours);
    assert(so.wire < OFFERS_BUDGET && so.ours < OFFERS_BUDGET,
      "sluice-offers.js over budget: " + so.wire + " / " + so.ours);
  }],

  ["the served tracker is web/sluice.js and web/sluice-offers.js as terser minifies them now", async () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    // Throws (with the script's message) when the committed minified file is stale.
    execFileSync("sh", ["scripts/minify.sh", "--check"], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
  }],

  ["sluice.js has caching headers and revalidates with its ETag", async ({ srv }) => {
    const r = await fetch(srv.url + "/sluice.js");
    eq(r.headers.get("content-type"), "application/javascript; charset=utf-8");
    eq(r.headers.get("cache-control"), "public, max-age=3600");
    const etag = r.headers.get("etag");
    assert(/^"[0-9a-f]{20}"$/.test(etag), "etag " + etag);
    const again = await fetch(srv.url + "/sluice.js", { headers: { "If-None-Match": etag } });
    eq(again.status, 304);
    eq((await again.text()).length, 0);
    const post = await fetch(srv.url + "/sluice.js", { method: "POST", body: "x" });
    eq(post.status, 405);
  }],

  ["the demo page carries the write key and answers every shop route", async ({ srv }) => {
    for (const p of ["/demo", "/demo/", "/demo/product/3", "/demo/cart", "/demo/checkout"]) {
      const r = await fetch(srv.url + p);
      eq(r.status, 200, p);
      assert(r.headers.get("content-type").startsWith("text/html"), p);
      eq(r.headers.get("cache-control"), "no-cache", p);
      const html = await r.text();
      assert(html.includes('data-write-key="' + WRITE_KEY + '"'), "key substituted in " + p);
      assert(!html.includes("{{"), "no template left in " + p);
    }
    for (const p of ["/demo/shop.js", "/demo/shop.css"]) eq((await fetch(srv.url + p)).status, 200, p);
  }],

  ["only embedded names are served: traversal and unknown files get 404", async ({ srv }) => {
    const bad = ["/demo/../keys.yaml", "/demo/..%2fkeys.yaml", "/demo/%2e%2e/keys.yaml",
      "/sluice.js/../keys.yaml", "/demo//etc/passwd", "/demo/index.html%00", "/demo/x.js",
      "/demo/shop.js.map", "/keys.yaml", "/web/sluice.js", "/demo/.%2e/keys.yaml", "/sluice.js.gz"];
    for (const p of bad) {
      const res = await raw(srv.port, p);
      assert(/^HTTP\/1\.1 404 /.test(res), p + " -> " + res.split("\r\n")[0]);
      assert(!res.includes("write") || !res.includes(WRITE_KEY), p + " leaked the key file");
    }
  }],
];
