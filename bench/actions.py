#!/usr/bin/env python3
"""Event -> offer latency: a visitor's page holds GET /v1/offers open; the visitor sends
three "Product Viewed" events of one product (the repeat-viewer rule of docs/RULES.md);
the time from the client's send of the third to the offer frame at the stream is one
sample. Loopback, fsync always (the default), while a background thread sends page
events through POST /v1/batch at a target rate (events/s; the rate actually reached is
printed, since one Python thread may not reach the target).

    python3 bench/actions.py [SAMPLES] [RATE ...]     (default 1000 samples; 1000 10000 50000)
    SLUICE_BIN=build/sluice by default."""
import json
import os
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import Server, WRITE_KEY, metric  # noqa: E402
from test_actions import Stream, token_for  # noqa: E402
from test_rules import Rules, track  # noqa: E402

SAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
RATES = [int(r) for r in sys.argv[2:]] or [1000, 10000, 50000]
BATCH = 200


def load(srv, rate, stop, sent):
    body = {"batch": [{"type": "page", "anonymousId": "bg-%d" % i,
                       "properties": {"path": "/p/%d" % (i % 50)}} for i in range(BATCH)]}
    data = json.dumps(body).encode()
    c = srv.conn()
    import base64
    h = {"Content-Type": "application/json",
         "Authorization": "Basic " + base64.b64encode((WRITE_KEY + ":").encode()).decode()}
    t0 = time.time()
    while not stop.is_set():
        due = t0 + sent[0] / rate
        now = time.time()
        if due > now:
            time.sleep(min(due - now, 0.01))
            continue
        c.request("POST", "/v1/batch", body=data, headers=h)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("background batch answered %d" % r.status)
        sent[0] += BATCH


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main():
    rules = Rules(1)
    srv = Server(args=rules.args()).start()
    try:
        for rate in RATES:
            stop, sent = threading.Event(), [0]
            th = threading.Thread(target=load, args=(srv, rate, stop, sent), daemon=True)
            t0 = time.time()
            th.start()
            time.sleep(1)
            lat = []
            for _ in range(SAMPLES):
                anon = "b-" + uuid.uuid4().hex
                s = Stream(srv.port, "/v1/offers?anonymousId=%s&token=%s" % (anon, token_for(srv, anon)))
                track(srv, anon, "Product Viewed", {"product_id": "p1"})
                track(srv, anon, "Product Viewed", {"product_id": "p1"})
                t = time.time()
                track(srv, anon, "Product Viewed", {"product_id": "p1"})
                s.next_event(timeout=30)
                lat.append((time.time() - t) * 1000)
                s.close()
            stop.set()
            th.join()
            reached = sent[0] / (time.time() - t0)
            if not th.is_alive() and sent[0] == 0:
                sys.exit("no background load")
            lag = metric(srv, "sluice_process_lag_events")
            print("background %6d ev/s target, %7.0f reached: event->offer ms p50 %.2f p99 %.2f "
                  "p999 %.2f max %.2f (%d samples; processing lag at the end %d events)"
                  % (rate, reached, pct(lat, .5), pct(lat, .99), pct(lat, .999), max(lat), len(lat), lag))
            sys.stdout.flush()
    finally:
        srv.cleanup()
        rules.cleanup()


if __name__ == "__main__":
    main()
