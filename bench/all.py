#!/usr/bin/env python3
"""make bench: the ingest, query and action benchmarks in one run, and one table of their
figures, each beside the reference the same run measured (nginx and Redis for ingest,
GET /healthz for queries, the plain ack of POST /v1/track for event -> offer).

    python3 bench/all.py          (make bench: installs nginx/redis/wrk, builds build/sluice)

It runs bench/ingest.sh, bench/query.sh and bench/actions.py as they are, reads the
figures from their output (by column names and labels, not positions), prints the table
and writes it into docs/PERFORMANCE.md between the "bench:all" markers.

Knobs (environment):
    BENCH_EVENTS    events loaded for the query benchmark (default 10000000, about an hour
                    on a 2-core machine; 200000 takes a minute)
    BENCH_DURATION  seconds per ingest run (default 8)
    BENCH_SAMPLES   event -> offer samples per background rate (default 1000)
    BENCH_RATES     background rates for the action benchmark, events/s (default "1000 10000")
    BENCH_DOC       the Markdown file to update (default docs/PERFORMANCE.md; "-": none)
The ingest script's own knobs (BENCH_CONNS, BENCH_IDLE_WAIT, ...) pass through."""
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.path.join(ROOT, "build", "sluice")
MARK_BEGIN, MARK_END = "<!-- bench:all begin -->", "<!-- bench:all end -->"


def run(cmd, env=None):
    """Run cmd in the repository, its stderr passed through; returns stdout (text)."""
    print("bench: running %s" % " ".join(cmd), file=sys.stderr)
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, env=e)
    out = r.stdout.decode(errors="replace")
    sys.stderr.write(out)
    if r.returncode != 0:
        sys.exit("bench: %s failed with exit status %d" % (" ".join(cmd), r.returncode))
    return out


