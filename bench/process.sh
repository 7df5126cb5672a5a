#!/bin/sh
# Replay speed of the process stage: loads N (default 1,000,000) realistic e-commerce
# events into a fresh data dir through the real server (fsync off), stops it, then runs
# `sluice replay` (log -> profiles + rollups + snapshot) and prints its events/s and the
# CPU time per event from /proc-backed `time` figures. Rerun: sh bench/process.sh [N]
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sh bench/load.sh "$dir" "$N"
echo "log: $(du -sh "$dir/log" | cut -f1) for $N events"
/usr/bin/time -f "cpu user %U s sys %S s, max rss %M KiB" ./build/sluice replay --data-dir="$dir"
