# Sourced by bench scripts: start_sluice [FLAGS...] builds build/sluice, starts `sluice
# serve` on a free port (fsync off, keys wk / rk / ak, 8 MiB bodies, no dedup window) plus
# FLAGS, and sets dir, pid and port. The data dir is $dir when the caller set it (kept),
# else a fresh one removed at exit. stop_sluice stops it (SIGTERM: snapshot written).
start_sluice() {
  make --no-print-directory build/sluice >/dev/null
  if [ -n "${dir:-}" ]; then
    mkdir -p "$dir"
    trap 'kill $pid 2>/dev/null || true' EXIT
  else
    dir=$(mktemp -d)
    trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
  fi
  ./build/sluice serve --listen=127.0.0.1:0 --data-dir="$dir" --fsync=off --write-key=wk \
    --read-key=rk --admin-key=ak --max-body-bytes=8m --max-decompressed-bytes=16m \
    --dedup-window-events=0 "$@" >"$dir/banner" 2>"$dir/err" &
  pid=$!
  while ! grep -q "listening on" "$dir/banner" 2>/dev/null; do sleep 0.1; done
  port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)\/.*/\1/p' "$dir/banner" | head -n 1)
}

stop_sluice() {
  kill -TERM "$pid"
  wait "$pid" || true
}
