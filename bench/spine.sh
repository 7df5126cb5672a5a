#!/bin/bash
# The single-event request ("the spine") in alternating runs: nginx, then each given sluice
# build, ROUNDS times, so builds compared minutes apart on this shared machine see the
# same contention. For each run: requests in DURATION seconds (wrk -t1 -c64, keep-alive,
# bench/ingest.sh's 315-byte event to POST /v1/track, or its pixel with MODE=pixel), the
# server's CPU per request (utime + stime of all its threads from /proc, nginx master and
# worker) and the ratio to nginx's `return 204` (or empty_gif) measured in the same round.
# With SYSCALLS=1 it also counts the server's system calls per request (perf stat on the
# syscalls:sys_enter_* tracepoints; needs perf and permission to trace).
#
#   bash bench/spine.sh build/sluice OTHER_BUILD...     (default: build/sluice)
#   ROUNDS=4 DURATION=5 CONNS=64 FSYNC=always MODE=track|pixel
#
# Each sluice run starts on a fresh data directory; nginx uses bench/nginx.conf.in (access
# log on). Server pinned to CPU 0, wrk to CPU 1, as in bench/ingest.sh.
set -u
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-4} DUR=${DURATION:-5} CONNS=${CONNS:-64} FSYNC=${FSYNC:-always} MODE=${MODE:-track}
[ $# -gt 0 ] || set -- build/sluice
for t in nginx wrk taskset; do
  command -v $t >/dev/null || { echo "spine: $t is missing (make bench-ingest installs it)" >&2; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-spine.XXXXXX")
SRV=""
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
printf '%s' '{"type":"track","event":"Product Viewed","userId":"u-1042","anonymousId":"a7f3c2e1-5b4d-4e6f-9a8b-1c2d3e4f5a6b","properties":{"sku":"SKU-1","name":"Blue Mug","price":19.99,"currency":"EUR","quantity":1},"context":{"page":{"url":"https://shop.example/p/1","referrer":"https://shop.example/c/mugs"},"locale":"de-DE"}}' >"$TMP/event.json"
QS='writeKey=wk&event=Email+Opened&userId=u1&properties.campaign=spring&context.campaign.source=newsletter'
AUTH="Basic $(printf 'wk:' | base64)"
HZ=$(getconf CLK_TCK)

port() { # below the ephemeral range (see free_port in bench/ingest.sh)
  local p
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % 22000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo $p; return; }
  done
  return 1
}
listening() { # port pid
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(sed 's/.*) //' /proc/$p/stat | awk '{print $12 + $13}'))); done; echo $t; }
load() { # url seconds -> requests completed
  local m=POST b="$TMP/event.json" a="$AUTH"
  [ "$MODE" = pixel ] && m=GET b="" a=""
  BENCH_METHOD=$m BENCH_BODY=$b BENCH_AUTH=$a taskset -c 1 wrk -t1 -c"$CONNS" -d"$2"s \
    -s bench/wrk/ingest.lua "$1" 2>&1 | sed -n 's/^BENCH .*requests=\([0-9]*\).*/\1/p'
}
# measure NAME URL PIDS...: one warm-up second, then the measured run
measure() {
  local name=$1 url=$2 n t0 t1 pids
  shift 2
  pids=$(echo "$@" | tr ' ' ',')
  load "$url" 1 >/dev/null
  if [ "${SYSCALLS:-0}" = 1 ]; then
    perf stat -x, -e raw_syscalls:sys_enter -e 'syscalls:sys_enter_*' -p "$pids" -o "$TMP/perf" \
      -- sleep $((DUR + 1)) &
    local perf=$!
    sleep 0.3
  fi
  t0=$(ticks "$@"); n=$(load "$url" "$DUR"); t1=$(ticks "$@")
  [ "${SYSCALLS:-0}" = 1 ] && wait $perf
  CPU=$(awk -v t=$((t1 - t0)) -v n="${n:-0}" -v hz="$HZ" 'BEGIN {printf "%.2f", n ? t * 1e6 / hz / n : 0}')
  printf '%-28s %8s requests  %6s µs CPU/request' "$name" "$n" "$CPU"
  if [ "${SYSCALLS:-0}" = 1 ]; then
    awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ && $1 > 0 && n > 0 {
        e = $3; sub(/.*sys_enter_?/, "", e); if (e == "") e = "all"
        if ($1 / n >= 0.01) s = s sprintf(" %s %.2f", e, $1 / n) }
      END {printf "  syscalls/request:%s", s}' "$TMP/perf"
  fi
}

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r ($(date -u +%H:%M:%S), load average $(cut -d' ' -f1 /proc/loadavg))"
  p=$(port); mkdir -p "$TMP/ng"
  sed -e "s|@DIR@|$TMP/ng|g" -e "s|@PORT@|$p|g" bench/nginx.conf.in >"$TMP/ng/nginx.conf"
  taskset -c 0 nginx -p "$TMP/ng" -e "$TMP/ng/error.log" -c "$TMP/ng/nginx.conf" >/dev/null 2>&1 &
  SRV=$!
  listening "$p" $SRV || { echo "spine: nginx did not start" >&2; exit 1; }
  w=$(pgrep -P $SRV | head -1)
  url="http://127.0.0.1:$p/204"; [ "$MODE" = pixel ] && url="http://127.0.0.1:$p/p.gif?$QS"
  measure nginx "$url" $SRV $w; NG=$CPU; echo
  kill $SRV; wait $SRV 2>/dev/null; SRV=""; rm -rf "$TMP/ng"
  for bin in "$@"; do
    p=$(port)
    taskset -c 0 "$bin" serve --listen=127.0.0.1:$p --data-dir="$TMP/data" --write-key=wk \
      --read-key=rk --admin-key=ak --fsync="$FSYNC" --log-level=warn >/dev/null 2>"$TMP/stderr" &
    SRV=$!
    listening "$p" $SRV || { echo "spine: $bin did not start:" >&2; cat "$TMP/stderr" >&2; exit 1; }
    url="http://127.0.0.1:$p/v1/track"; [ "$MODE" = pixel ] && url="http://127.0.0.1:$p/v1/p.gif?$QS"
    measure "$bin" "$url" $SRV
    awk -v a="$CPU" -v b="$NG" 'BEGIN {if (b > 0) printf "  %.2fx nginx\n", a / b; else print ""}'
    kill $SRV; wait $SRV 2>/dev/null; SRV=""; rm -rf "$TMP/data"
  done
done