def md_tables(text):
    """Every Markdown table in text as a list of dicts keyed by header cell."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|$", lines[i + 1]):
            head = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(head, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def num(s):
    m = re.search(r"-?[0-9]+(?:\.[0-9]+)?", s or "")
    return float(m.group(0)) if m else None


def ratio(a, b):
    return "%.2fx" % (a / b) if a is not None and b else "-"


def fmt(v, unit, nd=2):
    return "-" if v is None else ("%.*f %s" % (nd, v, unit)).strip()


def ingest(rows_out):
    md = tempfile.mktemp(prefix="sluice-bench-ingest-", suffix=".md")
    run(["bash", "bench/ingest.sh"], {"BENCH_MD": md})
    with open(md) as f:
        text = f.read()
    os.unlink(md)
    rows = next((t for t in md_tables(text) if t and "server" in t[0] and "run" in t[0]), [])
    cpu_req, cpu_ev = "server CPU µs/req", "server CPU µs/event"

    def get(server, label, col):
        r = next((r for r in rows if r.get("server") == server and label in r.get("run", "")
                  and "half load" not in r.get("run", "")), None)
        return num(r.get(col)) if r else None

    for what, label, ref_label, ref_name in [
            ("ingest: one event per request (POST /v1/track, fsync=always), CPU per request",
             "/v1/track, 1 event, fsync=always", "POST 315 B event -> 204", "nginx POST -> 204"),
            ("ingest: pixel (GET /v1/p.gif, fsync=always), CPU per request",
             "/v1/p.gif, fsync=always", "GET /p.gif", "nginx empty_gif")]:
        a, b = get("sluice", label, cpu_req), get("nginx", ref_label, cpu_req)
        rows_out.append((what, fmt(a, "µs"), "%s: %s" % (ref_name, fmt(b, "µs")), ratio(a, b)))
    a = get("sluice", "/v1/batch, 100 events, fsync=always", cpu_ev)
    b = get("redis", "-P 100", cpu_ev)
    rows_out.append(("ingest: 100-event batches (POST /v1/batch, fsync=always), CPU per event",
                     fmt(a, "µs", 3), "Redis XADD -P 100: %s" % fmt(b, "µs", 3), ratio(a, b)))
    a, b = get("sluice", "/v1/track, 1 event, fsync=always", "p99 ms"), get("nginx", "POST 315 B event -> 204", "p99 ms")
    rows_out.append(("ingest: one event per request, p99 at full load", fmt(a, "ms"),
                     "nginx POST -> 204: %s" % fmt(b, "ms"), ratio(a, b)))


def query(rows_out, events):
    out = run(["sh", "bench/query.sh", str(events)])
    m = re.search(r"processing: ([0-9]+) events/s per core \(([0-9.]+) µs CPU per event\)", out)
    rows_out.append(("processing (sluice replay of %d events), CPU per event" % events,
                     fmt(float(m.group(2)), "µs") if m else "-", "(no reference in bench/query.sh)", "-"))
    rows = next((t for t in md_tables(out) if t and "query" in t[0]), [])
    floor = next((r for r in rows if r.get("query", "").startswith("GET /healthz")), None)
    f50 = num(floor.get("p50 ms")) if floor else None
    for r in rows:
        if r is floor:
            continue
        a = num(r.get("p50 ms"))
        rows_out.append(("query: %s, p50 (p99 %s ms)" % (r.get("query"), r.get("p99 ms", "?")),
                         fmt(a, "ms"), "GET /healthz: %s" % fmt(f50, "ms"), ratio(a, f50)))


def ack_latency(samples):
    """p50 and p99 ms of POST /v1/track round trips on a fresh server of the same binary."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
    os.environ.setdefault("SLUICE_BIN", SLUICE)
    from harness import WRITE_KEY, Server
    srv = Server(binary=SLUICE).start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", srv.port)
        h = {"Content-Type": "application/json",
             "Authorization": "Basic " + base64.b64encode((WRITE_KEY + ":").encode()).decode()}
        ts = []
        for i in range(samples + 20):
            t = time.perf_counter()
            c.request("POST", "/v1/track", json.dumps({"event": "Product Viewed", "anonymousId": "a%d" % i}), h)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                sys.exit("bench: POST /v1/track answered %d" % r.status)
            if i >= 20:
                ts.append((time.perf_counter() - t) * 1000)
        ts.sort()
        return ts[len(ts) // 2], ts[max(0, int(len(ts) * 0.99) - 1)]
    finally:
        srv.cleanup()


def actions(rows_out, samples, rates):
    out = run([sys.executable, "bench/actions.py", str(samples)] + [str(r) for r in rates],
              {"SLUICE_BIN": SLUICE})
    a50, a99 = ack_latency(max(samples, 200))
    for line in out.splitlines():
        m = re.search(r"background +([0-9]+) ev/s target, +([0-9.]+) reached.*?p50 ([0-9.]+) p99 ([0-9.]+)", line)
        if not m:
            continue
        p50, p99 = float(m.group(3)), float(m.group(4))
        rows_out.append(("event -> offer on the open page, background %s ev/s (%s reached), p50 / p99"
                         % (m.group(1), m.group(2)), "%.2f / %.2f ms" % (p50, p99),
                         "POST /v1/track ack: %.2f / %.2f ms" % (a50, a99), ratio(p50, a50)))


def main():
    events = int(os.environ.get("BENCH_EVENTS", "10000000"))
    samples = int(os.environ.get("BENCH_SAMPLES", "1000"))
    rates = [int(r) for r in os.environ.get("BENCH_RATES", "1000 10000").split()]
    doc = os.environ.get("BENCH_DOC", os.path.join(ROOT, "docs", "PERFORMANCE.md"))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    ingest(rows)
    query(rows, events)
    actions(rows, samples, rates)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL).stdout.decode().strip() or "?"
    lines = ["`make bench` of %s (commit %s, %d CPUs; BENCH_EVENTS=%d, BENCH_DURATION=%s, "
             "BENCH_SAMPLES=%d, BENCH_RATES=\"%s\"):" % (started, commit, os.cpu_count() or 0, events,
                                                       os.environ.get("BENCH_DURATION", "8"), samples,
                                                       " ".join(map(str, rates))),
             "",
             "| benchmark | sluice | reference (same run) | ratio |",
             "|---|---:|---|---:|"]
    lines += ["| %s | %s | %s | %s |" % r for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if doc != "-":
        with open(doc) as f:
            text = f.read()
        block = MARK_BEGIN + "\n" + table + MARK_END
        if MARK_BEGIN in text and MARK_END in text:
            text = text[:text.index(MARK_BEGIN)] + block + text[text.index(MARK_END) + len(MARK_END):]
        else:
            text = text.rstrip("\n") + "\n\n## All benchmarks in one run (`make bench`)\n\n" + block + "\n"
        with open(doc, "w") as f:
            f.write(text)
        print("bench: table written to %s" % doc, file=sys.stderr)


if __name__ == "__main__":
    main()
