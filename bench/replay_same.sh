#!/bin/sh
# Do two builds rebuild the same state? Replays DATA_DIR's log with each binary, the wall
# clock frozen (libfaketime, FAKETIME; the monotonic clock left alone) and getrandom fixed
# (bench/fixed_getrandom.c, preloaded: the profile store's seed), and compares the
# snapshots byte for byte. Prints "identical" or where they differ (exit 1).
#   sh bench/replay_same.sh DATA_DIR BASE_BINARY NEW_BINARY
# FAKETIME (default: now, rounded down to the minute) must lie after the log's last event
# and at most a day past it (older events would leave the rollup windows). Needs cc and
# libfaketime (Debian: faketime). Replays rewrite DATA_DIR's state/, never its log.
set -eu
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/replay_same.sh DATA_DIR BASE_BINARY NEW_BINARY}
base=${2:?usage}
new=${3:?usage}
lib=$(ls /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 2>/dev/null | head -n 1)
[ -n "$lib" ] || { echo "replay_same: libfaketime not found" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -shared -fPIC -o "$tmp/fixed_getrandom.so" bench/fixed_getrandom.c
: "${FAKETIME:=$(date -u '+%Y-%m-%d %H:%M:00')}"
export FAKETIME
for which in base new; do
  eval bin=\$$which
  LD_PRELOAD="$lib $tmp/fixed_getrandom.so" FAKETIME_DONT_FAKE_MONOTONIC=1 \
    "$bin" replay --data-dir="$dir" | grep '^replayed'
  cp "$dir/state/snapshot" "$tmp/$which.snapshot"
done
if cmp "$tmp/base.snapshot" "$tmp/new.snapshot"; then
  echo "identical ($(wc -c <"$tmp/new.snapshot") bytes, FAKETIME=$FAKETIME)"
else
  exit 1
fi
