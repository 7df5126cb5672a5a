#!/bin/sh
# Event -> offer latency (p50/p99/p999) at background loads, loopback, fsync always.
#   sh bench/actions.sh [SAMPLES] [RATE ...]     (builds build/sluice first)
# The data dir is under TMPDIR: point it at a real disk to include fsync cost.
set -e
cd "$(dirname "$0")/.."
make --no-print-directory build/sluice >/dev/null
exec python3 bench/actions.py "$@"
