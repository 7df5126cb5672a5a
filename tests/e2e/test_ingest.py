"""End-to-end: every ingestion endpoint, every error status, CORS, the redirect
allowlist, gzip, keys, ops endpoints, bad-event log, export, drain on SIGTERM."""
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import zlib

from harness import (ADMIN_KEY, BINARY, READ_KEY, WRITE_KEY, Server, check, raw, run_all,
                     wait_for)

ARGS = ["--cors-origins=https://shop.example", "--redirect-hosts=shop.example,*.cdn.example",
        "--header-timeout-ms=700", "--body-timeout-ms=700", "--max-body-bytes=64k",
        "--max-decompressed-bytes=256k", "--max-batch-events=100", "--max-event-bytes=4k",
        "--idle-timeout-ms=5000"]
srv = Server(args=ARGS).start()


def mid():
    return "m-" + uuid.uuid4().hex


def exported_ids():
    return [e["messageId"] for e in srv.export()]


def test_batch_accepted_and_enriched():
    ids = [mid(), mid()]
    body = {"batch": [
        {"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": ids[0],
         "properties": {"sku": "A1", "price": 19.5}},
        {"type": "identify", "anonymousId": "anon-1", "messageId": ids[1], "traits": {"plan": "x"}},
    ], "context": {"library": {"name": "analytics-node"}}}
    st, h, data = srv.request("POST", "/v1/batch", body,
                              headers={"User-Agent": "analytics-node/6", "X-Forwarded-For": "1.2.3.4"})
    check(st == 200, (st, data))
    check(json.loads(data) == {"success": True}, data)
    events = {e["messageId"]: e for e in srv.export()}
    e = events[ids[0]]
    check(e["type"] == "track" and e["event"] == "Product Viewed" and e["properties"]["price"] == 19.5)
    check(e["context"]["ip"] == "127.0.0.0", e["context"])  # peer not trusted: XFF ignored
    check(e["context"]["library"]["name"] == "analytics-node")  # batch context merged
    check(e["context"]["userAgent"] == "analytics-node/6")
    check(e["receivedAt"].endswith("Z") and "timestamp" in e)
    check(events[ids[1]]["type"] == "identify")


def test_each_single_endpoint():
    cases = {
        "/v1/track": {"event": "Signed Up", "userId": "u2"},
        "/v1/page": {"anonymousId": "a2", "name": "Home", "properties": {"url": "https://shop.example/"}},
        "/v1/screen": {"anonymousId": "a2", "name": "Main"},
        "/v1/identify": {"userId": "u2", "traits": {"email": "u2@example.com"}},
        "/v1/group": {"userId": "u2", "groupId": "g1"},
        "/v1/alias": {"userId": "u2", "previousId": "a2"},
    }
    sent = {}
    for path, ev in cases.items():
        ev["messageId"] = mid()
        sent[ev["messageId"]] = path
        st, _, data = srv.request("POST", path, ev)
        check(st == 200, (path, st, data))
    events = {e["messageId"]: e for e in srv.export()}
    for m, path in sent.items():
        check(events[m]["type"] == path.split("/")[-1], (path, events.get(m)))


def test_write_key_in_body_and_auth_errors():
    m = mid()
    st, _, _ = srv.request("POST", "/v1/track", {"event": "x", "userId": "u", "messageId": m,
                                                  "writeKey": WRITE_KEY}, auth=None)
    check(st == 200)
    stored = [e for e in srv.export() if e["messageId"] == m][0]
    check("writeKey" not in stored, "the key must never be stored")
    st, h, data = srv.request("POST", "/v1/track", {"event": "x", "userId": "u"}, auth=None)
    check(st == 401 and json.loads(data)["error"] == "missing_key", (st, data))
    check("www-authenticate" in h)
    st, _, data = srv.request("POST", "/v1/track", {"event": "x", "userId": "u"}, auth="wrong")
    check(st == 401 and json.loads(data)["error"] == "invalid_key", (st, data))
    st, _, data = srv.request("POST", "/v1/track", {"event": "x", "userId": "u"}, auth=READ_KEY)
    check(st == 403 and json.loads(data)["error"] == "wrong_key_kind", (st, data))
    st, _, data = srv.request("POST", "/v1/track", {"event": "x", "userId": "u"},
                              headers={"Authorization": "Bearer " + WRITE_KEY})
    check(st == 200, (st, data))
    st, _, data = srv.request("POST", "/v1/track", {"event": "x", "userId": "u"},
                              headers={"Authorization": "Digest abc"})
    check(st == 401, (st, data))


