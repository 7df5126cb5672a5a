#!/bin/sh
# Installs the Debian packages sluice needs to build, run and test. Idempotent: only
# packages that are missing are installed, so a second run costs one dpkg query.
#   scripts/deps.sh          build + run dependencies (python3 embeds web/ at build time)
#   scripts/deps.sh test     plus test tooling (clang libFuzzer, promtool, chromium, node)
#   scripts/deps.sh bench    plus benchmark references (nginx, redis, wrk)
set -eu

build="pkg-config make gcc python3 libuv1-dev libhttp-parser-dev libcjson-dev zlib1g-dev libfyaml-dev libssl-dev libpcre2-dev libxxhash-dev libmaxminddb-dev libcurl4-openssl-dev uap-core tor-geoipdb libmaxmind-db-writer-perl"
test="clang-14 libclang-rt-14-dev python3 curl prometheus e2fsprogs chromium libfaketime"
# Browser tests (tests/browser) drive Debian's chromium with playwright-core from npm;
# node and npm come from Debian unless some nodejs package already provides them.
command -v npm >/dev/null 2>&1 || test="$test nodejs npm"
bench="nginx-light redis-server wrk"

want="$build"
case "${1:-}" in
  test)  want="$build $test" ;;
  bench) want="$build $test $bench" ;;
  "")    ;;
  *) echo "usage: $0 [test|bench]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# nginx and redis must not start as system services: the benchmark starts its own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
