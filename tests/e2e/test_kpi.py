"""End-to-end: the marketing KPIs (docs/API.md, "KPI definitions") over a small fixed set
of events on two consecutive days, every answer computed by hand below; the answers
survive kill -9 (snapshot + tail replay)."""
import json
import os
import tempfile
import time

from harness import (ADMIN_KEY, READ_KEY, WRITE_KEY, Server, check, query, run_all,
                     send_events as send, wait_for)

DAY = 86400
# D2: ten minutes ago, moved back so that its events (within 60 s) stay in one UTC day;
# D1: the same time the day before.
D2 = int(time.time()) - 600
if (D2 + 120) // DAY != D2 // DAY:
    D2 -= 300
D1 = D2 - DAY


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


SHOP = "https://shop.example"


def page(anon, t, campaign=None, user=None):
    url = SHOP + "/" + ("?utm_source=ads&utm_medium=cpc&utm_campaign=" + campaign if campaign else "")
    ev = {"anonymousId": anon, "timestamp": iso(t), "context": {"page": {"url": url}}}
    if user:
        ev["userId"] = user
    return ("/v1/page", ev)


def track(name, t, anon=None, user=None, **props):
    ev = {"event": name, "timestamp": iso(t), "properties": props}
    if anon:
        ev["anonymousId"] = anon
    if user:
        ev["userId"] = user
    return ("/v1/track", ev)


# Session timeout 60 s (server flag). Hand-computed over RANGE:
#   day 1: u1 page (campaign bf), Offer Shown, Offer Clicked; u2 page (bf); e-mails sent to
#          em1 and em2, em1 opens and clicks; u1 logs in as alice and orders 100 (converts
#          the bf session: new customer of bf); cost bf 50.
#   day 2: alice page (returning: retention day 1); u3 page (campaign nov), logs in as bob
#          and orders 40 (new customer of nov); cost nov 20.
# Sessions: u1 bf, u2 bf, em1, em2, alice day 2, u3 nov = 6; converted u1, u3.
# New users: u1, u2, em1, em2, u3 = 5; active users (anonymousId, else userId): u1, u2, em1,
# em2, alice (day 2, userId only), u3 = 6; returning 1.
DAY1 = [
    page("u1", D1, "bf"),
    track("Offer Shown", D1 + 5, anon="u1"),
    track("Offer Clicked", D1 + 6, anon="u1"),
    page("u2", D1 + 10, "bf"),
    track("Email Sent", D1 + 20, user="em1"),
    track("Email Sent", D1 + 21, user="em2"),
    track("Email Opened", D1 + 22, user="em1"),
    track("Email Link Clicked", D1 + 23, user="em1"),
    track("Order Completed", D1 + 30, anon="u1", user="alice", revenue=100),
    track("Marketing Cost", D1 + 40, user="finance", campaign="bf", cost=50, currency="EUR"),
]
DAY2 = [
    page("alice-phone", D2, user="alice"),
    page("u3", D2 + 10, "nov"),
    track("Order Completed", D2 + 20, anon="u3", user="bob", revenue=40),
]
# Day 2's cost goes through the admin API.
COST2 = {"campaign": "nov", "source": "newsletter", "cost": 20, "currency": "EUR",
         "timestamp": iso(D2 + 30), "messageId": "cost-nov-1"}
