#!/bin/sh
# Rules engine benchmark: evaluation cost per event with 1,000 rules loaded (bench/rules_bench.c,
# built with a plain gcc command at -O2), then instructions per event under callgrind when
# valgrind is installed (100,000 events; rules_event and rules_advance, inclusive).
#
#   sh bench/rules.sh                 (1,000 rules, 1,000,000 events)
#   sh bench/rules.sh 5000 2000000    (other counts)
#
# Needs gcc and the Debian packages of the build. The binary goes to a mktemp -d directory.
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -std=c11 -D_GNU_SOURCE -O2 -g -DNDEBUG -Isrc -o "$out/rules_bench" bench/rules_bench.c \
  src/rules.c src/rules_parse.c src/rules_set.c src/rules_state.c src/jscan.c src/util/mem.c src/util/buf.c \
  src/util/crc32c.c -lxxhash -lm
rules=${1:-1000}
"$out/rules_bench" "$rules" "${2:-1000000}"
if command -v valgrind >/dev/null 2>&1 && command -v callgrind_annotate >/dev/null 2>&1; then
  n=100000
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$out/rules_bench" "$rules" "$n" \
    >/dev/null 2>"$out/cg.log"
  ir=$(callgrind_annotate --inclusive=yes "$out/cg" 2>/dev/null |
    awk '/src\/rules.c:rules_(event|advance) \[/ { gsub(",", "", $1); s += $1 } END { print s }')
  echo "callgrind: $((ir / n)) instructions per event in rules_event + rules_advance ($n events)"
fi
