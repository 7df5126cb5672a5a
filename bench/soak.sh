#!/bin/sh
# Soak: sluice (release build, fsync always) under steady load for SOAK_MINUTES, with its
# memory sampled every 10 s. Prints each sample and the least-squares slopes of RSS, of
# the rollups' heap bytes (events, sessions and the KPI state's; without a budget they
# grow by design as their rings fill: a new bucket per second, minute and hour), of the
# rest (RSS minus the rollups), and of the allocator's view (glibc mallinfo2: heap bytes
# in use, freed bytes it keeps) — over the second half of the run (after the bounded
# structures — profiles, dedup ids, user-agent cache — had time to fill) and, for runs of
# 35 minutes or more, over the last 30 minutes.
# "Memory stays flat" means: RSS's slope is ~0 once every bound is reached (with
# --rollup-max-bytes, the rollups' too).
#
#   make soak                      (SOAK_MINUTES=30)
#   SOAK_MINUTES=5 sh bench/soak.sh
#   SOAK_FLAGS="--rollup-max-bytes=64m" sh bench/soak.sh     (more server flags)
#
# Load: bench/wrk/soak.lua, 20-event batches from a million users with varied products,
# pages, campaigns and user agents, SOAK_CONNS connections (default 4) each with an
# exponential think time of mean SOAK_THINK_MS (default 20 ms).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-build/sluice}
MIN=${SOAK_MINUTES:-30}
CONNS=${SOAK_CONNS:-4}
THINK=${SOAK_THINK_MS:-20}
for t in wrk curl; do command -v $t >/dev/null || { echo "soak: $t missing (scripts/deps.sh bench)" >&2; exit 1; }; done
[ -x "$SLUICE" ] || { echo "soak: $SLUICE missing (make build/sluice)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-soak.XXXXXX")
PID=""
WRK=""
cleanup() {
  [ -n "$WRK" ] && kill "$WRK" 2>/dev/null || true
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$((20000 + RANDOM % 30000))
"$SLUICE" serve --listen=127.0.0.1:$PORT --data-dir="$TMP/data" --write-key=wk --read-key=rk \
  --admin-key=ak ${SOAK_FLAGS:-} >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

metric() { curl -s -H "Authorization: Bearer rk" "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status"; }

BENCH_AUTH="Basic $(printf 'wk:' | base64)" BENCH_THINK_MS=$THINK \
  wrk -t1 -c"$CONNS" -d"$((MIN * 60 + 5))s" --timeout 10s -s bench/wrk/soak.lua \
  "http://127.0.0.1:$PORT/v1/batch" >"$TMP/wrk" 2>&1 &
WRK=$!

kib() { awk -v b="${1:-0}" 'BEGIN { printf "%d", b / 1024 }'; }

printf '%8s %10s %10s %10s %10s %10s %12s %8s\n' seconds rss_kib rollup_kib budget_kib \
  inuse_kib free_kib events lag
: >"$TMP/samples"
t0=$(date +%s)
while kill -0 "$WRK" 2>/dev/null; do
  sleep 10
  t=$(( $(date +%s) - t0 ))
  r=$(rss)
  ro=$(awk -v a="$(metric sluice_rollup_bytes)" -v b="$(metric sluice_kpi_rollup_bytes)" 'BEGIN { printf "%d", a + b }')
  ev=$(metric sluice_log_end_offset)
  lag=$(metric sluice_process_lag_events)
  ro_kib=$(kib "$ro")
  bu_kib=$(kib "$(metric sluice_rollup_budget_bytes)")
  use_kib=$(kib "$(metric sluice_malloc_in_use_bytes)")
  free_kib=$(kib "$(metric sluice_malloc_free_bytes)")
  printf '%8d %10d %10d %10d %10d %10d %12s %8s\n' "$t" "$r" "$ro_kib" "$bu_kib" "$use_kib" \
    "$free_kib" "${ev%.*}" "${lag%.*}"
  echo "$t $r $ro_kib $use_kib $free_kib" >>"$TMP/samples"
done
wait "$WRK" || true
grep BENCH "$TMP/wrk" || true

awk '
  { t[NR] = $1 / 60; rss[NR] = $2; ro[NR] = $3; use[NR] = $4; fre[NR] = $5; n = NR }
  function slope(y, i0,   i, k, sx, sy, sxx, sxy, m) {
    k = 0; sx = sy = sxx = sxy = 0
    for (i = i0; i <= n; i++) { k++; sx += t[i]; sy += y[i]; sxx += t[i] * t[i]; sxy += t[i] * y[i] }
    m = k * sxx - sx * sx
    return m > 0 ? (k * sxy - sx * sy) / m : 0
  }
  function report(label, i0) {
    printf "%s (%d samples, %d-%d s): RSS %+.1f KiB/min, rollups %+.1f KiB/min, the rest %+.1f KiB/min; heap in use %+.1f KiB/min, heap free %+.1f KiB/min, RSS - heap in use %+.1f KiB/min\n",
      label, n - i0 + 1, t[i0] * 60, t[n] * 60, slope(rss, i0), slope(ro, i0), slope(rest, i0),
      slope(use, i0), slope(fre, i0), slope(over, i0)
    printf "  %s: RSS %d-%d MiB, rollups %d-%d MiB, rest %d-%d MiB\n", label,
      lo(rss, i0) / 1024, hi(rss, i0) / 1024, lo(ro, i0) / 1024, hi(ro, i0) / 1024,
      lo(rest, i0) / 1024, hi(rest, i0) / 1024
  }
  function lo(y, i0,   i, m) { m = y[i0]; for (i = i0; i <= n; i++) if (y[i] < m) m = y[i]; return m }
  function hi(y, i0,   i, m) { m = y[i0]; for (i = i0; i <= n; i++) if (y[i] > m) m = y[i]; return m }
  END {
    for (i = 1; i <= n; i++) { rest[i] = rss[i] - ro[i]; over[i] = rss[i] - use[i] }
    report("second half", int(n / 2) + 1)
    if (t[n] >= 35) {
      for (i0 = 1; t[i0] < t[n] - 30; i0++) {}
      report("last 30 minutes", i0)
    }
  }' "$TMP/samples"