def test_partial_batch_reports_each_rejection_and_logs_bad_rows():
    good = mid()
    body = {"batch": [
        {"type": "track", "event": "ok", "userId": "u", "messageId": good},
        {"type": "track", "userId": "u"},
        {"type": "nope", "userId": "u"},
        {"type": "track", "event": "x", "timestamp": "not a time", "userId": "u"},
    ]}
    st, _, data = srv.request("POST", "/v1/batch", body)
    r = json.loads(data)
    check(st == 200 and r["success"] is True and r["accepted"] == 1, (st, data))
    check([x["index"] for x in r["rejected"]] == [1, 2, 3], r)
    check([x["error"] for x in r["rejected"]] == ["missing_field", "invalid_type", "invalid_timestamp"], r)
    check(all(x["message"] for x in r["rejected"]))
    check(good in exported_ids())
    bad = srv.export("--bad")
    check(any(b["error"] == "invalid_type" and '"nope"' in b["raw"] for b in bad), bad[-3:])
    # All bad: 400, nothing stored.
    st, _, data = srv.request("POST", "/v1/batch", {"batch": [{"type": "track", "userId": "u"}]})
    check(st == 400 and json.loads(data)["accepted"] == 0, (st, data))


def test_invalid_bodies():
    st, _, data = srv.request("POST", "/v1/batch", b"{not json", headers={"Content-Type": "application/json"})
    check(st == 400 and json.loads(data)["error"] == "invalid_json", (st, data))
    st, _, data = srv.request("POST", "/v1/batch", {"nobatch": 1})
    check(st == 400 and json.loads(data)["error"] == "missing_field", (st, data))
    st, _, data = srv.request("POST", "/v1/batch", {"batch": []})
    check(st == 400 and json.loads(data)["error"] == "empty_batch", (st, data))
    st, _, data = srv.request("POST", "/v1/batch", {"batch": {"type": "track"}})
    check(st == 400 and json.loads(data)["error"] == "missing_field", (st, data))
    st, _, data = srv.request("POST", "/v1/batch", [1, 2])
    check(st == 400 and json.loads(data)["error"] == "not_an_object", (st, data))
    st, _, data = srv.request("POST", "/v1/batch", {"batch": [{"type": "track", "event": "x", "userId": "u"}] * 101})
    check(st == 413 and json.loads(data)["error"] == "too_many_events", (st, data))
    # Exactly max-batch-events is taken whole.
    ids = [mid() for _ in range(100)]
    st, _, data = srv.request("POST", "/v1/batch", {"batch": [
        {"type": "track", "event": "x", "userId": "u", "messageId": i} for i in ids]})
    check(st == 200 and json.loads(data)["success"] is True and "rejected" not in json.loads(data),
          (st, data))
    # "batch" is found by its decoded name, its first occurrence only; the elements keep
    # their order and each one that is not an object is refused at its own index.
    esc = mid()
    body = ('{"b\\u0061tch" : [ 7 ,\n {"type":"track","event":"esc","userId":"u","messageId":"%s"}'
            ' , "s" ], "batch": []}' % esc).encode()
    st, _, data = srv.request("POST", "/v1/batch", body, headers={"Content-Type": "application/json"})
    r = json.loads(data)
    check(st == 200 and r["accepted"] == 1, (st, data))
    check([(x["index"], x["error"]) for x in r["rejected"]] == [(0, "not_an_object"), (2, "not_an_object")], r)
    exported = exported_ids()
    check(esc in exported and all(i in exported for i in ids))
    st, _, data = srv.request("POST", "/v1/track", {"event": "x", "userId": "u", "properties": {"p": "y" * 5000}})
    check(st == 400 and json.loads(data)["rejected"][0]["error"] == "event_too_large", (st, data))
    bad = srv.export("--bad")
    check(any(b["error"] == "invalid_json" and b["raw"] == "{not json" for b in bad))


