#!/bin/sh
# Memory per idle offers stream at 10,000 connections, beside Redis idle clients.
#   sh bench/sse-idle.sh [N]     (builds build/sluice first)
set -e
cd "$(dirname "$0")/.."
make --no-print-directory build/sluice >/dev/null
exec python3 bench/sse_idle.py "$@"
