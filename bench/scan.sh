#!/bin/sh
# Log-scan queries (multi-dimension filters, groupBy, funnel): loads N (default 1,000,000)
# realistic events spread over the last 24 h (bench/events.py, with countries) into a
# fresh server (fsync off), waits until the process stage has caught up (so its CPU does
# not mix in), then runs each query R times (default 10) and prints, per query: records
# scanned, wall-time p50 / p99 (p99 of 10 runs is their maximum), the server's CPU time
# per run from /proc/PID/stat (all threads) and events scanned per CPU-second, i.e. per
# core, since one scan runs on one thread. Reference in the same run: `grep -c` reading
# the same segment files (bytes per second of a plain sequential scan).
# Rerun: sh bench/scan.sh [N] [R]
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
R=${2:-10}
. bench/serve.sh
start_sluice --scan-max-records=$((N * 2 + 1000)) --scan-timeout-ms=600000
python3 bench/events.py "$port" "$N" 86000 countries
echo "log: $(du -sh "$dir/log" | cut -f1) for $N events; nproc $(nproc)"
t0=$(date +%s.%N)
hits=$(cat "$dir"/log/*.log | grep -a -c '"Order Completed"' || true)
t1=$(date +%s.%N)
bytes=$(cat "$dir"/log/*.log | wc -c)
python3 - "$t0" "$t1" "$bytes" "$hits" <<'PY'
import sys
t0, t1, b = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print("reference: grep -c over the segments: %.0f MB/s (%d bytes, %.3f s, %s matches)" % (b / (t1 - t0) / 1e6, b, t1 - t0, sys.argv[4]))
PY
python3 - "$port" "$pid" "$N" "$R" <<'PY'
import http.client, json, os, sys, time
port, pid, n, runs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tick = os.sysconf("SC_CLK_TCK")

def cpu():
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

def query(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    c.request("POST", "/v1/query", json.dumps(body), {"Authorization": "Bearer rk"})
    r = c.getresponse()
    data = json.loads(r.read())
    if r.status != 200:
        sys.exit("query failed: %d %s" % (r.status, data))
    return data

day = {"from": "-24h", "to": "now"}
deadline = time.time() + 600
while query(dict(day, type="totals"))["count"] < n:  # the process stage catches up
    if time.time() > deadline:
        sys.exit("processing did not catch up")
    time.sleep(1)
time.sleep(2)
queries = [
    ("24 h timeseries, filter (PL or DE) and not Order Completed, by hour",
     dict(day, type="timeseries", granularity="hour", filter={"and": [
         {"dim": "country", "in": ["PL", "DE"]}, {"not": {"dim": "event", "value": "Order Completed"}}]})),
    ("24 h groupBy utm_source x country, by uniques",
     dict(day, type="groupBy", groupBy=["utm_source", "country"], orderBy="uniques")),
    ("24 h funnel Product Viewed > Added > Checkout Started > Order Completed, 1 h window",
     dict(day, type="funnel", window="1h", steps=[{"event": e} for e in
          ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]])),
]
for name, body in queries:
    walls, cpus, scanned = [], [], 0
    for i in range(runs):
        c0, w0 = cpu(), time.time()
        a = query(body)
        walls.append(time.time() - w0)
        cpus.append(cpu() - c0)
        scanned = a["scanned"]
    walls.sort(); cpus.sort()
    p50 = walls[len(walls) // 2]
    p99 = walls[min(len(walls) - 1, int(round(0.99 * (len(walls) - 1))))]
    cpu50 = cpus[len(cpus) // 2]
    rate = ("%.2f M events scanned per CPU-second (one core)" % (scanned / cpu50 / 1e6)
            if cpu50 >= 0.1 else "too little CPU time to measure a rate (clock ticks); use a larger N")
    print("%s\n  scanned %d records; wall p50 %.0f ms, p99 %.0f ms; server CPU p50 %.2f s/run; %s" %
          (name, scanned, p50 * 1000, p99 * 1000, cpu50, rate))
    if name.startswith("24 h funnel"):
        print("  steps: %s" % [s["users"] for s in a["steps"]])
PY
kill -TERM $pid; wait $pid || true