# Events the events rollup counts (cost events feed the CAC only).
COUNTED1, COUNTED2 = 9, 3
# The range ends by the end of D2's UTC day, so the day grids hold two days whatever the
# hour the test runs at (just after midnight "now" is already the third).
RANGE = {"from": iso(D1 - 60), "to": min(D2 + 600, (D2 // DAY + 1) * DAY) * 1000}
# User-defined KPIs (config file): bf_visitors = distinct users with a page view from
# campaign bf (u1, u2); revenue_per_email_open = order revenue / Email Opened events.
CONFIG = """kpis:
  - name: bf_visitors
    numerator: {event: $page, metric: uniques, filter: {utm_campaign: bf}}
  - name: revenue_per_email_open
    format: currency
    numerator: {event: Order Completed, metric: sum, property: revenue}
    denominator: {event: Email Opened}
"""
BF = {"dimension": "utm_campaign", "value": "bf"}
NOV = {"dimension": "utm_campaign", "value": "nov"}


def q(srv, body):
    st, r = query(srv, body)
    check(st == 200, (st, r))
    return r


def kpi(srv, name, **kw):
    return q(srv, dict(RANGE, type="kpi", kpi=name, **kw))


def counted(srv):
    return q(srv, dict(RANGE, type="totals"))["count"]


# Every KPI answered; bounce_rate and events are not compared across a restart (open
# sessions end with time).
ANSWERED = ["conversion_rate", "offer_ctr", "email_open_rate", "email_click_to_open",
            "email_ctr", "revenue", "orders", "aov", "active_users", "dau", "wau", "mau",
            "new_users", "returning_users", "new_customers", "marketing_cost", "cac", "clv",
            "retention_day", "retention_week", "bf_visitors", "revenue_per_email_open"]


def answers(srv):
    """Every KPI answer the restart test compares."""
    out = []
    for k in ANSWERED:
        out.append(kpi(srv, k))
    for k in ["conversion_rate", "cac", "new_customers", "marketing_cost"]:
        out.append(kpi(srv, k, filter=BF))
        out.append(kpi(srv, k, filter=NOV))
    out.append(kpi(srv, "new_users", granularity="hour", compare="previous",
                   **{"from": iso(D2 - 3600), "to": (D2 + 3600) * 1000}))
    return out


def test_kpis_match_hand_computed_answers_and_survive_kill9():
    fd, conf = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(CONFIG)
    srv = Server(args=["--session-timeout-s=60", "--checkpoint-interval-s=1",
                       "--config=" + conf]).start()
    snap = os.path.join(srv.data_dir, "state", "snapshot")
    try:
        send(srv, DAY1)
        wait_for(lambda: counted(srv) == COUNTED1, 20)
        wait_for(lambda: os.path.exists(snap), 10)
        first = os.stat(snap).st_mtime_ns
        wait_for(lambda: os.stat(snap).st_mtime_ns != first, 10)
        send(srv, DAY2)
        bearer = {"Authorization": "Bearer " + ADMIN_KEY}
        # Costs need the admin key and a well-formed body.
        for key, st in [(WRITE_KEY, 403), (READ_KEY, 403)]:
            got = srv.request("POST", "/v1/costs", COST2, headers={"Authorization": "Bearer " + key})[0]
            check(got == st, (key, got))
        for bad in [{}, {"campaign": "nov"}, {"campaign": "nov", "cost": -1},
                    {"campaign": "nov", "cost": "20"}, {"campaign": "", "cost": 1},
                    {"campaign": "nov", "cost": 1, "currency": "euro"},
                    {"campaign": "nov", "cost": 1, "timestamp": "yesterday"},
                    {"campaign": "nov", "cost": 1, "extra": 1}, [1]]:
            st, _, data = srv.request("POST", "/v1/costs", bad, headers=bearer)
            check(st == 400 and b"bad_cost" in data, (bad, st, data))
        st, _, data = srv.request("POST", "/v1/costs", COST2, headers=bearer)
        check(st == 200, (st, data))
        # A retry with the same messageId is a duplicate, not a second cost.
        st, _, data = srv.request("POST", "/v1/costs", COST2, headers=bearer)
        check(st == 200, (st, data))
        wait_for(lambda: counted(srv) == COUNTED1 + COUNTED2, 20)
        wait_for(lambda: kpi(srv, "marketing_cost")["value"] == 70, 20)

        def ratio(r, num, den):
            check(r["numerator"] == num and r["denominator"] == den, r)

        ratio(kpi(srv, "conversion_rate"), 2, 6)
        ratio(kpi(srv, "conversion_rate", filter=BF), 1, 2)
        ratio(kpi(srv, "conversion_rate", filter=NOV), 1, 1)
        r = kpi(srv, "offer_ctr")
        check(r["value"] == 1, r)
        ratio(kpi(srv, "email_open_rate"), 1, 2)
        ratio(kpi(srv, "email_click_to_open"), 1, 1)
        ratio(kpi(srv, "email_ctr"), 1, 2)
        check(kpi(srv, "revenue")["value"] == 140, "revenue")
        check(kpi(srv, "aov")["value"] == 70, "aov")
        check(kpi(srv, "new_users")["value"] == 5, kpi(srv, "new_users"))
        check(kpi(srv, "active_users")["value"] == 6, kpi(srv, "active_users"))
        check(kpi(srv, "returning_users")["value"] == 1, kpi(srv, "returning_users"))
        # dau: the day ending at `to` (D2 + 600 s) holds only day 2's users: alice, u3.
        check(kpi(srv, "dau")["value"] == 2, kpi(srv, "dau"))
        check(kpi(srv, "wau")["value"] == 6, kpi(srv, "wau"))
        check(kpi(srv, "new_customers")["value"] == 2, "new customers")
        check(kpi(srv, "marketing_cost")["value"] == 70, "cost")
        ratio(kpi(srv, "cac"), 70, 2)
        ratio(kpi(srv, "cac", filter=BF), 50, 1)
        ratio(kpi(srv, "cac", filter=NOV), 20, 1)
        r = kpi(srv, "clv")
        check(r["value"] == 70 and r["numerator"] == 140 and r["denominator"] == 2, r)
        r = kpi(srv, "retention_day")
        cohorts = [(c["users"], c["retained"]) for c in r["cohorts"]]
        check(cohorts == [(4, [4, 1]), (1, [1])], r)
        # Series with compare: each hour of day 2 against the hour two hours before.
        r = kpi(srv, "new_users", granularity="hour", compare="previous",
                **{"from": iso(D2 - 3600), "to": (D2 + 3600) * 1000})
        check(sum(p["value"] for p in r["points"]) == 1, r)  # u3
        r = kpi(srv, "bf_visitors")
        check(r["value"] == 2 and r["format"] == "number", r)
        r = kpi(srv, "revenue_per_email_open")
        check(r["value"] == 140 and r["format"] == "currency", r)
        # The catalogue lists every KPI the query accepts, the configured ones last with
        # their format and a description built from their definition; read key only.
        st, _, data = srv.request("GET", "/v1/kpis", headers={"Authorization": "Bearer " + READ_KEY})
        check(st == 200, (st, data))
        catalogue = {k["name"]: k for k in json.loads(data)["kpis"]}
        check(set(catalogue) == set(ANSWERED) | {"bounce_rate", "events"}, sorted(catalogue))
        for name, entry in catalogue.items():
            r = kpi(srv, name)
            check(r["format"] == entry["format"], (name, r, entry))
            check(("cohorts" in r) == (entry["shape"] in ("grid", "lifetime")), (name, r, entry))
            check(("denominator" in r) == (entry["shape"] in ("ratio", "lifetime")), (name, r, entry))
        check(catalogue["cac"]["filter"] == "utm_campaign" and catalogue["revenue"]["filter"] == "any"
              and catalogue["bounce_rate"]["filter"] == "none", catalogue["cac"])
        check(catalogue["retention_week"]["series"] is False and catalogue["aov"]["compare"] is True,
              catalogue["retention_week"])
        e = catalogue["revenue_per_email_open"]
        check(e["custom"] and e["shape"] == "ratio" and e["format"] == "currency"
              and e["description"] == "sum of Order Completed (properties.revenue) / count of Email Opened", e)
        check(catalogue["bf_visitors"]["description"] == "uniques of $page where utm_campaign = bf",
              catalogue["bf_visitors"])
        for key, want in [(WRITE_KEY, 403), (None, 401)]:
            h = {"Authorization": "Bearer " + key} if key else {}
            st = srv.request("GET", "/v1/kpis", headers=h, auth=None)[0]
            check(st == want, (key, st))
        check(srv.request("POST", "/v1/kpis", {}, headers={"Authorization": "Bearer " + READ_KEY})[0] == 405, "POST")
        # Cost events are not visitors' events.
        top = q(srv, dict(RANGE, type="topN", dimension="event", limit=100))
        check("Marketing Cost" not in [row["value"] for row in top["rows"]], top)

        before = answers(srv)
        srv.kill()
        srv.start()
        wait_for(lambda: counted(srv) == COUNTED1 + COUNTED2, 20)
        check("snapshot=loaded" in srv.log_text(), srv.log_text()[-3000:])
        after = answers(srv)
        check(after == before, "KPI answers differ after kill -9 and restart:\n%r\n%r" % (before, after))
        # A snapshot of the previous format (version 1, without the KPI state) is reported
        # and the state rebuilt from the log: the same answers again.
        check(srv.stop() == 0)
        with open(snap, "r+b") as f:
            f.seek(4)
            f.write(b"\x01")
        srv.start()
        wait_for(lambda: counted(srv) == COUNTED1 + COUNTED2, 20)
        wait_for(lambda: kpi(srv, "marketing_cost")["value"] == 70, 20)
        check("unknown version" in srv.log_text(), srv.log_text()[-3000:])
        after = answers(srv)
        check(after == before, "KPI answers differ after a rebuild:\n%r\n%r" % (before, after))
    finally:
        srv.cleanup()
        os.unlink(conf)


if __name__ == "__main__":
    run_all(globals())
