#!/bin/sh
# Load N realistic e-commerce events (bench/events.py) into the data dir DIR through the
# real server (fsync off), then stop it. Used by bench/process.sh and bench/query.sh.
#   sh bench/load.sh DIR N [SPAN_S] [USERS]
# Events are spread evenly over the SPAN_S seconds (default 3000) ending 100 s ago, from
# USERS distinct visitors (default 50000). BENCH_SESSIONS=1 generates them as shoppers'
# visits (bench/events.py `sessions`) instead of one random visitor per event.
set -eu
cd "$(dirname "$0")/.."
dir=$1
. bench/serve.sh
start_sluice
python3 bench/events.py "$port" "$2" "${3:-3000}" "users=${4:-50000}" \
  ${BENCH_SESSIONS:+sessions}
stop_sluice
