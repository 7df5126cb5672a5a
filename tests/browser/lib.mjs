// Shared pieces of the browser tests: start the real sluice binary (like
// tests/e2e/harness.py: 127.0.0.1, ephemeral port, temp data dir, keys on the command
// line), read what it stored with `sluice export`, launch Debian's chromium through
// playwright-core, and wait by polling with a deadline.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const BINARY = process.env.SLUICE_BIN ||
  [join(ROOT, "build", "asan", "sluice"), join(ROOT, "build", "sluice")].find(existsSync);
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const WRITE_KEY = "wk-browser-test", READ_KEY = "rk-browser-test", ADMIN_KEY = "ak-browser-test";
export const SHOTS = join(ROOT, "build", "browser-screenshots");

export class Server {
  constructor(args = []) {
    this.args = args;
    this.dataDir = mkdtempSync(join(tmpdir(), "sluice-browser-"));
  }

  async start(timeoutMs = 20000) {
    const errPath = join(this.dataDir, "..", "sluice-browser-" + process.pid + ".stderr");
    this.errPath = errPath;
    this.proc = spawn(BINARY, ["serve", "--listen=127.0.0.1:0", "--data-dir=" + this.dataDir,
      "--write-key=" + WRITE_KEY, "--read-key=" + READ_KEY, "--admin-key=" + ADMIN_KEY, ...this.args],
      { stdio: ["ignore", "pipe", openSync(errPath, "a")],
        env: { ...process.env, ASAN_OPTIONS: process.env.ASAN_OPTIONS || "detect_leaks=1" } });
    let out = "";
    this.port = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("sluice did not start: " + out)), timeoutMs);
      this.proc.stdout.on("data", (d) => {
        out += d;
        const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
        if (m) { clearTimeout(t); resolve(+m[1]); }
      });
      this.proc.on("exit", (code) => reject(new Error("sluice exited " + code + ": " + out)));
    });
    this.url = "http://127.0.0.1:" + this.port;
    await waitFor(async () => (await fetch(this.url + "/healthz")).ok, 10000, "healthz");
    return this;
  }

  // Every stored event, from `sluice export` (NDJSON).
  export() {
    const out = execFileSync(BINARY, ["export", "--data-dir=" + this.dataDir],
      { maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ASAN_OPTIONS: "detect_leaks=0" } });
    return out.toString().split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  }

  // Everything the server wrote below its data dir, as one string (for "never stored" checks).
  allBytes() {
    const out = execFileSync("sh", ["-c", "find \"$0\" -type f -exec cat {} +", this.dataDir], { maxBuffer: 256 << 20 });
    return out.toString("latin1");
  }

  // SIGTERM and wait; returns the exit code (a clean stop is 0; ASan findings are not).
  async stop() {
    if (!this.proc) return null;
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.proc.exitCode;
    const exited = new Promise((r) => this.proc.on("exit", (code) => r(code)));
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 15000);
    const code = await exited;
    clearTimeout(t);
    return code;
  }

  // Stop, check the exit was clean, remove the data dir.
  async cleanup() {
    const code = await this.stop();
    const err = this.stderr();
    rmSync(this.dataDir, { recursive: true, force: true });
    rmSync(this.errPath, { force: true });
    if (code !== 0) throw new Error("sluice exited with " + code + ":\n" + err.slice(-3000));
  }

  stderr() {
    try { return readFileSync(this.errPath, "utf8"); } catch { return ""; }
  }
}

// A test file's setup and teardown when it drives chromium against one server.
export async function serverAndBrowser(args = []) {
  return { srv: await new Server(args).start(), browser: await launch() };
}

export async function closeBoth({ srv, browser }) {
  await browser.close();
  await srv.cleanup();
}

export async function launch() {
  if (!existsSync(CHROMIUM)) throw new Error(CHROMIUM + " is missing: run scripts/deps.sh test");
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--disable-gpu", "--no-first-run"],
  });
}

// Poll fn (sync or async) until it returns a truthy value; that value is returned.
export async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what + (last ? ": " + last.message : ""));
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function shotPath(name) {
  mkdirSync(SHOTS, { recursive: true });
  return join(SHOTS, name + ".png");
}

export function assert(cond, msg) {
  if (!cond) throw new Error("assertion failed: " + msg);
}

export function eq(a, b, msg) {
  const x = JSON.stringify(a), y = JSON.stringify(b);
  if (x !== y) throw new Error((msg || "not equal") + "\n  got:      " + x + "\n  expected: " + y);
}

// A short, comparable description of a stored event.
export function brief(e) {
  if (e.type === "page") return "page " + e.context.page.path;
  if (e.type === "identify") return "identify " + e.userId;
  if (e.event === "Element Clicked") return "click " + e.properties.tag + (e.properties.id ? "#" + e.properties.id : "");
  return "track " + e.event;
}
