#!/bin/sh
# Runs every test suite and adds up their "N passed, N failed" lines:
#   unit tests (ASan+UBSan binaries), fuzz corpus replays, end-to-end tests against the
#   real (ASan) binary, browser tests (chromium + playwright-core). A suite that crashes
#   or prints no summary counts as one failure.
# The last line printed is the total, "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
# SLUICE_SAN=tsan (make tsan): the unit and end-to-end tests against the ThreadSanitizer
# build instead; fuzzers and browser tests are left to the ASan run.
SAN=${SLUICE_SAN:-asan}
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
[ "$SAN" = tsan ] && export SLUICE_BIN="${SLUICE_BIN:-build/tsan/sluice}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0
failed=0
failures=""

tally() { # name logfile exitcode
  line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failures="$failures $1"
    echo "FAIL $1 (no summary, exit $3); last lines:"; tail -n 20 "$2"
    return
  fi
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) failed.*/\1/')
  if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" -ne 0 ]; then
    failures="$failures $1"; echo "FAIL $1: $line"; grep -E '^(FAIL|  )' "$2" | head -n 40
  else
    echo "ok   $1: $line"
  fi
}

for t in build/$SAN/test_*; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  timeout 300 "$t" >"$out/$n.log" 2>&1; rc=$?
  tally "$n" "$out/$n.log" "$rc"
done

for f in $([ "$SAN" = asan ] && echo build/fuzz/fuzz_*); do
  [ -x "$f" ] || continue
  n=$(basename "$f"); c=tests/fuzz/corpus/${n#fuzz_}
  if [ ! -d "$c" ] || [ -z "$(ls -A "$c")" ]; then
    echo "$n: 0 passed, 1 failed (no corpus in $c)" >"$out/$n.log"; rc=1
  else
    timeout 300 "$f" -runs=1 "$c"/* >"$out/$n.log" 2>&1; rc=$?
    cnt=$(ls "$c" | wc -l)
    if [ "$rc" -eq 0 ]; then echo "$n: $cnt passed, 0 failed" >>"$out/$n.log"
    else echo "$n: 0 passed, 1 failed" >>"$out/$n.log"; fi
  fi
  tally "$n-corpus" "$out/$n.log" "$rc"
done

for e in tests/e2e/test_*.py; do
  [ -f "$e" ] || continue
  n=$(basename "$e" .py)
  timeout 600 python3 "$e" >"$out/$n.log" 2>&1; rc=$?
  tally "$n" "$out/$n.log" "$rc"
done

# Browser tests: sluice.js and the demo shop in Debian's chromium (tests/browser/run.sh).
if [ "$SAN" = asan ]; then
  timeout 300 sh tests/browser/run.sh >"$out/browser.log" 2>&1; rc=$?
  tally browser "$out/browser.log" "$rc"
fi

[ -n "$failures" ] && echo "failed suites:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
