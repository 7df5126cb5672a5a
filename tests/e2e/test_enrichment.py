"""End-to-end: deduplication by messageId across retries and restarts, consent,
pseudonymisation (the real id is in no file of the data dir), campaign attribution."""
import json
import os

from harness import Server, all_bytes, check, metric, run_all






def test_retried_batch_is_stored_once_even_after_restart():
    srv = Server().start()
    try:
        batch = {"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "dup-%d" % i} for i in range(5)]}
        for _ in range(3):
            st, _, data = srv.request("POST", "/v1/batch", batch)
            check(st == 200 and json.loads(data) == {"success": True}, data)
        ids = [e["messageId"] for e in srv.export()]
        check(sorted(ids) == sorted("dup-%d" % i for i in range(5)), ids)
        check(metric(srv, "sluice_events_duplicate_total") == 10)
        check(srv.stop() == 0)
        srv.start()
        check("dedup window rebuilt" in srv.log_text() and "ids=5" in srv.log_text(), srv.log_text()[-500:])
        st, _, _ = srv.request("POST", "/v1/batch", batch)
        check(st == 200)
        batch["batch"].append({"type": "track", "event": "e", "userId": "u", "messageId": "new-1"})
        st, _, _ = srv.request("POST", "/v1/batch", batch)
        check(st == 200)
        ids = [e["messageId"] for e in srv.export()]
        check(len(ids) == 6 and ids.count("new-1") == 1, ids)
    finally:
        srv.cleanup()


def test_concurrent_duplicates_stored_once_and_acked_after_the_original():
    """Two requests carrying the same messageIds at the same moment (a beacon and a
    batch from one page): one stores them, the other waits for that and answers after."""
    import threading
    srv = Server().start()
    try:
        for round_ in range(5):
            batch = {"batch": [{"type": "track", "event": "e", "userId": "u",
                                "messageId": "race-%d-%d" % (round_, i)} for i in range(3)]}
            gate, results = threading.Barrier(6), []

            def send():
                gate.wait()
                results.append(srv.request("POST", "/v1/batch", batch)[0])
            threads = [threading.Thread(target=send) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            check(results == [200] * 6, results)
        ids = [e["messageId"] for e in srv.export()]
        check(len(ids) == 15 and len(set(ids)) == 15, (len(ids), len(set(ids))))
    finally:
        srv.cleanup()


def test_consent_drop_anonymous_and_marketing_flag():
    srv = Server().start()
    try:
        denied = {"event": "Viewed", "userId": "carol", "messageId": "c-1",
                  "context": {"consent": {"categoryPreferences": {"Analytics": False}}}}
        st, _, data = srv.request("POST", "/v1/track", denied)
        check(st == 200 and json.loads(data)["success"] is True, data)
        no_ads = {"event": "Viewed", "userId": "dave", "messageId": "d-1",
                  "context": {"consent": {"categoryPreferences": {"Analytics": True, "Advertising": False}}}}
        check(srv.request("POST", "/v1/track", no_ads)[0] == 200)
        evs = srv.export()
        check([e["messageId"] for e in evs] == ["d-1"], evs)
        check(evs[0]["context"]["consent"]["marketing"] is False and evs[0]["context"]["consent"]["analytics"] is True)
        check(b"carol" not in all_bytes(srv.data_dir), "a visitor without consent must leave no trace")
        check(metric(srv, "sluice_events_dropped_no_consent_total") == 1)
        srv.stop()
        srv.args = ["--without-analytics-consent=anonymous"]
        srv.start()
        denied["messageId"] = "c-2"
        check(srv.request("POST", "/v1/track", denied)[0] == 200)
        evs = srv.export()
        anon = [e for e in evs if e["messageId"] == "c-2"][0]
        check(anon.get("anonymous") is True and anon["event"] == "Viewed" and "userId" not in anon, anon)
        check(b"carol" not in all_bytes(srv.data_dir))
    finally:
        srv.cleanup()


def test_pseudonymised_ids_never_reach_disk():
    srv = Server(args=["--pseudonymise"]).start()
    try:
        ev = {"type": "identify", "userId": "erin-real-id", "anonymousId": "anon-e",
              "traits": {"email": "erin@example.com", "plan": "gold"}}
        check(srv.request("POST", "/v1/identify", ev)[0] == 200)
        check(srv.request("POST", "/v1/track", {"event": "Bought", "userId": "erin-real-id"})[0] == 200)
        evs = srv.export()
        check(evs[0]["userId"].startswith("p1_") and evs[0]["userId"] == evs[1]["userId"], evs)
        check(evs[0]["traits"]["plan"] == "gold")
        blob = all_bytes(srv.data_dir)
        check(b"erin-real-id" not in blob and b"erin@example.com" not in blob)
        key = os.path.join(srv.data_dir, "pseudonym.key")
        check(os.stat(key).st_mode & 0o777 == 0o600)
        srv.stop()
        srv.start()  # same key after restart: same pseudonym
        check(srv.request("POST", "/v1/track", {"event": "Again", "userId": "erin-real-id"})[0] == 200)
        evs = srv.export()
        check(evs[2]["userId"] == evs[0]["userId"])
    finally:
        srv.cleanup()


def test_campaign_and_referrer():
    srv = Server().start()
    try:
        page = {"type": "page", "anonymousId": "a", "messageId": "pg-1",
                "context": {"page": {"url": "https://shop.example/sale?utm_source=google&utm_medium=cpc&utm_campaign=bf&gclid=Cj0",
                                     "referrer": "https://www.google.de/"}}}
        check(srv.request("POST", "/v1/page", page)[0] == 200)
        e = srv.export()[0]
        c = e["context"]
        check(c["campaign"] == {"source": "google", "medium": "cpc", "name": "bf",
                                "clickId": {"type": "gclid", "value": "Cj0"}}, c["campaign"])
        check(c["referrer"] == {"host": "www.google.de", "class": "search"}, c["referrer"])
    finally:
        srv.cleanup()


def test_user_agent_parsed():
    srv = Server().start()
    try:
        ua = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
        for _ in range(3):
            check(srv.request("POST", "/v1/track", {"event": "v", "userId": "u"}, headers={"User-Agent": ua})[0] == 200)
        bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        check(srv.request("POST", "/v1/track", {"event": "v", "userId": "b"}, headers={"User-Agent": bot})[0] == 200)
        evs = srv.export()
        c = evs[0]["context"]
        check(c["browser"]["name"] == "Mobile Safari" and c["os"]["name"] == "iOS", c)
        check(c["device"]["type"] == "mobile" and c["bot"] is False, c)
        check(evs[3]["context"]["bot"] is True and evs[3]["context"]["device"]["type"] == "bot", evs[3]["context"])
        check(metric(srv, "sluice_ua_cache_hits") >= 2)
    finally:
        srv.cleanup()


def test_geo_from_raw_ip_then_anonymised():
    from harness import ROOT
    fixture = os.path.join(ROOT, "build", "test-geo.mmdb")
    srv = Server(args=["--geo-db=" + fixture]).start()
    try:
        ev = {"event": "Viewed", "userId": "g", "context": {"ip": "203.0.113.77"}}
        check(srv.request("POST", "/v1/track", ev)[0] == 200)
        e = srv.export()[0]
        check(e["context"]["ip"] == "203.0.113.0", e["context"])
        check(e["context"]["location"].get("country") == "DE", e["context"])
        check(b"203.0.113.77" not in all_bytes(srv.data_dir))
        st, _, data = srv.request("GET", "/version", auth=None)
        check(st == 200 and json.loads(data)["geoDatabase"], data)
    finally:
        srv.cleanup()
    s2 = Server(args=["--geo-db=/nonexistent.mmdb"])
    try:
        s2.start(timeout=5)
        raise AssertionError("a configured but missing geo database must stop the start")
    except RuntimeError as e:
        check("cannot open the geo database" in s2.log_text(), s2.log_text()[-300:])
    finally:
        s2.cleanup()


run_all(globals())
