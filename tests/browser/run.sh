#!/bin/sh
# Runs the browser tests: Debian's chromium driven by playwright-core (pinned by
# package-lock.json, installed with `npm ci` into node_modules/ whenever the lockfile
# changed; never a browser download). A missing chromium, node or npm is a failure, not
# a skip. Prints "browser: N passed, N failed" last. Arguments: a test file filter.
set -u
cd "$(dirname "$0")"
fail() { echo "FAIL $1"; echo "browser: 0 passed, 1 failed"; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "chromium is missing: run scripts/deps.sh test"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || fail "node/npm missing: run scripts/deps.sh test"
if ! cmp -s package-lock.json node_modules/.sluice-lockfile 2>/dev/null; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error ||
    fail "npm ci (is the npm registry reachable?)"
  cp package-lock.json node_modules/.sluice-lockfile
fi
exec node run.mjs "$@"
