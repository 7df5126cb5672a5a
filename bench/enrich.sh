#!/bin/bash
# Enrichment benchmark: CPU per event of batched ingest with full enrichment (geo, user
# agent, campaign, consent) beside the same server with geo and user-agent parsing off,
# in one run, on a realistic mix: 100-event batches whose user agents are drawn from
# uap-core's 1,425 test user agents with Zipf-like popularity, random client IPs and
# campaign URLs. Prints CPU µs per event for both (server utime+stime from /proc), their
# ratio (the goal: full enrichment at most 2x), and the user-agent cache hit rate.
#   sh bench/enrich.sh            (needs build/sluice and wrk; make bench-ingest runs it)
# Knobs: BENCH_DURATION (seconds per run, default 8), BENCH_CONNS (default 16).
set -eu
cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-build/sluice}
DUR=${BENCH_DURATION:-8}
CONNS=${BENCH_CONNS:-16}
PORT=18710
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

python3 - "$tmp" <<'PY'
import json, random, re, sys
out = sys.argv[1]
uas = []
with open("/usr/share/uap-core/tests/test_ua.yaml") as f:
    for line in f:
        m = re.match(r"\s*-?\s*user_agent_string:\s*'(.*)'\s*$", line) or re.match(r'\s*-?\s*user_agent_string:\s*"(.*)"\s*$', line)
        if m:
            uas.append(m.group(1).replace("''", "'"))
random.seed(7)
weights = [1.0 / (i + 1) for i in range(len(uas))]
sources = ["google", "facebook", "newsletter", "bing", "instagram", "tiktok"]
for b in range(40):
    batch = []
    for i in range(100):
        batch.append({
            "type": "track", "event": random.choice(["Product Viewed", "Product Added", "Order Completed"]),
            "userId": "u%d" % random.randrange(100000),
            "properties": {"sku": "SKU-%d" % random.randrange(500), "price": round(random.uniform(5, 200), 2)},
            "context": {"ip": "%d.%d.%d.%d" % (random.randrange(1, 223), random.randrange(256), random.randrange(256), random.randrange(1, 255)),
                        "userAgent": random.choices(uas, weights)[0],
                        "page": {"url": "https://shop.example/p/%d?utm_source=%s&utm_medium=cpc&utm_campaign=c%d" % (random.randrange(200), random.choice(sources), random.randrange(30)),
                                 "referrer": random.choice(["https://www.google.com/", "https://l.facebook.com/", "", "https://shop.example/"])}},
        })
    with open("%s/b%02d.json" % (out, b), "w") as f:
        json.dump({"batch": batch}, f)
print("%d user agents in the pool" % len(uas), file=sys.stderr)
PY
bodies=$(ls "$tmp"/b*.json | tr '\n' ':')
auth="Basic $(printf 'wk:' | base64)"

run() { # label, extra args...
  label=$1; shift
  rm -rf "$tmp/data"
  taskset -c 0 "$SLUICE" serve --listen=127.0.0.1:$PORT --data-dir="$tmp/data" --write-key=wk \
    --read-key=rk --admin-key=ak --log-level=warn "$@" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
  c0=$(awk '{print $14+$15}' /proc/$pid/stat)
  out=$(BENCH_METHOD=POST BENCH_BODIES="$bodies" BENCH_AUTH="$auth" BENCH_EVENTS=100 \
        taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" -s bench/wrk/ingest.lua \
        http://127.0.0.1:$PORT/v1/batch 2>&1)
  c1=$(awk '{print $14+$15}' /proc/$pid/stat)
  reqs=$(echo "$out" | sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p')
  errs=$(echo "$out" | sed -n 's/.*err_status=\([0-9]*\).*/\1/p')
  hz=$(getconf CLK_TCK)
  us=$(awk -v c=$((c1 - c0)) -v r="$reqs" -v hz="$hz" 'BEGIN{printf "%.2f", c*1e6/hz/(r*100)}')
  metrics=$(curl -s -H 'Authorization: Bearer rk' http://127.0.0.1:$PORT/metrics)
  hits=$(echo "$metrics" | awk '$1=="sluice_ua_cache_hits"{print $2}')
  miss=$(echo "$metrics" | awk '$1=="sluice_ua_cache_misses"{print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  echo "$label $us $reqs ${errs:-0} ${hits:-0} ${miss:-0}"
}

full=$(run full)
spine=$(run spine --ua-regexes=off --geo-db=off)
set -- $full; f_us=$2; f_reqs=$3; f_err=$4; hits=$5; miss=$6
set -- $spine; s_us=$2; s_reqs=$3; s_err=$4
ratio=$(awk -v a="$f_us" -v b="$s_us" 'BEGIN{printf "%.2f", a/b}')
rate=$(awk -v h="$hits" -v m="$miss" 'BEGIN{if (h+m>0) printf "%.1f", 100*h/(h+m); else print "n/a"}')
echo
echo "| batched ingest, 100 events/request | CPU µs/event | requests | non-2xx |"
echo "|---|---:|---:|---:|"
echo "| full enrichment (geo, user agent, campaign, consent) | $f_us | $f_reqs | $f_err |"
echo "| spine (geo and user-agent parsing off) | $s_us | $s_reqs | $s_err |"
echo
echo "enrichment cost ratio full/spine: ${ratio}x (goal: at most 2x)"
echo "user-agent cache: $hits hits, $miss misses, hit rate ${rate}%"
