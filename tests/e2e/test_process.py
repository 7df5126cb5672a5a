"""End-to-end: the process stage and the query API. A small fixed set of events with
explicit timestamps goes in; timeseries, topN, totals and KPIs must give the answers
computed by hand below; the answers survive kill -9 (snapshot + tail replay) and a
corrupt snapshot (rebuilt from the log); /v1/live streams a frame with the events just
sent."""
import http.client
import json
import os
import time

from harness import ADMIN_KEY, READ_KEY, Server, check, metric, query, query_ok, run_all, send_events, wait_for

NOW = time.time()
T0 = (int(NOW) // 60) * 60 - 40 * 60  # a whole minute 40 minutes ago: in every ring


def iso(offset_s):
    t = time.gmtime(T0 + offset_s)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".000Z"


def ms(offset_s):
    return (T0 + offset_s) * 1000


# Session timeout 60 s (server flag). Hand-computed:
#   A  anon-a: page (google/cpc/bf) +0, Product Viewed +10, identify alice +20, page +30,
#      Order Completed 120.5 +40      -> 1 session, 2 pages, converted
#   B  anon-b: page (newsletter/email/nov) +60          -> 1 session, 1 page: a bounce
#   C  carol (userId only): Order Completed 79.5 +120   -> 1 session, 0 pages, converted
#   D  anon-d: page +300 (moves the newest event time on: A, B, C end)
#   E  anon-e: Product Viewed at +5, sent last (late)   -> 1 session, ends at once
SHOP = "https://shop.example"
EVENTS = [
    ("/v1/page", {"anonymousId": "anon-a", "timestamp": iso(0),
                  "context": {"page": {"url": SHOP + "/?utm_source=google&utm_medium=cpc&utm_campaign=bf"}}}),
    ("/v1/track", {"anonymousId": "anon-a", "event": "Product Viewed", "timestamp": iso(10),
                   "context": {"page": {"url": SHOP + "/p/1"}}}),
    ("/v1/identify", {"anonymousId": "anon-a", "userId": "alice", "timestamp": iso(20)}),
    ("/v1/page", {"anonymousId": "anon-a", "userId": "alice", "timestamp": iso(30),
                  "context": {"page": {"url": SHOP + "/cart"}}}),
    ("/v1/track", {"anonymousId": "anon-a", "userId": "alice", "event": "Order Completed",
                   "timestamp": iso(40), "properties": {"revenue": 120.5}}),
    ("/v1/page", {"anonymousId": "anon-b", "timestamp": iso(60),
                  "context": {"page": {"url": SHOP + "/p/2?utm_source=newsletter&utm_medium=email&utm_campaign=nov"}}}),
    ("/v1/track", {"userId": "carol", "event": "Order Completed", "timestamp": iso(120),
                   "properties": {"total": 79.5}}),
    ("/v1/page", {"anonymousId": "anon-d", "timestamp": iso(300),
                  "context": {"page": {"url": SHOP + "/"}}}),
]
LATE = ("/v1/track", {"anonymousId": "anon-e", "event": "Product Viewed", "timestamp": iso(5)})
RANGE = {"from": iso(0), "to": ms(600)}


q, ok = query, query_ok


send = send_events


def total_events(srv):
    return ok(srv, dict(RANGE, type="totals"))["count"]


def answers(srv):
    """Every answer the restart tests compare."""
    out = [ok(srv, dict(RANGE, type="timeseries", granularity="minute")),
           ok(srv, dict(RANGE, type="timeseries", granularity="second", to=ms(130))),
           ok(srv, dict(RANGE, type="topN", dimension="event")),
           ok(srv, dict(RANGE, type="topN", dimension="utm_source", metric="uniques")),
           ok(srv, dict(RANGE, type="totals")),
           ok(srv, dict(RANGE, type="totals", filter={"dimension": "page_path", "value": "/p/1"}))]
    for k in ["conversion_rate", "bounce_rate", "revenue", "orders", "aov", "active_users", "events"]:
        out.append(ok(srv, dict(RANGE, type="kpi", kpi=k)))
    return out


def seeded(args=()):
    srv = Server(args=["--session-timeout-s=60"] + list(args)).start()
    send(srv, EVENTS)
    wait_for(lambda: total_events(srv) == 8, 20)
    send(srv, [LATE])
    wait_for(lambda: total_events(srv) == 9, 20)
    return srv


def test_queries_match_hand_computed_answers():
    srv = seeded()
    try:
        ts = ok(srv, dict(RANGE, type="timeseries", granularity="minute", to=ms(360)))
        check(ts["granularity"] == "minute" and len(ts["points"]) == 6, ts)
        # minute 0: A's five events + E's late one; 1: B; 2: C; 5: D.
        check([p["count"] for p in ts["points"]] == [6, 1, 1, 0, 0, 1], ts)
        check(ts["points"][0]["uniques"] == 2 and ts["points"][0]["sum"] == 120.5, ts)
        check(ts["points"][2]["sum"] == 79.5, ts)
        sec = ok(srv, dict(RANGE, type="timeseries", granularity="second", to=ms(12)))
        check([p["count"] for p in sec["points"]] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], sec)

        top = ok(srv, dict(RANGE, type="topN", dimension="event"))
        check([(r["value"], r["count"]) for r in top["rows"]] ==
              [("$page", 4), ("Order Completed", 2), ("Product Viewed", 2), ("$identify", 1)], top)
        top = ok(srv, dict(RANGE, type="topN", dimension="utm_source", limit=1))
        check([(r["value"], r["count"]) for r in top["rows"]] == [("google", 1)], top)
        top = ok(srv, dict(RANGE, type="topN", dimension="page_path"))
        check(("/p/2", 1) in [(r["value"], r["count"]) for r in top["rows"]], top)

        tot = ok(srv, dict(RANGE, type="totals"))
        check(tot["count"] == 9 and tot["sum"] == 200 and tot["uniques"] == 5, tot)
        tot = ok(srv, dict(RANGE, type="totals", filter={"dimension": "utm_medium", "value": "email"}))
        check(tot["count"] == 1 and tot["uniques"] == 1, tot)

        def kpi(name, **kw):
            return ok(srv, dict(RANGE, type="kpi", kpi=name, **kw))
        # Sessions started: A, B, C, D, E; converted: A, C; ended: A, B, C, E; bounced: B.
        r = kpi("conversion_rate")
        check(r["value"] == 0.4 and r["numerator"] == 2 and r["denominator"] == 5, r)
        r = kpi("bounce_rate")
        check(r["value"] == 0.25 and r["numerator"] == 1 and r["denominator"] == 4, r)
        check(kpi("revenue")["value"] == 200, "revenue")
        check(kpi("orders")["value"] == 2, "orders")
        check(kpi("aov")["value"] == 100, "aov")
        # Identity: anon-a's anonymous events and alice's are one user -> A, B, carol, D, E.
        check(kpi("active_users")["value"] == 5, kpi("active_users"))
        check(kpi("events")["value"] == 9, "events")
        check(kpi("revenue", filter={"dimension": "utm_source", "value": "google"})["value"] == 0,
              "revenue is on the order event, which had no campaign")
        # The admin key may query too.
        check(q(srv, dict(RANGE, type="totals"), key=ADMIN_KEY)[0] == 200)
    finally:
        srv.cleanup()