def test_content_type_and_encoding():
    ev = {"event": "gz", "userId": "u", "messageId": mid()}
    st, _, data = srv.request("POST", "/v1/track", gzip.compress(json.dumps(ev).encode()),
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    check(st == 200, (st, data))
    ev2 = {"event": "df", "userId": "u", "messageId": mid()}
    st, _, data = srv.request("POST", "/v1/track", zlib.compress(json.dumps(ev2).encode()),
                              headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    check(st == 200, (st, data))
    ids = exported_ids()
    check(ev["messageId"] in ids and ev2["messageId"] in ids)
    # sendBeacon sends text/plain
    st, _, _ = srv.request("POST", "/v1/track", json.dumps({"event": "b", "userId": "u"}).encode(),
                           headers={"Content-Type": "text/plain;charset=UTF-8"})
    check(st == 200)
    bomb = gzip.compress(b" " * (2 * 1024 * 1024))  # 2 MiB of spaces, ~2 KB compressed
    st, _, data = srv.request("POST", "/v1/track", bomb,
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    check(st == 413 and json.loads(data)["error"] == "body_too_large", (st, data))
    st, _, data = srv.request("POST", "/v1/track", b"not gzip at all",
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    check(st == 400 and json.loads(data)["error"] == "bad_encoding", (st, data))
    st, _, data = srv.request("POST", "/v1/track", b"{}", headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    check(st == 415, (st, data))
    st, _, data = srv.request("POST", "/v1/track", b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
    check(st == 415 and json.loads(data)["error"] == "unsupported_media_type", (st, data))


def test_ndjson_bulk():
    ids = [mid() for _ in range(3)]
    lines = [json.dumps({"event": "n", "userId": "u", "messageId": ids[0]}),
             "{broken",
             "",
             json.dumps({"type": "page", "anonymousId": "a", "messageId": ids[1]}),
             json.dumps({"type": "track", "userId": "u", "messageId": ids[2]})]
    st, _, data = srv.request("POST", "/v1/events", ("\n".join(lines) + "\n").encode(),
                              headers={"Content-Type": "application/x-ndjson"})
    r = json.loads(data)
    check(st == 200 and r["accepted"] == 2, (st, data))
    check([(x["index"], x["error"]) for x in r["rejected"]] == [(1, "invalid_json"), (3, "missing_field")], r)
    got = exported_ids()
    check(ids[0] in got and ids[1] in got and ids[2] not in got)


def test_pixel():
    m = mid()
    path = "/v1/p.gif?writeKey=%s&event=Email+Opened&userId=u-mail&messageId=%s&properties.campaign=nov%%20sale" % (WRITE_KEY, m)
    st, h, data = srv.request("GET", path, auth=None)
    check(st == 200 and h["content-type"] == "image/gif" and data.startswith(b"GIF89a"), (st, h))
    check("no-store" in h.get("cache-control", ""))
    e = [x for x in srv.export() if x["messageId"] == m][0]
    check(e["event"] == "Email Opened" and e["properties"]["campaign"] == "nov sale", e)
    st, _, data = srv.request("GET", "/v1/p.gif?userId=u", auth=None)
    check(st == 401, (st, data))
    seg = {"writeKey": WRITE_KEY, "event": "Opened via data", "userId": "u", "messageId": mid()}
    import base64
    st, _, _ = srv.request("GET", "/v1/p.gif?data=" + base64.urlsafe_b64encode(json.dumps(seg).encode()).decode().rstrip("="), auth=None)
    check(st == 200)
    check(seg["messageId"] in exported_ids())
    st, _, data = srv.request("POST", "/v1/p.gif", b"", auth=None)
    check(st == 405, st)


def test_click_redirect_allowlist():
    m = mid()
    target = "https://shop.example/p/1?utm_source=newsletter"
    from urllib.parse import quote
    st, h, _ = srv.request("GET", "/v1/r?k=%s&userId=u&messageId=%s&u=%s" % (WRITE_KEY, m, quote(target, safe="")), auth=None)
    check(st == 302 and h["location"] == target, (st, h))
    e = [x for x in srv.export() if x["messageId"] == m][0]
    check(e["event"] == "Email Link Clicked" and e["properties"]["url"] == target)
    st, h, _ = srv.request("GET", "/v1/r?k=%s&userId=u&u=%s" % (WRITE_KEY, quote("https://img.cdn.example/x")), auth=None)
    check(st == 302, st)
    for evil in ["https://evil.example/", "//evil.example/", "javascript:alert(1)",
                 "https://shop.example@evil.example/", "https://shop.example.evil.example/",
                 "https://evil.example\\@shop.example/", "ftp://shop.example/", "https://cdn.example/"]:
        st, h, data = srv.request("GET", "/v1/r?k=%s&userId=u&u=%s" % (WRITE_KEY, quote(evil, safe="")), auth=None)
        check(st == 400 and "location" not in h, (evil, st, h))
        check(json.loads(data)["error"] == "redirect_not_allowed")
    st, h, _ = srv.request("GET", "/v1/r?k=%s&userId=u" % WRITE_KEY, auth=None)
    check(st == 400 and "location" not in h)


def test_cors():
    st, h, _ = srv.request("OPTIONS", "/v1/batch", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}, auth=None)
    check(st == 204 and h["access-control-allow-origin"] == "https://shop.example", (st, h))
    check("POST" in h["access-control-allow-methods"])
    st, h, data = srv.request("OPTIONS", "/v1/batch", headers={"Origin": "https://evil.example"}, auth=None)
    check(st == 403 and "access-control-allow-origin" not in h, (st, h))
    st, h, _ = srv.request("POST", "/v1/track", {"event": "c", "userId": "u"},
                           headers={"Origin": "https://shop.example"})
    check(st == 200 and h["access-control-allow-origin"] == "https://shop.example", (st, h))
    st, h, _ = srv.request("POST", "/v1/track", {"event": "c", "userId": "u"},
                           headers={"Origin": "https://evil.example"})
    check(st == 403, st)
    # Same origin as the Host header is always allowed (the tracker served by sluice).
    st, h, _ = srv.request("POST", "/v1/track", {"event": "c", "userId": "u"},
                           headers={"Origin": "http://127.0.0.1:%d" % srv.port})
    check(st == 200, st)


def test_http_errors():
    st, h, data = srv.request("GET", "/v1/batch")
    check(st == 405 and "POST" in h.get("allow", ""), (st, h))
    st, _, data = srv.request("GET", "/nope")
    check(st == 404 and json.loads(data)["error"] == "not_found")
    st, _, data = srv.request("POST", "/v1/batch", b"x" * (65 * 1024), headers={"Content-Type": "application/json"})
    check(st == 413 and json.loads(data)["success"] is False, (st, data[:100]))
    out = raw(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 431"), out[:80])
    out = raw(srv.port, b"BLAH / HTTP/1.1\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 400"), out[:80])
    # Slow client: headers never finish -> 408 after header-timeout-ms.
    t0 = time.time()
    out = raw(srv.port, b"POST /v1/track HTTP/1.1\r\nHost: x\r\n", timeout=5)
    check(out.startswith(b"HTTP/1.1 408"), out[:80])
    check(time.time() - t0 < 4)
    # Slow body.
    out = raw(srv.port, b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", timeout=5)
    check(out.startswith(b"HTTP/1.1 408"), out[:80])


def test_keep_alive_and_pipelining():
    ev = json.dumps({"event": "p", "userId": "u"}).encode()
    import base64
    auth = base64.b64encode((WRITE_KEY + ":").encode())
    one = (b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth +
           b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(ev)).encode() + b"\r\n\r\n" + ev)
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(srv.port, one * 3 + last)
    check(out.count(b"HTTP/1.1 200 OK") == 4, out)
    check(out.rfind(b"{\"status\":\"ok\"}") > out.rfind(b"{\"success\":true}"), "responses in order")


def test_ops_endpoints_and_metrics():
    st, _, data = srv.request("GET", "/healthz", auth=None)
    check(st == 200)
    st, _, data = srv.request("GET", "/readyz", auth=None)
    check(st == 200 and json.loads(data)["ready"] is True)
    st, _, _ = srv.request("GET", "/metrics", auth=None)
    check(st == 401)
    st, _, _ = srv.request("GET", "/metrics", headers={"Authorization": "Bearer " + WRITE_KEY})
    check(st == 403, "the public write key must not read metrics")
    st, _, data = srv.request("GET", "/metrics", headers={"Authorization": "Bearer " + READ_KEY})
    check(st == 200)
    text = data.decode()
    for name in ["sluice_http_requests_total{route=\"batch\",status=\"200\"}",
                 "sluice_events_accepted_total", "sluice_events_rejected_total{reason=",
                 "sluice_log_fsync_seconds_bucket", "sluice_ack_latency_seconds_count",
                 "sluice_log_queue_bytes", "sluice_request_bytes_total"]:
        check(name in text, name)
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True)
        check(r.returncode == 0, r.stdout + r.stderr)
    else:
        raise AssertionError("promtool not installed (scripts/deps.sh test installs it)")


def test_check_config():
    d = tempfile.mkdtemp()
    try:
        good = os.path.join(d, "good.yaml")
        with open(good, "w") as f:
            f.write("listen: 127.0.0.1:9999\nfsync: interval\ncors-origins: [\"https://a.example\"]\n")
        r = subprocess.run([BINARY, "check-config", "--config", good], capture_output=True)
        check(r.returncode == 0, r.stderr)
        bad = os.path.join(d, "bad.yaml")
        with open(bad, "w") as f:
            f.write("listen: 127.0.0.1:9999\nfsync: sometimes\n")
        r = subprocess.run([BINARY, "check-config", "--config", bad], capture_output=True)
        check(r.returncode == 2 and b"bad.yaml:2:8:" in r.stderr, r.stderr)
        r = subprocess.run([BINARY, "check-config"], capture_output=True, env=dict(os.environ, SLUICE_CONFIG=bad))
        check(r.returncode == 2 and b"bad.yaml:2:8:" in r.stderr, r.stderr)
    finally:
        shutil.rmtree(d)


def test_generated_keys_kept_across_restart_and_drain():
    s = Server(keys=False).start()
    try:
        import re
        wk = re.search(r"write key: (\w+)", s.banner).group(1)
        rk = re.search(r"read key:\s+(\w+)", s.banner).group(1)
        check(len(wk) == 48 and wk != rk)
        st, _, _ = s.request("POST", "/v1/track", {"event": "k", "userId": "u"}, auth=wk)
        check(st == 200)
        check(s.stop() == 0, "SIGTERM must exit 0")
        check("sluice stopped cleanly" in s.log_text())
        mode = os.stat(os.path.join(s.data_dir, "keys.yaml")).st_mode & 0o777
        check(mode == 0o600, oct(mode))
        s.start()
        check(("write key: " + wk) in s.banner, s.banner)
        st, _, _ = s.request("POST", "/v1/track", {"event": "k", "userId": "u"}, auth=wk)
        check(st == 200)
    finally:
        s.cleanup()


def test_rate_limit_429():
    s = Server(args=["--rate-limit-per-ip=2", "--rate-limit-burst=3"]).start()
    try:
        statuses = []
        for i in range(8):
            st, h, data = s.request("POST", "/v1/track", {"event": "r", "userId": "u"})
            statuses.append(st)
            if st == 429:
                check(int(h["retry-after"]) >= 1 and json.loads(data)["error"] == "rate_limited")
        check(statuses[:3] == [200, 200, 200] and 429 in statuses[3:], statuses)
        check(s.request("GET", "/healthz", auth=None)[0] == 200, "ops endpoints are not limited")
        wait_for(lambda: s.request("POST", "/v1/track", {"event": "r", "userId": "u"})[0] == 200, 5)
    finally:
        s.cleanup()


def test_config_doc_matches_the_option_table():
    from harness import ROOT
    r = subprocess.run([BINARY, "config-doc"], capture_output=True)
    with open(os.path.join(ROOT, "docs", "CONFIG.md"), "rb") as f:
        check(f.read() == r.stdout, "docs/CONFIG.md is stale: run ./build/sluice config-doc > docs/CONFIG.md")


def test_export_ranges():
    before = len(srv.export())
    evs = srv.export("--from-offset=1", "--to-offset=3")
    check(len(evs) == 2, len(evs))
    check(len(srv.export("--since=2000-01-01T00:00:00Z")) == before)
    check(len(srv.export("--since=2999-01-01T00:00:00Z")) == 0)


try:
    run_all(globals())
finally:
    srv.stop()
    srv.cleanup()
