// Runs every *.test.mjs here in turn (each exports `tests`: [[name, async fn], ...] and
// optionally `setup`/`teardown`), and prints "browser: N passed, N failed" last.
import { readdirSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv[2];
let passed = 0, failed = 0;
const started = Date.now();
for (const f of readdirSync(here).filter((f) => f.endsWith(".test.mjs")).sort()) {
  if (only && !f.includes(only)) continue;
  const mod = await import("./" + f);
  let ctx = {};
  try {
    if (mod.setup) ctx = await mod.setup();
  } catch (e) {
    console.log("FAIL " + f + " setup: " + (e.stack || e));
    failed += mod.tests.length;
    continue;
  }
  for (const [name, fn] of mod.tests) {
    const t0 = Date.now();
    try {
      await fn(ctx);
      passed++;
      console.log("ok   " + f + ": " + name + " (" + (Date.now() - t0) + " ms)");
    } catch (e) {
      failed++;
      console.log("FAIL " + f + ": " + name);
      console.log(String(e.stack || e).split("\n").map((l) => "  " + l).join("\n"));
    }
  }
  try {
    if (mod.teardown) await mod.teardown(ctx);
  } catch (e) {
    failed++;
    console.log("FAIL " + f + " teardown: " + (e.stack || e));
  }
}
console.log("(" + ((Date.now() - started) / 1000).toFixed(1) + " s)");
console.log("browser: " + passed + " passed, " + failed + " failed");
process.exit(failed ? 1 : 0);
