#!/bin/sh
# Load N realistic e-commerce events into the data dir DIR through the real server
# (fsync off), then stop it. Shared by bench/process.sh and bench/query.sh.
#   sh bench/load.sh DIR N [SPAN_S] [USERS]
# Events are spread evenly over the SPAN_S seconds (default 3000) ending a minute ago,
# from USERS distinct visitors (default 50000; a third identify with a userId), 40% page
# views, the rest track events (views, adds, checkouts, orders with revenue, e-mail
# opens), 500 product pages, four sources x 7 campaigns plus direct traffic.
set -eu
cd "$(dirname "$0")/.."
DIR=$1
N=$2
SPAN=${3:-3000}
USERS=${4:-50000}
make --no-print-directory build/sluice >/dev/null
mkdir -p "$DIR"
./build/sluice serve --listen=127.0.0.1:0 --data-dir="$DIR" --fsync=off --write-key=wk \
  --read-key=rk --admin-key=ak --max-body-bytes=8m --max-decompressed-bytes=16m \
  --dedup-window-events=0 >"$DIR/banner" 2>"$DIR/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
while ! grep -q "listening on" "$DIR/banner" 2>/dev/null; do sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\)\/.*/\1/p' "$DIR/banner" | head -n 1)
python3 - "$port" "$N" "$SPAN" "$USERS" <<'PY'
import base64, http.client, json, random, sys, time
port, n, span, users = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
random.seed(1)
now = time.time() - 60
names = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Email Opened"]
srcs = ["google", "facebook", "newsletter", "bing", None]
auth = "Basic " + base64.b64encode(b"wk:").decode()
c = http.client.HTTPConnection("127.0.0.1", port)
sent = 0
while sent < n:
    batch = []
    for i in range(min(2500, n - sent)):
        u = random.randrange(users)
        t = now - span + (sent + i) * (span - 100.0) / n
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)
        s = srcs[u % 5]
        url = "https://shop.example/p/%d" % random.randrange(500) + ("?utm_source=%s&utm_medium=cpc&utm_campaign=c%d" % (s, u % 7) if s else "")
        ev = {"anonymousId": "anon-%d" % u, "timestamp": ts, "context": {"page": {"url": url},
              "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}}
        if random.random() < 0.4:
            ev["type"] = "page"
        else:
            ev["type"] = "track"; ev["event"] = random.choice(names)
            if ev["event"] == "Order Completed":
                ev["properties"] = {"revenue": round(random.uniform(5, 300), 2)}
        if u % 3 == 0:
            ev["userId"] = "user-%d" % u
        batch.append(ev)
    c.request("POST", "/v1/batch", json.dumps({"batch": batch}), {"Authorization": auth, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit("batch failed: %d" % r.status)
    sent += len(batch)
    if sent % 500000 < 2500:
        print("loaded %d" % sent, file=sys.stderr)
PY
kill -TERM $pid
wait $pid || true
trap - EXIT
