#!/bin/bash
# Instructions per ingested event, counted by callgrind (repeatable on a noisy machine):
# the server runs under valgrind; we send 1 and then N copies of a 100-event batch (each
# event with a browser user agent and a campaign URL, the costliest kind) and divide the
# difference of the totals, and of collect_handle's and process_record's inclusive counts
# (ingestion, and the processing stage the server runs on each stored event), by the event
# count. The whole-server figure also holds timer-driven work (a checkpoint written or
# not during the run moves it by ~2,700); the other two are repeatable.
#   bash bench/instructions.sh        (needs valgrind, curl and build/sluice)
set -eu
cd "$(dirname "$0")/.."
BIN=${SLUICE:-build/sluice}
N=${N:-11}
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
run() { # batches port -> "total collect_handle process_record"
  rm -rf "$tmp/data"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" "$BIN" serve --listen=127.0.0.1:$2 \
    --data-dir="$tmp/data" --write-key=wk --read-key=rk --admin-key=ak >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:$2/healthz && break; sleep 0.2; done
  for _ in $(seq 1 "$1"); do
    curl -s -o /dev/null -u wk: -H 'Content-Type: application/json' --data-binary @"$tmp/batch.json" \
      http://127.0.0.1:$2/v1/batch
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$tmp/cg.$1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  collect=$(callgrind_annotate --threshold=100 --inclusive=yes "$tmp/cg.$1" 2>/dev/null |
            awk '/collect.c:collect_handle \[/{gsub(",","",$1); print $1; exit}')
  process=$(callgrind_annotate --threshold=100 --inclusive=yes "$tmp/cg.$1" 2>/dev/null |
            awk '/process.c:process_record \[/{gsub(",","",$1); print $1; exit}')
  echo "$total ${collect:-0} ${process:-0}"
}
set -- $(run 1 18731) $(run "$N" 18732)
events=$(( (N - 1) * 100 ))
echo "instructions per event, whole server (ingest + processing): $(( ($4 - $1) / events ))"
echo "instructions per event, ingestion only (collect_handle): $(( ($5 - $2) / events ))"
echo "instructions per event, processing stage (process_record): $(( ($6 - $3) / events ))"
