#!/bin/sh
# Ingest benchmark: sluice beside nginx and Redis Streams, in one run, on this machine.
#
#   make bench-ingest          (installs nginx-light, redis-server, wrk; builds; runs this)
#   sh bench/ingest.sh         (the same, when the tools and build/sluice are there)
#
# What it measures (every server on 127.0.0.1 only, in a mktemp -d directory, killed at
# the end):
#   nginx   1 worker, access_log on (unbuffered, to a file): POST /204 with the 315-byte
#           event (return 204), GET /p.gif (empty_gif), POST /204 with the 100-event body;
#           the first two again after sluice (the ratios divide by the mean of both)
#   redis   appendonly yes, appendfsync everysec: XADD of the same event, redis-benchmark
#           -P 1 and -P 100 (100 commands per round trip, like one batch)
#   sluice  --fsync=always: POST /v1/track, POST /v1/batch (100 events), GET /v1/p.gif,
#           each at full load and at half of that load; then --fsync=off at full load
# For each: requests/s, events/s, latency p50/p99 (wrk --latency), and the server's CPU
# time per request and per event from /proc/PID/stat (utime + stime of every thread,
# before and after, for nginx master + worker).
#
# The server is pinned to CPU 0 and the load generator to CPU 1 (taskset).
#
# Knobs (environment):
#   BENCH_DURATION  seconds per measured run (default 8)
#   BENCH_CONNS     connections at full load (default 64)
#   BENCH_FSYNC_OFF 1 to also run sluice --fsync=off (default 1)
#   BENCH_MD        file to write the result tables to as Markdown (default: none)
#   BENCH_IDLE_WAIT seconds to wait at the start for the machine to be idle (default 60)
#   BENCH_RUN_IDLE_WAIT  the same before each measured run (default 10)
#   SLUICE          the binary (default build/sluice)
#
# The machine is shared: before each run the script waits (bounded) for it to be idle,
# and after each run it names the busiest other processes, so a noisy row can be told.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-build/sluice}
DUR=${BENCH_DURATION:-8}
CONNS=${BENCH_CONNS:-64}
FSYNC_OFF=${BENCH_FSYNC_OFF:-1}
BATCH=100
HZ=$(getconf CLK_TCK)
WK=wk RK=rk AK=ak
AUTH="Basic $(printf '%s:' "$WK" | base64)"

for t in nginx redis-server redis-benchmark redis-cli wrk curl taskset timeout; do
  command -v "$t" >/dev/null 2>&1 || { echo "bench: $t is missing (run: make bench-ingest)" >&2; exit 1; }
done
[ -x "$SLUICE" ] || { echo "bench: $SLUICE is missing (run: make build/sluice)" >&2; exit 1; }

SRV_CPU=0 CLI_CPU=1
if [ "$(nproc)" -lt 2 ]; then
  echo "bench: fewer than 2 CPUs: server and client share one; figures are noisier" >&2
  CLI_CPU=0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