def test_late_event_lands_in_its_bucket():
    srv = Server(args=["--session-timeout-s=60"]).start()
    try:
        send(srv, EVENTS)
        wait_for(lambda: total_events(srv) == 8, 20)
        first = lambda: ok(srv, dict(RANGE, type="timeseries", granularity="minute", to=ms(60)))["points"][0]
        check(first()["count"] == 5, first())
        send(srv, [LATE])
        wait_for(lambda: first()["count"] == 6, 20)
        check(first()["uniques"] == 2, first())
    finally:
        srv.cleanup()


def test_keys_and_bad_queries():
    srv = Server().start()
    try:
        body = json.dumps({"type": "totals"}).encode()
        st, _, _ = srv.request("POST", "/v1/query", body)  # write key (Basic)
        check(st == 403, st)
        st, h, _ = srv.request("POST", "/v1/query", body, auth=None)
        check(st == 401 and "www-authenticate" in h, st)
        st, _, _ = srv.request("POST", "/v1/query", body, headers={"Authorization": "Bearer nope"}, auth=None)
        check(st == 401, st)
        check(srv.request("GET", "/v1/query", headers={"Authorization": "Bearer " + READ_KEY}, auth=None)[0] == 405)
        bad = [
            ({"type": "bogus"}, "type"),
            ({"type": "topN"}, "dimension"),
            ({"type": "topN", "dimension": "shoe_size"}, "dimension"),
            ({"type": "totals", "from": "yesterday"}, "from"),
            ({"type": "totals", "from": "-1h", "to": "-2h"}, "to"),
            ({"type": "totals", "from": "-1000d"}, "from"),
            ({"type": "timeseries", "granularity": "second", "from": "-2d"}, "granularity"),
            ({"type": "timeseries", "granularity": "fortnight"}, "granularity"),
            ({"type": "topN", "dimension": "event", "limit": 1000}, "limit"),
            ({"type": "totals", "metric": "median"}, "metric"),
            ({"type": "totals", "filter": {"dimension": "planet", "value": "x"}}, "filter.dimension"),
            ({"type": "totals", "filter": "DE"}, "filter"),
            ({"type": "kpi"}, "kpi"),
            ({"type": "kpi", "kpi": "happiness"}, "kpi"),
            ({"type": "kpi", "kpi": "conversion_rate", "filter": {"dimension": "country", "value": "DE"}}, "filter"),
            ({"type": "totals", "colour": "red"}, "colour"),
            ([1, 2], ""),
        ]
        for b, field in bad:
            st, r = q(srv, b)
            check(st == 400 and r["error"] == "bad_query" and r["field"] == field and r["message"], (b, st, r))
        st, _, data = srv.request("POST", "/v1/query", b"{not json", headers={"Authorization": "Bearer " + READ_KEY}, auth=None)
        check(st == 400 and b"not valid JSON" in data, data)
        # Relative and epoch times are accepted.
        st, r = q(srv, {"type": "timeseries", "from": "-10m", "to": "now"})
        check(st == 200 and r["granularity"] == "second" and len(r["points"]) in (600, 601), (st, len(r.get("points", []))))
        check(q(srv, {"type": "totals", "from": int(NOW * 1000) - 60000})[0] == 200)
    finally:
        srv.cleanup()


