#!/bin/sh
# Profile store benchmark: bytes per profile and CPU time per profile_apply at a million
# profiles, beside an in-process reference (id + XXH3 + random record touch), from
# bench/profile_bench.c built with a plain gcc command.
#
#   sh bench/profile.sh            (1,000,000 profiles)
#   sh bench/profile.sh 200000     (another count)
#
# Needs gcc and libxxhash-dev. The binary goes to a mktemp -d directory, removed at the end.
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -std=c11 -D_GNU_SOURCE -O2 -DNDEBUG -Isrc -o "$out/profile_bench" \
  bench/profile_bench.c src/profile.c src/util/mem.c src/util/buf.c src/util/crc32c.c \
  src/util/rand.c -lxxhash -lm -lpthread
"$out/profile_bench" "${1:-1000000}"
