#!/bin/sh
# Replay speed of the process stage: loads N (default 1,000,000) realistic e-commerce
# events into a fresh data dir through the real server (fsync off), stops it, then runs
# `sluice replay` (log -> profiles + rollups + snapshot) and prints its events/s and the
# CPU time per event from /proc-backed `time` figures. Rerun: sh bench/process.sh [N]
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
python3 bench/events.py "$port" "$N"
kill -TERM $pid; wait $pid || true
echo "log: $(du -sh "$dir/log" | cut -f1) for $N events"
/usr/bin/time -f "cpu user %U s sys %S s, max rss %M KiB" ./build/sluice replay --data-dir="$dir"
