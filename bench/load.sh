#!/bin/sh
# Load N realistic e-commerce events (bench/events.py) into the data dir DIR through the
# real server (fsync off), then stop it. Used by bench/process.sh and bench/query.sh.
#   sh bench/load.sh DIR N [SPAN_S] [USERS]
# Events are spread evenly over the SPAN_S seconds (default 3000) ending 100 s ago, from
# USERS distinct visitors (default 50000).
set -eu
cd "$(dirname "$0")/.."
dir=$1
. bench/serve.sh
start_sluice
python3 bench/events.py "$port" "$2" "${3:-3000}" "users=${4:-50000}"
stop_sluice
