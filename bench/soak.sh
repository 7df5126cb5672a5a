#!/bin/sh
# Soak: sluice (release build, fsync always) under steady load for SOAK_MINUTES, with its
# memory sampled every 10 s. Prints each sample and, over the second half of the run
# (after the bounded structures — profiles, dedup ids, user-agent cache — had time to
# fill), the least-squares slope of RSS, of the rollups' heap bytes (events, sessions and
# the KPI state's; they grow by design as their rings fill: a new bucket per second,
# minute and hour) and of the rest.
# "Memory stays flat" means: the rest's slope is ~0.
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

printf '%8s %12s %14s %12s %12s\n' seconds rss_kib rollup_kib events lag
: >"$TMP/samples"
t0=$(date +%s)
while kill -0 "$WRK" 2>/dev/null; do
  sleep 10
  t=$(( $(date +%s) - t0 ))
  r=$(rss)
  ro=$(awk -v a="$(metric sluice_rollup_bytes)" -v b="$(metric sluice_kpi_rollup_bytes)" 'BEGIN { printf "%d", a + b }')
  ev=$(metric sluice_log_end_offset)
  lag=$(metric sluice_process_lag_events)
  ro_kib=$(awk -v b="${ro:-0}" 'BEGIN { printf "%d", b / 1024 }')
  printf '%8d %12d %14d %12s %12s\n' "$t" "$r" "$ro_kib" "${ev%.*}" "${lag%.*}"
  echo "$t $r $ro_kib" >>"$TMP/samples"
done
wait "$WRK" || true
grep BENCH "$TMP/wrk" || true

awk '
  { t[NR] = $1 / 60; rss[NR] = $2; ro[NR] = $3; n = NR }
  function slope(y,   i, k, sx, sy, sxx, sxy, m) {
    k = 0; sx = sy = sxx = sxy = 0
    for (i = int(n / 2) + 1; i <= n; i++) { k++; sx += t[i]; sy += y[i]; sxx += t[i] * t[i]; sxy += t[i] * y[i] }
    m = k * sxx - sx * sx
    return m > 0 ? (k * sxy - sx * sy) / m : 0
  }
  END {
    for (i = 1; i <= n; i++) rest[i] = rss[i] - ro[i]
    printf "second half (%d samples): RSS %+.1f KiB/min, rollups %+.1f KiB/min, the rest %+.1f KiB/min\n",
      n - int(n / 2), slope(rss), slope(ro), slope(rest)
  }' "$TMP/samples"
