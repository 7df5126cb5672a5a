# Sourced by bench scripts: start_sluice [FLAGS...] builds build/sluice, starts `sluice
# serve` on a free port with a fresh data dir (fsync off, keys wk / rk / ak, 8 MiB bodies,
# no dedup window) plus FLAGS, and sets dir, pid and port; at exit the server is stopped
# and the dir removed.
start_sluice() {
  make --no-print-directory build/sluice >/dev/null
  dir=$(mktemp -d)
  trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
  ./build/sluice serve --listen=127.0.0.1:0 --data-dir="$dir" --fsync=off --write-key=wk \
    --read-key=rk --admin-key=ak --max-body-bytes=8m --max-decompressed-bytes=16m \
    --dedup-window-events=0 "$@" >"$dir/banner" 2>"$dir/err" &
  pid=$!
  while ! grep -q "listening on" "$dir/banner" 2>/dev/null; do sleep 0.1; done
  port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)\/.*/\1/p' "$dir/banner" | head -n 1)
}
