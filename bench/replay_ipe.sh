#!/bin/bash
# Instructions per stored event of the whole `sluice replay` (reading, processing and
# writing the snapshot), counted by callgrind (repeatable on a noisy machine), with the
# share of the sketches (hll.c) and of the rollup stores (rollup.c: adding, folding).
# The data dir is copied first: replay writes its snapshot into the copy.
#   bash bench/replay_ipe.sh DATA_DIR [SLUICE_BINARY]    (needs valgrind)
# Run it with two binaries (the base build and this one) to compare.
set -eu
cd "$(dirname "$0")/.."
src=${1:?usage: bench/replay_ipe.sh DATA_DIR [SLUICE_BINARY]}
BIN=${2:-build/sluice}
[ "$BIN" = build/sluice ] && make --no-print-directory build/sluice >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/data"
cp -r "$src/log" "$tmp/data/log"
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$BIN" replay \
  --data-dir="$tmp/data" >"$tmp/replay.txt" 2>"$tmp/valgrind.txt"
events=$(sed -n 's/^replayed \([0-9]*\) events.*/\1/p' "$tmp/replay.txt")
callgrind_annotate --auto=no --threshold=100 "$tmp/cg.out" 2>/dev/null | awk -v ev="$events" '
  /PROGRAM TOTALS/ {gsub(",", "", $1); t = $1}
  $2 ~ /^\(/ && /src\/hll\.c:/ {gsub(",", "", $1); h += $1}
  $2 ~ /^\(/ && /src\/rollup(_int\.h|\.c):/ {gsub(",", "", $1); r += $1}
  END {
    printf "events %d\n", ev
    printf "whole replay: %.0f instructions (%.0f per event)\n", t, t / ev
    printf "hll.c (self): %.0f per event; rollup.c (self): %.0f per event\n", h / ev, r / ev
  }'
