#!/bin/sh
# Minifies the browser tracker: web/sluice.js (the readable, commented source) ->
# web/sluice.min.js (what /sluice.js serves). The output is committed so that building
# sluice needs no Node.js; terser is pinned by tools/minify/package-lock.json.
#   scripts/minify.sh           write web/sluice.min.js
#   scripts/minify.sh --check   exit 1 when web/sluice.min.js is not what web/sluice.js
#                               minifies to (the browser tests run this)
set -eu
cd "$(dirname "$0")/.."
tools=tools/minify
if ! cmp -s "$tools/package-lock.json" "$tools/node_modules/.sluice-lockfile" 2>/dev/null; then
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error) >&2
  cp "$tools/package-lock.json" "$tools/node_modules/.sluice-lockfile"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
node "$tools/node_modules/terser/bin/terser" web/sluice.js --compress passes=2 --mangle \
  --toplevel --comments false --output "$out"
echo >>"$out"
if [ "${1:-}" = "--check" ]; then
  if ! cmp -s "$out" web/sluice.min.js; then
    echo "web/sluice.min.js is stale: run scripts/minify.sh (or make tracker) and commit it" >&2
    exit 1
  fi
  exit 0
fi
cp "$out" web/sluice.min.js
echo "web/sluice.min.js: $(wc -c <web/sluice.min.js) bytes, $(gzip -9c web/sluice.min.js | wc -c) gzipped"