PIDS=""
cleanup() {
  local p
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  for p in $PIDS; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
stop_server() { # pid: SIGTERM, wait up to 10 s, forget it
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -9 "$1" 2>/dev/null; then echo "bench: server $1 ignored SIGTERM for 10 s: killed" >&2; fi
  wait "$1" 2>/dev/null || true
  PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ' || true)
}
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

# ---- payloads ---------------------------------------------------------------------

EVENT='{"type":"track","event":"Product Viewed","userId":"u-1042","anonymousId":"a7f3c2e1-5b4d-4e6f-9a8b-1c2d3e4f5a6b","properties":{"sku":"SKU-1","name":"Blue Mug","price":19.99,"currency":"EUR","quantity":1},"context":{"page":{"url":"https://shop.example/p/1","referrer":"https://shop.example/c/mugs"},"locale":"de-DE"}}'
printf '%s' "$EVENT" >"$TMP/event.json"
{
  printf '{"batch":['
  for i in $(seq 1 $BATCH); do
    [ "$i" -gt 1 ] && printf ','
    printf '{"type":"track","event":"Product Viewed","userId":"u-%05d","anonymousId":"a7f3c2e1-5b4d-4e6f-9a8b-1c2d3e4f%04d","properties":{"sku":"SKU-%d","name":"Blue Mug","price":19.99,"currency":"EUR","quantity":1},"context":{"page":{"url":"https://shop.example/p/%d","referrer":"https://shop.example/c/mugs"},"locale":"de-DE"}}' \
      "$i" "$i" "$i" "$i"
  done
  printf ']}'
} >"$TMP/batch.json"
PIXEL_QS='writeKey=wk&event=Email+Opened&userId=u1&properties.campaign=spring&context.campaign.source=newsletter'

# ---- helpers ------------------------------------------------------------------------

# A port nothing on 127.0.0.1 listens on, below the kernel's ephemeral range: a port of a
# client connection that ended a moment ago (wrk's, curl's) sits in TIME_WAIT for a
# minute, refuses connections, and yet makes a server's bind fail with EADDRINUSE. The
# runs before make hundreds of those, so a port drawn from the ephemeral range sometimes
# failed the next server at its start.
free_port() {
  local p lo hi
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  hi=$((lo > 20000 ? lo : 32768))
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % (hi - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "bench: no free port" >&2; return 1
}

# wait_port PORT PID [STDERR_FILE]: up to 10 s; the pid must be the server itself (taskset
# execs). When the server exits or never listens, its exit status and the end of its
# stderr are printed: the temporary directory holding them is gone after the script.
wait_port() {
  local rc=0
  for _ in $(seq 1 100); do
    [ "$(cat "/proc/$2/comm" 2>/dev/null)" = taskset ] && { sleep 0.05; continue; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then
      wait "$2" 2>/dev/null || rc=$?
      echo "bench: server $2 exited with status $rc before listening on port $1" >&2
      server_stderr "${3:-}"
      return 1
    fi
    sleep 0.1
  done
  echo "bench: nothing listens on port $1 after 10 s (server $2)" >&2
  server_stderr "${3:-}"
  return 1
}
server_stderr() { # file: its last lines, on stderr
  [ -n "$1" ] && [ -s "$1" ] || return 0
  echo "bench: the server's stderr ($1), last lines:" >&2
  tail -n 20 "$1" >&2
}
is_server() { # pid name: fail unless pid runs the named program
  local c
  c=$(cat "/proc/$1/comm" 2>/dev/null || true)
  case "$c" in "$2"*) return 0 ;; esac
  echo "bench: pid $1 is '$c', not $2" >&2; return 1
}

ticks() { # utime + stime (all threads) of the given pids, in clock ticks
  local t=0 p f
  for p in "$@"; do
    f=$(sed 's/.*) //' "/proc/$p/stat")  # fields after "pid (comm) "
    t=$((t + $(echo "$f" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

machine_ticks() { # busy and softirq clock ticks of all CPUs together, from /proc/stat
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $8}' /proc/stat
}

# CPU ticks of every process ("pid comm ticks"), to name what else ran during a run
proc_snapshot() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
    o = index($0, " ("); c = match($0, /\) [A-Za-z] /)
    if (!o || !c) next
    pid = substr($0, 1, o - 1); comm = substr($0, o + 2, c - o - 2)
    n = split(substr($0, c + 2), f, " ")
    gsub(/ /, "_", comm)
    print pid, comm, f[12] + f[13]
  }'
}
# noise BEFORE AFTER SECONDS OURPIDS...: the 3 busiest other processes, "comm NN%"
noise() {
  local a=$1 b=$2 secs=$3
  shift 3
  awk -v hz="$HZ" -v secs="$secs" -v ours=" $* " '
    NR == FNR {t[$1 " " $2] = $3; next}
    index(ours, " " $1 " ") {next}
    {d = $3 - t[$1 " " $2]; if (d > 0) u[$2] += d}
    END {for (c in u) printf "%d %s\n", 100 * u[c] / hz / secs + 0.5, c}' "$a" "$b" |
    sort -rn | awk '$1 >= 2 && n < 3 {printf "%s%s %d%%", (n++ ? ", " : ""), $2, $1} END {if (!n) printf "-"}'
}

# Wait (at most BENCH_IDLE_WAIT seconds, default 60) for the machine to be nearly idle:
# other work on this shared machine (a build, a fuzzer) skews every figure.
wait_idle() {
  local limit=${1:-${BENCH_IDLE_WAIT:-60}} start=$SECONDS a b busy
  while :; do
    a=$(machine_ticks); sleep 1; b=$(machine_ticks)
    busy=$(( (${b% *} - ${a% *}) * 100 / HZ ))
    [ "$busy" -le 15 ] && { [ -n "${1:-}" ] || log "machine idle before the runs: ${busy}% busy"; return 0; }
    if [ $((SECONDS - start)) -ge "$limit" ]; then
      log "  (the machine is ${busy}% busy (of $(nproc)00%) with other work; going on: figures will be noisy)"
      [ -n "${1:-}" ] || BUSY_BEFORE=$busy
      return 0
    fi
    sleep 1
  done
}

# Results: one TSV line per run in $TMP/results.tsv
#   id label server conns req_s ev_s p50_ms p99_ms cpu_us_req cpu_us_ev srv_cpu_pct cli_cpu_pct
#   errors note softirq_pct others_pct
RES="$TMP/results.tsv"
: >"$RES"

# run_wrk ID LABEL SERVER EVENTS_PER_REQ URL METHOD BODYFILE THINK_MS PIDS...
# Sets WRK_REQ_S and WRK_MEAN_MS for the caller.
run_wrk() {
  local id=$1 label=$2 server=$3 events=$4 url=$5 method=$6 body=$7 think=$8 dur=${DUR}
  shift 8
  [ "$id" = - ] && dur=${CAL_DUR:-2}
  local out="$TMP/wrk-$id.out" t0 t1 m0 m1
  [ "$id" = - ] || wait_idle "${BENCH_RUN_IDLE_WAIT:-10}"
  proc_snapshot >"$TMP/ps0"
  m0=$(machine_ticks)
  t0=$(ticks "$@")
  # wrk runs under a small bash that reports wrk's CPU time (its cutime + cstime)
  BENCH_METHOD=$method BENCH_BODY=$body BENCH_AUTH=$([ "$method" = POST ] && echo "$AUTH" || true) \
    BENCH_THINK_MS=$think BENCH_EVENTS=$events \
    timeout $((dur + 30)) taskset -c "$CLI_CPU" bash -c '
      wrk -t1 -c"$3" -d"$4"s --latency -s bench/wrk/ingest.lua "$1" >"$2" 2>&1
      rc=$?
      t=( $(sed "s/.*) //" /proc/$$/stat) )
      echo "CLIENT_TICKS $(( t[13] + t[14] ))" >>"$2"
      exit $rc
    ' _ "$url" "$out" "$CONNS" "$dur" || { log "bench: wrk failed ($label):"; cat "$out" >&2; return 1; }
  t1=$(ticks "$@")
  m1=$(machine_ticks)
  proc_snapshot >"$TMP/ps1"
  local line cli
  line=$(grep '^BENCH ' "$out") || { log "bench: no summary from wrk ($label)"; cat "$out" >&2; return 1; }
  cli=$(awk '/^CLIENT_TICKS/ {print $2}' "$out")
  # shellcheck disable=SC2086
  eval "$(echo "${line#BENCH }" | tr ' ' '\n' | sed 's/^/W_/')"
  local errs=$((W_err_connect + W_err_read + W_err_write + W_err_status + W_err_timeout))
  WRK_REQ_S=$(awk -v r="$W_requests" -v d="$W_duration_us" 'BEGIN {printf "%.0f", r / (d / 1e6)}')
  WRK_MEAN_MS=$(awk -v m="$W_mean_us" 'BEGIN {printf "%.3f", m / 1000}')
  [ "$id" = - ] && return 0
  if [ "$W_err_status" -gt 0 ]; then log "bench: $label: $W_err_status responses were not 2xx/3xx"; fi
  awk -v id="$id" -v label="$label" -v server="$server" -v conns="$CONNS" -v ev="$events" \
      -v r="$W_requests" -v d="$W_duration_us" -v p50="$W_p50_us" -v p99="$W_p99_us" \
      -v dt=$((t1 - t0)) -v hz="$HZ" -v cli="${cli:-0}" -v errs="$errs" -v note="${RUN_NOTE:--}" \
      -v others="$(noise "$TMP/ps0" "$TMP/ps1" "$(awk -v d="$W_duration_us" 'BEGIN {print d / 1e6}')" "$@" $$ $BASHPID)" \
      -v busy=$(( ${m1% *} - ${m0% *} )) -v sirq=$(( ${m1#* } - ${m0#* } )) '
    BEGIN {
      s = d / 1e6; cpu_us = dt * 1e6 / hz
      oth = busy - sirq - dt - cli; if (oth < 0) oth = 0
      printf "%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.3f\t%.0f\t%.0f\t%d\t%s\t%.0f\t%.0f\t%s\n",
        id, label, server, conns, r / s, r * ev / s, p50 / 1000, p99 / 1000,
        cpu_us / r, cpu_us / (r * ev), 100 * dt / hz / s, 100 * cli / hz / s, errs, note,
        100 * sirq / hz / s, 100 * oth / hz / s, others
    }' >>"$RES"
  log "  $(tail -1 "$RES" | awk -F'\t' '{printf "%s: %s req/s, %s ev/s, p50 %s ms, p99 %s ms, %s us/req, %s us/ev, server %s%%, client %s%%, others %s%%", $2, $5, $6, $7, $8, $9, $10, $11, $12, $16}')"
}

# half_load ID LABEL SERVER EVENTS URL METHOD BODY FULL_REQ_S PIDS...
# Offers about half of FULL_REQ_S. Rate = conns / (think + overhead): a short calibration
# run with think = conns / rate gives the overhead per request (latency plus wrk's timer
# slack), and the measured run uses think = conns / rate - overhead.
half_load() {
  local id=$1 label=$2 server=$3 events=$4 url=$5 method=$6 body=$7 full=$8
  shift 8
  local target think
  target=$(awk -v f="$full" 'BEGIN {printf "%.0f", f / 2}')
  think=$(awk -v c="$CONNS" -v r="$target" 'BEGIN {printf "%.3f", c * 1000 / r}')
  run_wrk - "$label (calibration)" "$server" "$events" "$url" "$method" "$body" "$think" "$@"
  think=$(awk -v c="$CONNS" -v r="$target" -v t0="$think" -v r0="$WRK_REQ_S" \
          'BEGIN {o = c * 1000 / r0 - t0; if (o < 0) o = 0
                  t = c * 1000 / r - o; if (t < 0.05) t = 0.05; printf "%.3f", t}')
  RUN_NOTE="target ${target} req/s = 50% of ${full}; think ${think} ms" \
    run_wrk "$id" "$label" "$server" "$events" "$url" "$method" "$body" "$think" "$@"
  awk -F'\t' -v id="$id" -v f="$full" '$1 == id {printf "%.0f", 100 * $5 / f}' "$RES" >"$TMP/pct-$id"
}

col() { awk -F'\t' -v id="$1" -v c="$2" '$1 == id {print $c}' "$RES"; }

{
  echo "sluice ingest benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)"
  echo "data dir file system: $(df -T "$TMP" | awk 'NR == 2 {print $2}'); runs of ${DUR}s, wrk -t1 -c$CONNS; server on CPU $SRV_CPU, client on CPU $CLI_CPU"
  echo "versions: $("$SLUICE" version 2>&1 | head -1); $(nginx -v 2>&1); $(redis-server --version | cut -d' ' -f1-3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "sluice build: $(git describe --always --dirty 2>/dev/null || echo unknown) ($SLUICE)"
  echo "event: $(wc -c <"$TMP/event.json") bytes; batch: $BATCH events, $(wc -c <"$TMP/batch.json") bytes"
} | tee "$TMP/header.txt" >&2
wait_idle

# ---- nginx ------------------------------------------------------------------------

# nginx_refs SUFFIX [all]: start nginx, measure the references (ids ng_*SUFFIX), stop it.
# It runs twice, before the other servers and after sluice (single and pixel only): its
# cost per request moves with the machine's state over a run, and the goals are ratios
# to it, so the report gives both and divides by their mean.
nginx_refs() {
  local sfx=$1 all=${2:-}
  log ""
  log "== nginx${sfx:+ (again, after sluice)}"
  NG_PORT=$(free_port)
  mkdir -p "$TMP/nginx"
  sed -e "s|@DIR@|$TMP/nginx|g" -e "s|@PORT@|$NG_PORT|g" bench/nginx.conf.in >"$TMP/nginx/nginx.conf"
  taskset -c "$SRV_CPU" nginx -p "$TMP/nginx" -e "$TMP/nginx/nginx-error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx/stdout" 2>&1 &
  NG_PID=$!
  PIDS="$PIDS $NG_PID"
  wait_port "$NG_PORT" "$NG_PID" "$TMP/nginx/stdout"
  is_server "$NG_PID" nginx
  NG_WORKER=""
  for _ in $(seq 1 50); do
    NG_WORKER=$(pgrep -P "$NG_PID" | head -1 || true)
    [ -n "$NG_WORKER" ] && break
    sleep 0.1
  done
  [ -n "$NG_WORKER" ] || { log "bench: nginx worker not found"; exit 1; }
  NG="http://127.0.0.1:$NG_PORT"
  CAL_DUR=1 run_wrk - "warm-up" nginx 1 "$NG/204" POST "$TMP/event.json" 0 "$NG_PID" "$NG_WORKER"
  run_wrk "ng_single$sfx" "POST 315 B event -> 204${sfx:+ (after sluice)}" nginx 1 "$NG/204" POST "$TMP/event.json" 0 "$NG_PID" "$NG_WORKER"
  NG_SINGLE=$WRK_REQ_S
  if [ -n "$all" ]; then
    run_wrk ng_batch "POST 100-event body -> 204" nginx $BATCH "$NG/204" POST "$TMP/batch.json" 0 "$NG_PID" "$NG_WORKER"
  fi
  run_wrk "ng_pixel$sfx" "GET /p.gif (empty_gif)${sfx:+ (after sluice)}" nginx 1 "$NG/p.gif?$PIXEL_QS" GET "" 0 "$NG_PID" "$NG_WORKER"
  if [ -n "$all" ]; then
    half_load ng_single_half "POST 315 B event -> 204, half load" nginx 1 "$NG/204" POST "$TMP/event.json" "$NG_SINGLE" "$NG_PID" "$NG_WORKER"
  fi
  NG_LOG_LINES=$(wc -l <"$TMP/nginx/nginx-access.log")
  stop_server "$NG_PID"
  rm -f "$TMP/nginx/nginx-access.log"
  log "  nginx access log lines: $NG_LOG_LINES"
}
nginx_refs "" all

# ---- redis ------------------------------------------------------------------------

log ""
log "== redis"
RD_PORT=$(free_port)
mkdir -p "$TMP/redis"
taskset -c "$SRV_CPU" redis-server --bind 127.0.0.1 --port "$RD_PORT" --dir "$TMP/redis" --save '' \
  --appendonly yes --appendfsync everysec --auto-aof-rewrite-percentage 0 \
  --daemonize no --logfile "$TMP/redis/redis.log" &
RD_PID=$!
PIDS="$PIDS $RD_PID"
wait_port "$RD_PORT" "$RD_PID" "$TMP/redis/redis.log"
is_server "$RD_PID" redis-server

# run_redis ID LABEL PIPELINE N
run_redis() {
  local id=$1 label=$2 pipe=$3 n=$4 out="$TMP/redis-$1.csv" t0 t1 s0 s1 m0 m1
  timeout 5 redis-cli -p "$RD_PORT" FLUSHALL >/dev/null
  [ "$id" = - ] || wait_idle "${BENCH_RUN_IDLE_WAIT:-10}"
  proc_snapshot >"$TMP/ps0"
  m0=$(machine_ticks); t0=$(ticks "$RD_PID"); s0=$(date +%s%N)
  timeout $((DUR * 4 + 60)) taskset -c "$CLI_CPU" redis-benchmark -h 127.0.0.1 -p "$RD_PORT" \
    -n "$n" -c "$CONNS" -P "$pipe" --csv XADD s '*' e "$EVENT" >"$out" 2>&1 \
    || { log "bench: redis-benchmark failed"; cat "$out" >&2; return 1; }
  t1=$(ticks "$RD_PID"); s1=$(date +%s%N); m1=$(machine_ticks)
  proc_snapshot >"$TMP/ps1"
  local len
  len=$(timeout 5 redis-cli -p "$RD_PORT" XLEN s)
  [ "$len" -ge "$n" ] || log "bench: $label: stream has $len entries, expected $n"
  # CSV: "test","rps","avg","min","p50","p95","p99","max" (the test name holds the
  # event, quotes and all, so count fields from the end)
  RD_RPS=$(tail -1 "$out" | awk -F'","' '{print $(NF-6)}')
  [ "$id" = - ] && return 0
  tail -1 "$out" | awk -F'","' -v id="$id" -v label="$label" -v conns="$CONNS" -v n="$n" \
      -v dt=$((t1 - t0)) -v hz="$HZ" -v ns=$((s1 - s0)) -v pipe="$pipe" \
      -v busy=$(( ${m1% *} - ${m0% *} )) -v sirq=$(( ${m1#* } - ${m0#* } )) \
      -v others="$(noise "$TMP/ps0" "$TMP/ps1" "$(awk -v n=$((s1 - s0)) 'BEGIN {print n / 1e9}')" "$RD_PID" $$ $BASHPID)" '{
    rps = $(NF-6); p50 = $(NF-3); p99 = $(NF-1); s = ns / 1e9; cpu_us = dt * 1e6 / hz
    # redis-benchmark is not measured on its own: "others" includes it
    oth = busy - sirq - dt; if (oth < 0) oth = 0
    printf "%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.3f\t%.0f\t%s\t%d\t%s\t%.0f\t%.0f\t%s\n",
      id, label, "redis", conns, rps, rps, p50, p99, cpu_us / n, cpu_us / n,
      100 * dt / hz / s, "(in others)", 0, "-P " pipe "; latency per command",
      100 * sirq / hz / s, 100 * oth / hz / s, others
  }' >>"$RES"
  log "  $(tail -1 "$RES" | awk -F'\t' '{printf "%s: %s req/s, %s ev/s, p50 %s ms, p99 %s ms, %s us/req, %s us/ev, server %s%%, client %s%%, others %s%%", $2, $5, $6, $7, $8, $9, $10, $11, $12, $16}')"
}
run_redis - "calibration" 1 30000
N1=$(awk -v r="$RD_RPS" -v d="$DUR" 'BEGIN {n = int(r * d); if (n < 10000) n = 10000; if (n > 2000000) n = 2000000; print n}')
run_redis rd_p1 "XADD 315 B, -P 1" 1 "$N1"
run_redis - "calibration" $BATCH 100000
N100=$(awk -v r="$RD_RPS" -v d="$DUR" 'BEGIN {n = int(r * d); if (n < 100000) n = 100000; if (n > 3000000) n = 3000000; print n}')
run_redis rd_p100 "XADD 315 B, -P 100" $BATCH "$N100"
timeout 5 redis-cli -p "$RD_PORT" FLUSHALL >/dev/null
stop_server "$RD_PID"

# ---- sluice ------------------------------------------------------------------------

# sluice_start FSYNC: sets SL_PID, SL
sluice_start() {
  local port dir="$TMP/sluice-$1"
  port=$(free_port)
  mkdir -p "$dir"
  SL_DIR=$dir
  taskset -c "$SRV_CPU" "$SLUICE" serve --listen="127.0.0.1:$port" --data-dir="$dir/data" --write-key=$WK \
    --read-key=$RK --admin-key=$AK --fsync="$1" --log-level=warn >"$dir/stdout" 2>"$dir/stderr" &
  SL_PID=$!
  PIDS="$PIDS $SL_PID"
  wait_port "$port" "$SL_PID" "$dir/stderr"
  is_server "$SL_PID" sluice
  SL="http://127.0.0.1:$port"
  SL_ERR="$dir/stderr"
}
sluice_stop() { # and show what it wrote on stderr (warnings and errors only)
  stop_server "$SL_PID"
  server_stderr "$SL_ERR"
}
# fsync count, fsync seconds, events accepted, rolls that took a prepared segment (from
# /metrics), segments (files in the log's directory); outside the measured window
sluice_stats() {
  local segs
  segs=$(find "$SL_DIR/data/log" -maxdepth 1 -name '*.log' 2>/dev/null | wc -l)
  timeout 5 curl -s -H "Authorization: Bearer $RK" "$SL/metrics" |
    awk -v segs="$segs" '$1 == "sluice_log_fsync_seconds_count" {c = $2}
         $1 == "sluice_log_fsync_seconds_sum" {s = $2}
         $1 == "sluice_events_accepted_total" {e = $2}
         $1 == "sluice_log_prepared_rolls" {p = $2}
         END {printf "%d %.6f %d %d %d\n", c, s, e, p, segs}'
}
GC="$TMP/groupcommit.tsv"
: >"$GC"
# sl_run ID LABEL EVENTS URL METHOD BODY  (full load, on the running sluice)
sl_run() {
  local a b
  a=$(sluice_stats)
  run_wrk "$1" "$2" "sluice" "$3" "$4" "$5" "$6" 0 "$SL_PID"
  b=$(sluice_stats)
  echo "$1 $a $b" | awk -v req="$(col "$1" 5)" -v d="$DUR" '{
    n = $7 - $2; s = $8 - $3; e = $9 - $4
    printf "%s\t%d\t%.0f\t%.3f\t%.1f\t%d\t%d\n", $1, n, n / d, n ? 1000 * s / n : 0,
           n ? e / n : 0, $11 - $6, $10 - $5
  }' >>"$GC"
}
sl_half() { half_load "$1" "$2" "sluice" "$3" "$4" "$5" "$6" "$7" "$SL_PID"; }

for mode in always off; do
  [ "$mode" = off ] && [ "$FSYNC_OFF" != 1 ] && continue
  log ""
  log "== sluice --fsync=$mode"
  sluice_start "$mode"
  CAL_DUR=1 run_wrk - "warm-up" sluice 1 "$SL/v1/track" POST "$TMP/event.json" 0 "$SL_PID"
  sl_run "sl_${mode}_single" "POST /v1/track, 1 event, fsync=$mode" 1 "$SL/v1/track" POST "$TMP/event.json"
  SL_SINGLE=$WRK_REQ_S
  sl_run "sl_${mode}_batch" "POST /v1/batch, $BATCH events, fsync=$mode" $BATCH "$SL/v1/batch" POST "$TMP/batch.json"
  SL_BATCH=$WRK_REQ_S
  sl_run "sl_${mode}_pixel" "GET /v1/p.gif, fsync=$mode" 1 "$SL/v1/p.gif?$PIXEL_QS" GET ""
  SL_PIXEL=$WRK_REQ_S
  if [ "$mode" = always ]; then
    sl_half sl_always_single_half "POST /v1/track, fsync=always, half load" 1 "$SL/v1/track" POST "$TMP/event.json" "$SL_SINGLE"
    sl_half sl_always_batch_half "POST /v1/batch, fsync=always, half load" $BATCH "$SL/v1/batch" POST "$TMP/batch.json" "$SL_BATCH"
    sl_half sl_always_pixel_half "GET /v1/p.gif, fsync=always, half load" 1 "$SL/v1/p.gif?$PIXEL_QS" GET "" "$SL_PIXEL"
  fi
  log "  events stored: $(sluice_stats | cut -d' ' -f3)"
  sluice_stop
  rm -rf "$TMP/sluice-$mode/data"
done

nginx_refs _after

# ---- report ------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
# ref_cpu ID: nginx's CPU µs/request for reference ID, the mean of its two runs (one when
# the second is missing); ref_txt ID: the two as "before / after".
ref_cpu() {
  awk -v a="$(col "$1" 9)" -v b="$(col "${1}_after" 9)" 'BEGIN {
    if (a == "") exit; if (b == "") print a; else printf "%.2f", (a + b) / 2 }'
}
ref_txt() {
  local a b; a=$(col "$1" 9); b=$(col "${1}_after" 9)
  [ -n "$b" ] && echo "$a / $b" || echo "$a"
}
verdict() { # value op limit
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
    ok = (op == "<=") ? v <= l : v < l; print ok ? "met" : "NOT met" }'
}

report() {
  cat "$TMP/header.txt"
  if [ -n "${BUSY_BEFORE:-}" ]; then
    echo "WARNING: before the runs the machine was ${BUSY_BEFORE}% busy with other work (see \"others %\")"
  fi
  echo
  echo "| run | server | req/s | events/s | p50 ms | p99 ms | server CPU µs/req | server CPU µs/event | server CPU % | client CPU % | softirq % | others % | errors | reference CPU µs/req | ratio |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
  : >"$TMP/noise.txt"
  local id ref
  while IFS=$'\t' read -r id label server conns rps eps p50 p99 cpr cpe srv cli errs note sirq oth busy; do
    ref=""
    case "$id" in
      sl_*_single) ref=ng_single ;;
      sl_*_batch) ref=ng_batch ;;
      sl_*_pixel) ref=ng_pixel ;;
    esac
    local refcol="" rat=""
    if [ -n "$ref" ] && [ -n "$(col $ref 9)" ]; then
      refcol="nginx $(ref_txt $ref)"
      rat="$(ratio "$cpr" "$(ref_cpu $ref)")x"
    fi
    case "$id" in *_half) label="$label ($(cat "$TMP/pct-$id" 2>/dev/null || echo '?')% of full)" ;; esac
    echo "| $label | $server | $rps | $eps | $p50 | $p99 | $cpr | $cpe | $srv | $cli | $sirq | $oth | $errs | $refcol | $rat |"
    [ "$busy" = - ] || echo "- $label ($server): $busy" >>"$TMP/noise.txt"
  done <"$RES"
  echo
  echo "Server: the benchmarked server's own CPU (all threads; nginx master + worker), from /proc/PID/stat."
  echo "softirq: kernel softirq time on both CPUs (loopback TCP delivery), charged to no process."
  echo "others: all other busy CPU time on the machine (kernel threads, and other users' work)."
  if [ -s "$TMP/noise.txt" ]; then
    echo
    echo "Busiest other processes during each run (≥ 2% of one CPU):"
    echo
    cat "$TMP/noise.txt"
  fi
  echo
  echo "sluice group commit with --fsync=always (from its /metrics, per full-load run):"
  echo
  echo "| run | fdatasyncs | fdatasyncs/s | mean fdatasync ms | events per fdatasync | segment rolls (prepared) |"
  echo "|---|---:|---:|---:|---:|---:|"
  local mode
  while IFS=$'\t' read -r id n ns ms epf rolls prep; do
    mode=${id#sl_}
    [ "${mode%%_*}" = always ] || continue
    echo "| $(col "$id" 2) | $n | $ns | $ms | $epf | $rolls ($prep) |"
  done <"$GC"
  echo
  local s n b p
  s=$(col sl_always_single 9); n=$(ref_cpu ng_single)
  echo "Goals (sluice --fsync=always):"
  echo
  echo "| goal | figure | reference | ratio | target | verdict |"
  echo "|---|---:|---:|---:|---|---|"
  r=$(ratio "$s" "$n")
  echo "| single-event CPU/request vs nginx POST->204 (mean of $(ref_txt ng_single)) | $s µs | $n µs | ${r}x | ≤ 1.5x (aim 0.8x) | $(verdict "$r" '<=' 1.5)$(awk -v r="$r" 'BEGIN {if (r <= 0.8) print ", aim met"}') |"
  p=$(col sl_always_pixel 9); n=$(ref_cpu ng_pixel); r=$(ratio "$p" "$n")
  echo "| pixel CPU/request vs nginx empty_gif (mean of $(ref_txt ng_pixel)) | $p µs | $n µs | ${r}x | ≤ 1.5x (aim 0.8x) | $(verdict "$r" '<=' 1.5) |"
  b=$(col sl_always_batch 10); n=$(col rd_p100 10)
  echo "| batched CPU per event (100/request) | $b µs | redis XADD -P 100: $n µs | $(ratio "$b" "$n")x | ≤ 2 µs (aim 0.5) | $(verdict "$b" '<=' 2)$(awk -v b="$b" 'BEGIN {if (b <= 0.5) print ", aim met"}') |"
  s=$(col sl_always_single 10); n=$(col rd_p1 10)
  echo "| single-event CPU per event vs Redis XADD -P 1 | $s µs | $n µs | $(ratio "$s" "$n")x | (reference only) | - |"
  for k in single batch pixel; do
    local v; v=$(col "sl_always_${k}_half" 8)
    [ -n "$v" ] || continue
    echo "| ack p99 at half load, $k ($(col "sl_always_${k}_half" 5) req/s, $(cat "$TMP/pct-sl_always_${k}_half")% of full) | $v ms | nginx POST half load: $(col ng_single_half 8) ms | | < 5 ms | $(verdict "$v" '<' 5) |"
  done
}

log ""
report | tee "$TMP/report.md"
if [ -n "${BENCH_MD:-}" ]; then cp "$TMP/report.md" "$BENCH_MD"; fi
