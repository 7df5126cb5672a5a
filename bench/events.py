"""Realistic e-commerce events for the benchmarks (bench/process.sh, bench/scan.sh,
bench/query.sh through bench/load.sh): N events from USERS users (default 50,000; a third
identified), 40% page views, the rest Product Viewed /
Product Added / Checkout Started / Order Completed / Email Opened, UTM-tagged URLs, one
browser user agent; timestamps spread evenly over the SPAN seconds that end 200 s ago.
With COUNTRIES set, each user also has a country (context.location.country: 8 values).
Posts them to the sluice on 127.0.0.1:PORT in batches of 2,500 with the write key "wk".
Usage: python3 bench/events.py PORT N [SPAN] [countries] [users=USERS]"""
import base64, http.client, json, random, sys, time

port, n = int(sys.argv[1]), int(sys.argv[2])
rest = sys.argv[3:]
span = float(rest.pop(0)) if rest and rest[0].replace(".", "").isdigit() else 2900.0
countries = "countries" in rest
users = next((int(a[6:]) for a in rest if a.startswith("users=")), 50000)
random.seed(1)
now = time.time()
names = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Email Opened"]
srcs = ["google", "facebook", "newsletter", "bing", None]
geo = ["PL", "DE", "US", "FR", "GB", "ES", "IT", "NL"]
auth = "Basic " + base64.b64encode(b"wk:").decode()
c = http.client.HTTPConnection("127.0.0.1", port)
sent = 0
while sent < n:
    batch = []
    for i in range(min(2500, n - sent)):
        u = random.randrange(users)
        t = now - span - 100 + (sent + i) * span / n
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)
        s = srcs[u % 5]
        url = "https://shop.example/p/%d" % random.randrange(500) + ("?utm_source=%s&utm_medium=cpc&utm_campaign=c%d" % (s, u % 7) if s else "")
        ev = {"anonymousId": "anon-%d" % u, "timestamp": ts, "context": {"page": {"url": url},
              "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}}
        if countries:
            ev["context"]["location"] = {"country": geo[u % 8]}
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
