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
. bench/serve.sh
start_sluice
python3 bench/events.py "$port" "$N"
stop_sluice
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
