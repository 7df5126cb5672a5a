"""Realistic e-commerce events for the benchmarks (bench/process.sh, bench/scan.sh,
bench/query.sh through bench/load.sh): N events from USERS users (default 50,000; a third
identified), 40% page views, the rest Product Viewed /
Product Added / Checkout Started / Order Completed / Email Opened, UTM-tagged URLs, one
browser user agent; timestamps spread evenly over the SPAN seconds that end 200 s ago.
With COUNTRIES set, each user also has a country (context.location.country: 8 values).
By default every event comes from a user drawn at random (no two events of a visit in a
row: the hardest case for caches). With `sessions`, events come in visits as shoppers
make them: a visit lands on a page (UTM-tagged two times in three), then views pages and
products, sometimes adds to the cart, checks out and orders (about 3% of visits), and
ends after each event with probability 1/5 (five events a visit on average); about 230
visits are under way at once, interleaved, and 3% of events are e-mail opens outside any
visit. Posts them to the sluice on 127.0.0.1:PORT in batches of 2,500 with the write key
"wk". Usage: python3 bench/events.py PORT N [SPAN] [countries] [sessions] [users=USERS]"""
import base64, http.client, json, random, sys, time

port, n = int(sys.argv[1]), int(sys.argv[2])
rest = sys.argv[3:]
span = float(rest.pop(0)) if rest and rest[0].replace(".", "").isdigit() else 2900.0
countries = "countries" in rest
sessions = "sessions" in rest
users = next((int(a[6:]) for a in rest if a.startswith("users=")), 50000)
random.seed(1)
now = time.time()
names = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Email Opened"]
srcs = ["google", "facebook", "newsletter", "bing", None]
geo = ["PL", "DE", "US", "FR", "GB", "ES", "IT", "NL"]
auth = "Basic " + base64.b64encode(b"wk:").decode()
c = http.client.HTTPConnection("127.0.0.1", port)
sent = 0
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def uniform_event(u):
    """One event of user u, unrelated to the user's previous one."""
    s = srcs[u % 5]
    url = "https://shop.example/p/%d" % random.randrange(500) + ("?utm_source=%s&utm_medium=cpc&utm_campaign=c%d" % (s, u % 7) if s else "")
    ev = {"anonymousId": "anon-%d" % u, "context": {"page": {"url": url}, "userAgent": UA}}
    if random.random() < 0.4:
        ev["type"] = "page"
    else:
        ev["type"] = "track"; ev["event"] = random.choice(names)
        if ev["event"] == "Order Completed":
            ev["properties"] = {"revenue": round(random.uniform(5, 300), 2)}
    return ev


class Visit:
    """A shopper's visit: the next event depends on where the visit is."""
    def __init__(self):
        self.u = random.randrange(users)
        src = random.choice(srcs + srcs[:4])  # two visits in three come from a campaign
        self.utm = ("?utm_source=%s&utm_medium=cpc&utm_campaign=c%d" % (src, self.u % 7)) if src else ""
        self.stage = "land"
        self.product = random.randrange(500)

    def next(self):
        """The visit's next event, or None when it has ended."""
        if self.stage == "end":
            return None
        url = "https://shop.example/p/%d" % self.product
        ev = {"anonymousId": "anon-%d" % self.u, "context": {"page": {"url": url}, "userAgent": UA}}
        if self.stage == "land":
            ev["type"] = "page"; ev["context"]["page"]["url"] = url + self.utm
            self.stage = "browse"
        elif self.stage == "browse":
            x = random.random()
            if x < 0.55:
                self.product = random.randrange(500)
                ev["context"]["page"]["url"] = "https://shop.example/p/%d" % self.product
                ev["type"] = "page"
            elif x < 0.85:
                ev["type"] = "track"; ev["event"] = "Product Viewed"
            else:
                ev["type"] = "track"; ev["event"] = "Product Added"
                self.stage = "cart"
        elif self.stage == "cart":
            if random.random() < 0.35:
                ev["type"] = "track"; ev["event"] = "Checkout Started"
                self.stage = "checkout"
            else:
                ev["type"] = "page"; self.stage = "browse"
        else:  # checkout
            if random.random() < 0.6:
                ev["type"] = "track"; ev["event"] = "Order Completed"
                ev["properties"] = {"revenue": round(random.uniform(5, 300), 2)}
            else:
                ev["type"] = "page"
            self.stage = "browse"
        if random.random() < 0.2:
            self.stage = "end"
        return ev


visits = [Visit() for _ in range(230)]


def session_event():
    """The next event of a visit under way (a new visit replaces one that ended)."""
    if random.random() < 0.03:
        u = random.randrange(users)
        return {"anonymousId": "anon-%d" % u, "type": "track", "event": "Email Opened",
                "context": {"userAgent": UA}}
    k = random.randrange(len(visits))
    ev = visits[k].next()
    while ev is None:
        visits[k] = Visit()
        ev = visits[k].next()
    return ev


while sent < n:
    batch = []
    for i in range(min(2500, n - sent)):
        ev = session_event() if sessions else uniform_event(random.randrange(users))
        u = int(ev["anonymousId"][5:])
        t = now - span - 100 + (sent + i) * span / n
        ev["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)
        if countries:
            ev["context"]["location"] = {"country": geo[u % 8]}
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
