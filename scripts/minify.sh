#!/bin/sh
# Minifies the browser tracker: web/sluice.js (the readable, commented source) ->
# web/sluice.min.js (what /sluice.js serves), and its offers part web/sluice-offers.js ->
# web/sluice-offers.min.js (/sluice-offers.js, loaded only by pages with data-offers). The output is committed so that building
# sluice needs no Node.js; terser is pinned by tools/minify/package-lock.json.
#   scripts/minify.sh           write web/sluice.min.js and web/sluice-offers.min.js
#   scripts/minify.sh --check   exit 1 when either is not what its source minifies to
#                               (the browser tests run this)
set -eu
cd "$(dirname "$0")/.."
tools=tools/minify
if ! cmp -s "$tools/package-lock.json" "$tools/node_modules/.sluice-lockfile" 2>/dev/null; then
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error) >&2
  cp "$tools/package-lock.json" "$tools/node_modules/.sluice-lockfile"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for name in sluice sluice-offers; do
  node "$tools/node_modules/terser/bin/terser" "web/$name.js" --compress passes=2 --mangle \
    --toplevel --comments false --output "$out"
  echo >>"$out"
  min="web/$name.min.js"
  if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$out" "$min"; then
      echo "$min is stale: run scripts/minify.sh (or make tracker) and commit it" >&2
      exit 1
    fi
    continue
  fi
  cat "$out" >"$min"
  echo "$min: $(wc -c <"$min") bytes, $(gzip -9c "$min" | wc -c) gzipped"
done