def read_frames(resp, want, deadline):
    """Read SSE data frames until want(frames) or the deadline."""
    frames = []
    while time.time() < deadline:
        line = resp.fp.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            frames.append(json.loads(line[5:]))
            if want(frames):
                return frames
    raise AssertionError("no matching live frame: %r" % frames[-5:])


def test_live_stream_delivers_frames():
    srv = Server().start()
    try:
        st, _, _ = srv.request("GET", "/v1/live")
        check(st == 403, st)  # write key
        st, _, _ = srv.request("GET", "/v1/live?key=wrong", auth=None)
        check(st == 401, st)
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("GET", "/v1/live?key=" + READ_KEY)
        resp = c.getresponse()
        check(resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream"))
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        send(srv, [("/v1/track", {"anonymousId": "live-%d" % i, "event": "Order Completed",
                                  "timestamp": now, "properties": {"revenue": 10}}) for i in range(3)])
        frames = read_frames(resp, lambda fs: sum(f["events"] for f in fs) >= 3, time.time() + 15)
        check(sum(f["orders"] for f in frames) == 3 and abs(sum(f["revenue"] for f in frames) - 30) < 1e-9, frames)
        check(frames[-1]["activeUsers"] == 3 and "eventsPerSecond" in frames[-1], frames[-1])
        # Today's KPIs: three orders, each its own converted session (unless this ran
        # across midnight UTC, when the orders are yesterday's).
        last = read_frames(resp, lambda fs: fs[-1]["ordersToday"] >= 3 or
                           time.strftime("%Y-%m-%d", time.gmtime()) != now[:10], time.time() + 15)[-1]
        if time.strftime("%Y-%m-%d", time.gmtime()) == now[:10]:
            check(last["ordersToday"] == 3 and last["revenueToday"] == 30 and
                  last["sessionsToday"] == 3 and last["conversionRateToday"] == 1 and
                  last["visitorsOnline"] == 3, last)
        c.close()
        # Bearer works as well.
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("GET", "/v1/live", headers={"Authorization": "Bearer " + ADMIN_KEY})
        check(c.getresponse().status == 200)
        c.close()
    finally:
        srv.cleanup()


def test_feed_stream_samples_recent_events():
    srv = Server().start()
    try:
        st, _, _ = srv.request("GET", "/v1/live?feed=events")
        check(st == 403, st)  # write key
        st, _, data = srv.request("GET", "/v1/live?feed=users&key=" + READ_KEY, auth=None)
        check(st == 400 and b"feed" in data, (st, data))
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        c.request("GET", "/v1/live?feed=events&key=" + READ_KEY)
        resp = c.getresponse()
        check(resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream"))
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        # 50 events in one request: a frame shows at most 20 of them, and says how many
        # it saw; only rollup fields go out, never ids or properties.
        send(srv, [("/v1/batch", {"batch": [
            {"type": "track", "anonymousId": "feed-%d" % i, "event": "Order Completed" if i == 0 else "Product Viewed",
             "timestamp": now, "properties": {"revenue": 19.5, "secret": "s3cr3t"},
             "context": {"page": {"path": "/p/%d" % i}, "location": {"country": "NL"}}}
            for i in range(50)]})])
        frames = read_frames(resp, lambda fs: sum(f["seen"] for f in fs) >= 50, time.time() + 15)
        check(all(f["shown"] == len(f["events"]) <= 20 for f in frames), frames)
        shown = [e for f in frames for e in f["events"]]
        check(shown and all(e["country"] == "NL" and e["page_path"].startswith("/p/") for e in shown), shown)
        text = json.dumps(frames)
        check("feed-" not in text and "s3cr3t" not in text and "anonymousId" not in text, text[:500])
        c.close()
    finally:
        srv.cleanup()


def test_queries_on_the_pool_while_events_flow():
    """Queries answer on the thread pool while the stage processes: four clients ask the
    fixed questions again and again while 3,000 more events (after the fixed range) flow
    in; every answer equals the one before the flow, and every event is counted."""
    import threading
    srv = seeded()
    try:
        # One event after the range first: it ends the range's sessions (bounces count).
        send(srv, [("/v1/track", {"anonymousId": "flow-first", "event": "Product Viewed",
                                  "timestamp": iso(700)})])
        wait_for(lambda: ok(srv, dict(RANGE, to=ms(900), type="totals"))["count"] == 10, 20)
        before = answers(srv)
        errors = []
        stop = threading.Event()

        def asker():
            while not stop.is_set():
                try:
                    if answers(srv) != before:
                        errors.append("an answer changed while events flowed")
                except AssertionError as e:
                    errors.append(str(e))

        threads = [threading.Thread(target=asker) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for b in range(30):
                batch = [{"type": "track", "anonymousId": "flow-%d" % (b * 100 + i),
                          "event": "Product Viewed", "timestamp": iso(700 + i)} for i in range(100)]
                send(srv, [("/v1/batch", {"batch": batch})])
            wide = dict(RANGE, to=ms(900), type="totals")
            wait_for(lambda: ok(srv, wide)["count"] == 10 + 3000, 30)
        finally:
            stop.set()
            for t in threads:
                t.join()
        check(not errors, errors[:3])
        check(answers(srv) == before)
    finally:
        srv.cleanup()


def test_kill9_restart_gives_identical_answers():
    srv = Server(args=["--session-timeout-s=60", "--checkpoint-interval-s=1"]).start()
    snap = os.path.join(srv.data_dir, "state", "snapshot")
    try:
        send(srv, EVENTS[:4])
        wait_for(lambda: total_events(srv) == 4, 20)
        wait_for(lambda: os.path.exists(snap), 10)
        first = os.stat(snap).st_mtime_ns
        # Wait for a snapshot taken after the first events, then add a tail it lacks.
        wait_for(lambda: os.stat(snap).st_mtime_ns != first, 10)
        send(srv, EVENTS[4:] + [LATE])
        wait_for(lambda: total_events(srv) == 9, 20)
        before = answers(srv)
        srv.kill()
        srv.start()
        wait_for(lambda: total_events(srv) == 9, 20)
        check(answers(srv) == before, "answers differ after kill -9 and restart")
        check("snapshot=loaded" in srv.log_text(), srv.log_text()[-3000:])
        # A clean stop writes the snapshot; the answers stay the same again.
        check(srv.stop() == 0)
        srv.start()
        wait_for(lambda: total_events(srv) == 9, 20)
        check(answers(srv) == before, "answers differ after a clean restart")
        # A corrupt snapshot: warned about, rebuilt from the log, same answers.
        check(srv.stop() == 0)
        with open(snap, "r+b") as f:
            f.seek(os.path.getsize(snap) // 2)
            f.write(b"\xde\xad\xbe\xef" * 4)
        srv.start()
        wait_for(lambda: total_events(srv) == 9, 20)
        check(answers(srv) == before, "answers differ after rebuilding from a corrupt snapshot")
        check("snapshot unusable" in srv.log_text(), "the corrupt snapshot was reported")
        # Garbage of any length is no snapshot either.
        check(srv.stop() == 0)
        with open(snap, "wb") as f:
            f.write(b"x")
        srv.start()
        wait_for(lambda: total_events(srv) == 9, 20)
        check(answers(srv) == before, "answers differ after a truncated snapshot")
    finally:
        srv.cleanup()


def test_replay_command_rebuilds_the_same_state():
    srv = seeded()
    try:
        before = answers(srv)
        check(srv.stop() == 0)
        import subprocess
        from harness import BINARY
        r = subprocess.run([BINARY, "replay", "--data-dir=" + srv.data_dir, "--session-timeout-s=60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        check(r.returncode == 0 and b"replayed 9 events" in r.stdout, (r.stdout, r.stderr))
        srv.start()
        wait_for(lambda: total_events(srv) == 9, 20)
        check(answers(srv) == before, "answers differ after sluice replay")
        # the server starts from the snapshot replay wrote, not from the log again
        check("snapshot=loaded" in srv.log_text(), srv.log_text()[-3000:])
    finally:
        srv.cleanup()


def people_events(first, n, order_at):
    """n people: each browses anonymously, logs in (identify) and orders; ids from first."""
    out = []
    for i in range(first, first + n):
        anon, user = "anon-%d" % i, "cust-%d" % i
        out.append(("/v1/batch", {"batch": [
            {"type": "page", "anonymousId": anon, "timestamp": iso(order_at + i % 50)},
            {"type": "identify", "anonymousId": anon, "userId": user, "timestamp": iso(order_at + i % 50)},
            {"type": "track", "anonymousId": anon, "userId": user, "event": "Order Completed",
             "timestamp": iso(order_at + i % 50), "properties": {"revenue": 10 + i % 7}}]}))
    return out


def return_events(first, n, at):
    """The same people come back: anonymous page views (their old device), then an order
    under their userId alone."""
    out = []
    for i in range(first, first + n):
        out.append(("/v1/batch", {"batch": [
            {"type": "page", "anonymousId": "anon-%d" % i, "timestamp": iso(at + i % 50)},
            {"type": "track", "userId": "cust-%d" % i, "event": "Order Completed",
             "timestamp": iso(at + i % 50) , "properties": {"revenue": 5}}]}))
    return out


PEOPLE_RANGE = dict(RANGE, to=ms(1800))


def people_total(srv):
    return ok(srv, dict(PEOPLE_RANGE, type="totals"))["count"]


def people_answers(srv):
    r = PEOPLE_RANGE
    return [ok(srv, dict(r, type="kpi", kpi=k)) for k in
            ["new_users", "returning_users", "new_customers", "clv", "orders", "revenue"]]


def test_evicted_profiles_come_back_from_disk():
    """300 people through a server that keeps 16 profiles in memory: the evicted ones go to
    the on-disk spill; when they return (by their old anonymous id, or by userId) they are
    the same people, across kill -9, and every people KPI equals a server that never
    evicts."""
    small = Server(args=["--session-timeout-s=60", "--checkpoint-interval-s=1",
                         "--max-profiles=16"]).start()
    big = Server(args=["--session-timeout-s=60"]).start()
    # Control: the same bound with a spill that holds almost nothing.
    lossy = Server(args=["--session-timeout-s=60", "--max-profiles=16",
                         "--profile-spill-max-ids=16"]).start()
    try:
        first = people_events(0, 300, 0)
        again = return_events(0, 300, 1200)
        send(lossy, first + again)
        wait_for(lambda: people_total(lossy) == 1500, 30)
        # Gauges of the spill are refreshed once a second.
        wait_for(lambda: metric(lossy, "sluice_profiles_dropped") > 250, 10)
        lost = people_answers(lossy)
        check(lost[0]["value"] > 300, ("without the spill, returning people are new", lost[0]))
        for srv in (small, big):
            send(srv, first)
            wait_for(lambda: people_total(srv) == 900, 30)
        check(metric(small, "sluice_profiles") <= 16, metric(small, "sluice_profiles"))
        wait_for(lambda: metric(small, "sluice_profiles_spilled") >= 280, 10)
        check(metric(small, "sluice_profiles_dropped") == 0)
        # A snapshot after the first wave, then half the returns, then kill -9.
        snap = os.path.join(small.data_dir, "state", "snapshot")
        wait_for(lambda: os.path.exists(snap), 10)
        t = os.stat(snap).st_mtime_ns
        wait_for(lambda: os.stat(snap).st_mtime_ns != t, 10)
        send(small, again[:150])
        wait_for(lambda: people_total(small) == 1200, 30)
        small.kill()
        small.start()
        check("snapshot=loaded" in small.log_text(), small.log_text()[-2000:])
        send(small, again[150:])
        send(big, again)
        for srv in (small, big):
            wait_for(lambda: people_total(srv) == 1500, 30)
        wait_for(lambda: metric(small, "sluice_profiles_restored") > 0, 10)
        a, b = people_answers(small), people_answers(big)
        check(a == b, ("people KPIs differ with a spill", a, b))
        check(a[0]["value"] == 300 and a[2]["value"] == 300 and a[3]["denominator"] == 300, a)
    finally:
        small.cleanup()
        big.cleanup()
        lossy.cleanup()


if __name__ == "__main__":
    run_all(globals())
