#!/bin/sh
# Rollup benchmark: CPU time per rollup_add, memory held after a day of traffic, query and
# snapshot times (bench/rollup_bench.c describes the scenarios and the reference).
#
#   sh bench/rollup.sh [EVENTS]      (default 1000000)
#
# Builds with plain gcc -O2 (not the Makefile) into a mktemp -d directory and runs once;
# figures are single-run CPU times (CLOCK_PROCESS_CPUTIME_ID), printed beside the
# reference loop measured in the same process.
set -eu
export LC_ALL=C
cd "$(dirname "$0")/.."
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-rollup-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
${CC:-gcc} -std=c11 -D_GNU_SOURCE -O2 -DNDEBUG -Isrc -o "$TMP/rollup_bench" \
  bench/rollup_bench.c src/rollup.c src/rollup_snap.c src/hll.c src/util/buf.c src/util/mem.c src/util/clock.c \
  -lxxhash -lm
echo "rollup bench: $(uname -m), $(nproc) CPUs, gcc -O2, ${1:-1000000} events"
"$TMP/rollup_bench" "${1:-1000000}"
