#!/bin/sh
# Query latency and processing throughput at scale. Loads N (default 10,000,000)
# realistic events spread over 30 days from N/20 visitors into a fresh data dir
# (bench/load.sh), replays them through the process stage twice, from disk and then
# with the page cache warm (`sluice replay`: events/s
# and CPU per event from /usr/bin/time, bytes per hot profile), then starts `sluice
# serve` on the result and times queries over HTTP (keep-alive, one client, after a
# warm-up) beside GET /healthz, the floor of one HTTP round trip on this machine:
# KPI tiles over the last 24 h with the previous period, a 24 h hourly timeseries and a
# 30-day topN, and funnels over 24 h and 7 days. Rerun: sh bench/query.sh [N] (make
# bench-query). Prints the figures. BENCH_SESSIONS=1 loads visits (bench/load.sh).
# BENCH_QUERY_DIR=DIR keeps the loaded data dir there, and a later run with the same DIR
# skips loading (only N must match); BENCH_QUERY_REQS sets requests per query (300; at least 20,
# at most 20 s of them).
set -eu
cd "$(dirname "$0")/.."
N=${1:-10000000}
REQS=${BENCH_QUERY_REQS:-300}
pid=
echo "sluice query benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, build $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -n "${BENCH_QUERY_DIR:-}" ] && [ -d "$BENCH_QUERY_DIR/log" ]; then
  # Reuse a data dir loaded by an earlier run (BENCH_QUERY_DIR, kept): replay it again.
  dir=$BENCH_QUERY_DIR
  trap 'kill $pid 2>/dev/null || true' EXIT
  echo "reusing the events in $dir; log $(du -sh "$dir/log" | cut -f1)"
else
  dir=${BENCH_QUERY_DIR:-$(mktemp -d)}
  if [ -n "${BENCH_QUERY_DIR:-}" ]; then trap 'kill $pid 2>/dev/null || true' EXIT
  else trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT; fi
  t0=$(date +%s)
  sh bench/load.sh "$dir" "$N" $((30 * 86400)) $((N / 20))
  echo "loaded $N events in $(( $(date +%s) - t0 )) s; log $(du -sh "$dir/log" | cut -f1)"
fi
# Replay twice. The server that loaded the log dropped its pages from the page cache as
# it processed them (log-cache-bytes), so the first replay reads the log from disk, as
# one after a restart does; the second finds it in the page cache (replay leaves the
# cache to the kernel), as the earlier figures in docs/PERFORMANCE.md were taken.
for pass in "from disk" "page cache warm"; do
  echo "replay, $pass:"
  /usr/bin/time -f "replay cpu: user %U s sys %S s, max rss %M KiB" -o "$dir/time" \
    ./build/sluice replay --data-dir="$dir" | tee "$dir/replay"
  cat "$dir/time"
  python3 - "$N" "$dir/time" "$dir/replay" <<'PY'
import re, sys
n = int(sys.argv[1])
m = re.search(r"user ([0-9.]+) s sys ([0-9.]+) s", open(sys.argv[2]).read())
cpu = float(m.group(1)) + float(m.group(2))
# the whole command: start, reading and processing the log, writing the snapshot
print("processing: %.0f events/s per core (%.2f µs CPU per event)" % (n / cpu, cpu / n * 1e6))
m = re.search(r"reading and processing ([0-9.]+) s, ([0-9]+) events/s per core", open(sys.argv[3]).read())
if m:
    print("replay from the log without start-up and snapshot: %s events/s per core (%.2f µs CPU per event)"
          % (m.group(2), float(m.group(1)) / n * 1e6))
PY
done
./build/sluice serve --listen=127.0.0.1:0 --data-dir="$dir" --write-key=wk --read-key=rk \
  --admin-key=ak >"$dir/serve.banner" 2>"$dir/serve.err" &
pid=$!
while ! grep -q "listening on" "$dir/serve.banner" 2>/dev/null; do sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)\/.*/\1/p' "$dir/serve.banner" | head -n 1)
python3 - "$port" "$REQS" <<'PY'
import http.client, json, sys, time
port, reqs = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
H = {"Authorization": "Bearer rk", "Content-Type": "application/json"}

class Refused(Exception):
    pass


def one(method, path, body=None):
    t = time.perf_counter()
    c.request(method, path, body, H)
    r = c.getresponse()
    data = r.read()
    dt = (time.perf_counter() - t) * 1000
    if r.status == 422:  # a query over its limits (a log scan's time or size)
        raise Refused("%d %s" % (r.status, data[:300].decode(errors="replace")))
    if r.status != 200:
        sys.exit("%s %s: %d %s" % (method, path, r.status, data[:200]))
    return dt, data

# Wait until the snapshot is loaded and the stage caught up (the counts stop moving).
last = None
while True:
    _, d = one("POST", "/v1/query", json.dumps({"type": "totals", "from": "-31d"}))
    cnt = json.loads(d)["count"]
    if cnt == last and cnt > 0:
        break
    last = cnt
    time.sleep(0.5)

cases = [("GET /healthz (floor)", "GET", "/healthz", None)]
for k in ["conversion_rate", "revenue", "active_users", "new_users", "cac"]:
    cases.append(("KPI tile %s, 24 h + previous" % k, "POST", "/v1/query",
                  {"type": "kpi", "kpi": k, "from": "-24h", "compare": "previous"}))
cases.append(("KPI tile retention_week, 30 d", "POST", "/v1/query",
              {"type": "kpi", "kpi": "retention_week", "from": "-30d"}))
cases.append(("timeseries 24 h, hourly", "POST", "/v1/query",
              {"type": "timeseries", "from": "-24h", "granularity": "hour"}))
cases.append(("timeseries 24 h, hourly, filter utm_source", "POST", "/v1/query",
              {"type": "timeseries", "from": "-24h", "granularity": "hour",
               "filter": {"dimension": "utm_source", "value": "google"}}))
cases.append(("topN page_path by uniques, 30 d", "POST", "/v1/query",
              {"type": "topN", "dimension": "page_path", "metric": "uniques", "from": "-30d"}))
cases.append(("KPI series conversion_rate, 30 d daily", "POST", "/v1/query",
              {"type": "kpi", "kpi": "conversion_rate", "from": "-30d", "granularity": "day"}))
steps = [{"event": "$page"}, {"event": "Product Viewed"}, {"event": "Product Added"},
         {"event": "Order Completed"}]
for rng in ["24h", "7d"]:  # funnels are exact log scans: their cost grows with the range
    cases.append(("funnel, 4 steps within 1 h, %s" % rng, "POST", "/v1/query",
                  {"type": "funnel", "from": "-" + rng, "window": "1h", "steps": steps}))
print("| query | requests | p50 ms | p99 ms | max ms |")
print("|---|---:|---:|---:|---:|")
for name, method, path, body in cases:
    b = json.dumps(body) if body is not None else None
    t_warm = time.time() + 5  # warm-up: 20 requests or 5 s
    try:
        for _ in range(20):
            one(method, path, b)
            if time.time() > t_warm:
                break
    except Refused as e:
        print("| %s | refused: %s | | | |" % (name, str(e).replace("|", "/")))
        continue
    ts, t_end = [], time.time() + 20  # at most reqs requests or 20 s per query
    while len(ts) < reqs and (len(ts) < 20 or time.time() < t_end):
        ts.append(one(method, path, b)[0])
    ts.sort()
    print("| %s | %d | %.2f | %.2f | %.2f |" % (name, len(ts), ts[len(ts) // 2],
                                               ts[max(0, int(len(ts) * 0.99) - 1)], ts[-1]))
PY
