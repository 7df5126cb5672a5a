#!/bin/sh
# Instructions per record of the trusted JSON scan alone (jscan_scan_trusted with what it
# calls), with the paths the replay's decoder asks for, over the first N records of a
# data dir's log (`sluice export`), counted by callgrind: repeatable on a noisy machine,
# and quicker to rerun than a whole replay (bench/replay_jscan.sh). Builds
# bench/jscan_trusted_bench.c with this tree's src/jscan.c; run it in two trees to compare
# (the checksum line must match).
#   sh bench/jscan_trusted.sh DATA_DIR [N]      (N: 30000)    needs gcc and valgrind
set -eu
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/jscan_trusted.sh DATA_DIR [N]}
n=${2:-30000}
make --no-print-directory build/sluice >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build/sluice export --data-dir="$dir" 2>/dev/null | head -n "$n" >"$tmp/records" || true
gcc -std=c11 -D_GNU_SOURCE -O2 -g -DNDEBUG -Isrc -o "$tmp/bench" bench/jscan_trusted_bench.c \
  src/jscan.c src/util/buf.c src/util/mem.c
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$tmp/bench" "$tmp/records" \
  2>/dev/null
records=$(wc -l <"$tmp/records")
callgrind_annotate --inclusive=yes "$tmp/cg.out" 2>/dev/null |
  awk -v n="$records" '/jscan_scan_trusted \[/ { gsub(",", "", $1);
    printf "jscan_scan_trusted: %.0f instructions per record (%d records)\n", $1 / n, n }'
