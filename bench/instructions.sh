#!/bin/bash
# Instructions per ingested event, counted by callgrind (repeatable on a noisy machine).
# The server runs under valgrind twice per case, once with a few requests and once with
# many more, and the difference of the counts is divided by the extra events:
#   batch   100-event batches (each event with a browser user agent and a campaign URL,
#           the costliest kind) sent with curl: 1 batch, then N
#   single  bench/ingest.sh's 315-byte track event, POST /v1/track on one keep-alive
#           connection: 10 requests, then 10 + S
#   pixel   bench/ingest.sh's GET /v1/p.gif query string, the same way
# For each: the whole server, collect_handle (ingestion) and process_record (the
# processing stage the server runs on each stored event; the stage's `slice`, which
# calls it, when the compiler inlined it; a name may carry the compiler's suffix, such as
# .part.0 or link-time optimisation's .lto_priv.0). The whole-server figure also
# holds timer-driven work (a checkpoint written or not during a run moves it by a few
# thousand); the other two are repeatable.
#   bash bench/instructions.sh        (needs valgrind, curl, python3 and build/sluice)
#   PORT=N picks the first of the six ports it listens on (default 18731).
set -eu
cd "$(dirname "$0")/.."
BIN=${SLUICE:-build/sluice}
N=${N:-11}
S=${S:-500}
PORT=${PORT:-18731}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - > "$tmp/batch.json" <<'PY'
import json
ev = {"type": "track", "event": "Product Viewed", "userId": "u123",
      "properties": {"sku": "SKU-1", "price": 19.99},
      "context": {"page": {"url": "https://shop.example/p/1?utm_source=google&utm_medium=cpc"},
                  "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"}}
print(json.dumps({"batch": [ev] * 100}))
PY
# The event of bench/ingest.sh.
printf '%s' '{"type":"track","event":"Product Viewed","userId":"u-1042","anonymousId":"a7f3c2e1-5b4d-4e6f-9a8b-1c2d3e4f5a6b","properties":{"sku":"SKU-1","name":"Blue Mug","price":19.99,"currency":"EUR","quantity":1},"context":{"page":{"url":"https://shop.example/p/1","referrer":"https://shop.example/c/mugs"},"locale":"de-DE"}}' \
  > "$tmp/event.json"

send() { # mode count port
  if [ "$1" = batch ]; then
    for _ in $(seq 1 "$2"); do
      curl -s -o /dev/null -u wk: -H 'Content-Type: application/json' --data-binary @"$tmp/batch.json" \
        http://127.0.0.1:$3/v1/batch
    done
    return
  fi
  python3 - "$tmp/event.json" "$2" "$3" "$1" <<'PY'
import base64, http.client, sys
body, n, port, mode = open(sys.argv[1], "rb").read(), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"Authorization": "Basic " + base64.b64encode(b"wk:").decode(), "Content-Type": "application/json"}
# bench/ingest.sh's PIXEL_QS
pixel = "/v1/p.gif?writeKey=wk&event=Email+Opened&userId=u1&properties.campaign=spring&context.campaign.source=newsletter"
for _ in range(n):
    if mode == "pixel":
        c.request("GET", pixel)
    else:
        c.request("POST", "/v1/track", body, h)
    r = c.getresponse()
    r.read()
    if r.status not in (200, 204):
        sys.exit("status %d" % r.status)
PY
}

run() { # mode count port -> "total collect_handle process_record"
  rm -rf "$tmp/data"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$3" "$BIN" serve --listen=127.0.0.1:$3 \
    --data-dir="$tmp/data" --write-key=wk --read-key=rk --admin-key=ak >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:$3/healthz && break; sleep 0.2; done
  send "$1" "$2" "$3"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  callgrind_annotate --threshold=100 --inclusive=yes "$tmp/cg.$3" 2>/dev/null | awk '
    /PROGRAM TOTALS/ {gsub(",", "", $1); t = $1}
    /collect.c:collect_handle(\.[a-z_0-9.]+)? \[/ {gsub(",", "", $1); c = $1}
    /process.c:process_record(\.[a-z_0-9.]+)? \[/ {gsub(",", "", $1); p = $1}
    /process.c:slice(\.[a-z_0-9.]+)? \[/ {gsub(",", "", $1); s = $1}
    END {print t, c + 0, (p ? p : s) + 0}'
}

report() { # label events a_total a_collect a_process b_total b_collect b_process
  echo "$1: whole server $(( ($6 - $3) / $2 )), ingestion (collect_handle) $(( ($7 - $4) / $2 )), processing (process_record) $(( ($8 - $5) / $2 ))"
}

report "instructions per event, batches of 100" $(( (N - 1) * 100 )) \
  $(run batch 1 "$PORT") $(run batch "$N" $((PORT + 1)))
report "instructions per single-event request" "$S" \
  $(run single 10 $((PORT + 2))) $(run single $((10 + S)) $((PORT + 3)))
report "instructions per pixel request" "$S" \
  $(run pixel 10 $((PORT + 4))) $(run pixel $((10 + S)) $((PORT + 5)))
