#!/bin/sh
# CPU of `sluice replay` for two or more builds, alternating on one data dir, so that
# runs next to each other see the same machine (it is shared: compare pairs, not runs far
# apart). Prints one line per run: the binary, the "reading and processing" CPU seconds
# (user + sys) and the microseconds per event, as `sluice replay` reports them. Put a run
# that is not counted first: the first replay after a pause is slower (PERFORMANCE.md).
#   sh bench/replay_ab.sh DATA_DIR ROUNDS BINARY...
# DATA_DIR is a data dir with a log (e.g. `sh bench/load.sh DIR 10000000 2592000 500000`);
# each replay rewrites its state/ snapshot, never the log.
set -eu
dir=${1:?usage: bench/replay_ab.sh DATA_DIR ROUNDS BINARY...}
rounds=${2:?usage: bench/replay_ab.sh DATA_DIR ROUNDS BINARY...}
shift 2
[ $# -ge 1 ] || { echo "usage: bench/replay_ab.sh DATA_DIR ROUNDS BINARY..." >&2; exit 2; }
i=0
while [ "$i" -lt "$rounds" ]; do
  for bin in "$@"; do
    line=$("$bin" replay --data-dir="$dir" |
      sed -n 's/.*processing \([0-9.]*\) s.*(\([0-9.]*\) us per event).*/\1 s \2 us/p')
    echo "$bin $line"
  done
  i=$((i + 1))
done
