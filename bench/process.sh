#!/bin/sh
# Replay speed of the process stage: loads N (default 1,000,000) realistic e-commerce
# events into a fresh data dir through the real server (fsync off), stops it, then runs
# `sluice replay` (log -> profiles + rollups + snapshot) and prints its events/s and the
# CPU time per event from /proc-backed `time` figures. Rerun: sh bench/process.sh [N]
# PROCESS_CALLGRIND=1 also replays under callgrind and prints instructions per event
# (repeatable on a shared machine; use a smaller N, e.g. 20000: replay of an empty log is
# subtracted so start-up does not count).
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
make --no-print-directory build/sluice >/dev/null
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
./build/sluice serve --listen=127.0.0.1:0 --data-dir="$dir" --fsync=off --write-key=wk \
  --read-key=rk --admin-key=ak --max-body-bytes=8m --max-decompressed-bytes=16m \
  --dedup-window-events=0 >"$dir/banner" 2>"$dir/err" &
pid=$!
while ! grep -q "listening on" "$dir/banner" 2>/dev/null; do sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)\/.*/\1/p' "$dir/banner" | head -n 1)
python3 - "$port" "$N" <<'PY'
import base64, http.client, json, random, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
random.seed(1)
now = time.time()
names = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Email Opened"]
srcs = ["google", "facebook", "newsletter", "bing", None]
auth = "Basic " + base64.b64encode(b"wk:").decode()
c = http.client.HTTPConnection("127.0.0.1", port)
sent = 0
while sent < n:
    batch = []
    for i in range(min(2500, n - sent)):
        u = random.randrange(50000)
        t = now - 3000 + (sent + i) * 2900.0 / n
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)
        s = srcs[u % 5]
        url = "https://shop.example/p/%d" % random.randrange(500) + ("?utm_source=%s&utm_medium=cpc&utm_campaign=c%d" % (s, u % 7) if s else "")
        ev = {"anonymousId": "anon-%d" % u, "timestamp": ts, "context": {"page": {"url": url},
              "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}}
        if random.random() < 0.4:
            ev["type"] = "page"
        else:
            ev["type"] = "track"; ev["event"] = random.choice(names)
            if ev["event"] == "Order Completed":
                ev["properties"] = {"revenue": round(random.uniform(5, 300), 2)}
        if u % 3 == 0:
            ev["userId"] = "user-%d" % u
        batch.append(ev)
    c.request("POST", "/v1/batch", json.dumps({"batch": batch}), {"Authorization": auth, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit("batch failed: %d" % r.status)
    sent += len(batch)
PY
kill -TERM $pid; wait $pid || true
echo "log: $(du -sh "$dir/log" | cut -f1) for $N events"
/usr/bin/time -f "cpu user %U s sys %S s, max rss %M KiB" ./build/sluice replay --data-dir="$dir"
if [ "${PROCESS_CALLGRIND:-0}" = 1 ]; then
  count() { # data dir -> instructions of one replay
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" ./build/sluice replay \
      --data-dir="$1" >/dev/null 2>&1 || true
    callgrind_annotate "$dir/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'
  }
  mkdir -p "$dir/empty/log"
  full=$(count "$dir")
  empty=$(count "$dir/empty")
  echo "replay instructions per event (callgrind): $(( (full - empty) / N ))"
fi
