#!/bin/bash
# Instructions per stored event of the whole `sluice replay` and of its main parts, each
# with what it calls: the trusted JSON scan (jscan_scan_trusted), the rollup adds
# (rollup_add_len, which every add goes through; sketch adds and minute folding included)
# and writing the snapshot
# (process.c serialize), counted by callgrind (repeatable on a noisy machine). The data
# dir is copied first: replay writes its snapshot into the copy.
#   bash bench/replay_jscan.sh DATA_DIR [SLUICE_BINARY]    (needs valgrind)
# DATA_DIR is any data dir with a log (e.g. one `make bench-query` loaded); run it with
# two binaries (the base build and this one) to compare.
set -eu
cd "$(dirname "$0")/.."
src=${1:?usage: bench/replay_jscan.sh DATA_DIR [SLUICE_BINARY]}
BIN=${2:-build/sluice}
[ "$BIN" = build/sluice ] && make --no-print-directory build/sluice >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/data"
cp -r "$src/log" "$tmp/data/log"
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$BIN" replay \
  --data-dir="$tmp/data" >"$tmp/replay.txt" 2>"$tmp/valgrind.txt"
events=$(sed -n 's/^replayed \([0-9]*\) events.*/\1/p' "$tmp/replay.txt")
callgrind_annotate --threshold=100 --inclusive=yes "$tmp/cg.out" 2>/dev/null | awk -v ev="$events" '
  /PROGRAM TOTALS/ {gsub(",", "", $1); t = $1}
  /jscan.c:jscan_scan_trusted \[/ {gsub(",", "", $1); j = $1}
  /rollup.c:rollup_add_len \[/ {gsub(",", "", $1); r = $1}
  /process.c:serialize \[/ {gsub(",", "", $1); w = $1}
  END {
    printf "events %d\n", ev
    printf "whole replay: %.0f instructions (%.0f per event)\n", t, t / ev
    printf "jscan_scan_trusted: %.0f instructions (%.0f per event, %.1f%% of the replay)\n", j, j / ev, 100 * j / t
    printf "rollup adds: %.0f per event; writing the snapshot: %.0f per event\n", r / ev, w / ev
  }'
