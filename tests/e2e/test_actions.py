"""End-to-end: the act stage against the real binary. Webhooks: retries until a receiver
answers 2xx, delivered once per idempotency key with a valid signature; an action pending
while sluice is killed with SIGKILL is delivered after the restart; a dead letter is
delivered again by `sluice redeliver`. Offers: a visitor's stream opened with a token
receives admin pushes (to them and to everyone), replays what it missed with
Last-Event-ID, and refuses tokens for another id, forged and expired ones. Emit: an
emitted event lands in the log once per key."""
import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ADMIN_KEY, BINARY, READ_KEY, WRITE_KEY, Server, check, free_port, metric,  # noqa: E402
                     run_all, wait_for)

SECRET = "whsec-test-1"


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 500 to the first `fail` requests, then
    200 (or 500 forever with fail=-1); records every request."""

    def __init__(self, fail=0, port=0, delay_first=0.0, big_body=0):
        self.fail = fail
        self.delay_first = delay_first
        self.big_body = big_body
        self.requests = []
        self.lock = threading.Lock()
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rec.lock:
                    delay, rec.delay_first = rec.delay_first, 0.0
                if delay:
                    time.sleep(delay)
                with rec.lock:
                    failing = rec.fail < 0 or rec.fail > 0
                    if rec.fail > 0:
                        rec.fail -= 1
                    rec.requests.append({"headers": dict(self.headers), "body": body,
                                         "status": 500 if failing else 200})
                out = b"x" * rec.big_body if rec.big_body else b"{}"
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                try:
                    self.wfile.write(out)
                except OSError:
                    pass  # sluice stops reading a long body

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def delivered(self, key=None):
        with self.lock:
            return [r for r in self.requests if r["status"] == 200 and
                    (key is None or r["headers"].get("Idempotency-Key") == key)]

    def attempts(self, key):
        with self.lock:
            return [r for r in self.requests if r["headers"].get("Idempotency-Key") == key]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def webhook_args(port, attempts=10):
    return ["--webhook-endpoints=crm http://127.0.0.1:%d/hook secret=%s timeout-ms=2000" % (port, SECRET),
            "--webhook-retry-base-ms=50", "--webhook-retry-max-ms=200",
            "--webhook-max-attempts=%d" % attempts]


def admin(srv, method, path, body=None):
    st, h, data = srv.request(method, path, body=body, headers={"Authorization": "Bearer " + ADMIN_KEY})
    return st, json.loads(data) if data else None


def signature_ok(req):
    sig = req["headers"].get("Sluice-Signature", "")
    parts = dict(p.split("=", 1) for p in sig.split(","))
    mac = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + req["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def test_webhook_retries_until_2xx_and_delivers_once():
    rcv = Receiver(fail=3)
    srv = Server(args=webhook_args(rcv.port)).start()
    try:
        act = {"kind": "webhook", "target": "crm", "key": "rule1-0001", "userId": "u-1",
               "payload": {"coupon": "SAVE10", "amount": 10}}
        st, body = admin(srv, "POST", "/v1/actions", act)
        check(st == 202 and body["key"] == "rule1-0001", (st, body))
        wait_for(lambda: len(rcv.delivered("rule1-0001")) == 1, 20)
        tries = rcv.attempts("rule1-0001")
        check(len(tries) == 4, len(tries))  # three 500s, then the 200
        check(len(set(t["body"] for t in tries)) == 1, "the body changed between attempts")
        check(all(signature_ok(t) for t in tries), "a signature did not verify")
        sent = json.loads(tries[-1]["body"])
        check(sent["key"] == "rule1-0001" and sent["endpoint"] == "crm" and sent["userId"] == "u-1", sent)
        check(sent["payload"] == {"coupon": "SAVE10", "amount": 10}, sent)
        # A decision replayed with the same key is recognised, not delivered again.
        st, _ = admin(srv, "POST", "/v1/actions", act)
        check(st == 202)
        check(metric(srv, "sluice_webhook_duplicates_total") == 1)
        st, _ = admin(srv, "POST", "/v1/actions", dict(act, key="rule1-0002"))
        wait_for(lambda: len(rcv.delivered("rule1-0002")) == 1, 20)
        check(len(rcv.delivered("rule1-0001")) == 1, "delivered twice")
        # The receiver has the request before sluice has read its answer: wait for that.
        wait_for(lambda: metric(srv, "sluice_webhook_delivered_total") == 2, 10)
        check(metric(srv, "sluice_webhook_retries_total") == 3)
        check(metric(srv, "sluice_webhook_outbox_depth") == 0)
        # A tampered body does not verify under the secret.
        bad = dict(tries[-1], body=tries[-1]["body"].replace(b"SAVE10", b"SAVE99"))
        check(not signature_ok(bad))
    finally:
        srv.cleanup()
        rcv.close()


def test_webhook_bad_requests():
    rcv = Receiver()
    srv = Server(args=webhook_args(rcv.port)).start()
    try:
        st, _, _ = srv.request("POST", "/v1/actions", body={"kind": "webhook", "target": "crm"})
        check(st == 403, st)  # the write key
        st, _, _ = srv.request("POST", "/v1/actions", body={"kind": "webhook", "target": "crm"}, auth=None)
        check(st == 401, st)
        st, b = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "nope"})
        check(st == 404 and b["error"] == "unknown_endpoint", (st, b))
        st, b = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm", "payload": [1]})
        check(st == 400 and "payload" in b["message"], (st, b))
        st, b = admin(srv, "POST", "/v1/actions", {"kind": "teleport", "target": "crm"})
        check(st == 400 and b["error"] == "invalid_action", (st, b))
        st, b = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm", "extra": 1})
        check(st == 400 and "extra" in b["message"], (st, b))
        st, b = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm", "key": "a b"})
        check(st == 400 and "key" in b["message"], (st, b))
        st, _, _ = srv.request("GET", "/v1/actions", headers={"Authorization": "Bearer " + ADMIN_KEY})
        check(st == 405, st)
    finally:
        srv.cleanup()
        rcv.close()


def test_webhook_timeout_is_retried_and_long_answers_are_cut():
    rcv = Receiver(delay_first=3.0, big_body=4 << 20)
    args = webhook_args(rcv.port)
    args[0] = args[0].replace("timeout-ms=2000", "timeout-ms=300")
    srv = Server(args=args).start()
    try:
        st, _ = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm", "key": "slow-0001"})
        check(st == 202)
        wait_for(lambda: metric(srv, "sluice_webhook_delivered_total") == 1, 20)
        # The first attempt timed out after 300 ms; the second got a 200 with 4 MiB of body,
        # of which sluice reads at most 64 KiB: delivered all the same.
        check(metric(srv, "sluice_webhook_retries_total") == 1)
        wait_for(lambda: len(rcv.attempts("slow-0001")) == 2, 10)
    finally:
        srv.cleanup()
        rcv.close()


def test_full_outbox_refuses_new_actions():
    port = free_port()  # the receiver is down: everything stays pending
    srv = Server(args=webhook_args(port) + ["--webhook-outbox-max-bytes=2k"]).start()
    try:
        accepted = 0
        for i in range(50):
            st, b = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm",
                                                      "key": "full-%04d" % i, "payload": {"pad": "x" * 200}})
            if st != 202:
                check(st == 503 and b["error"] == "outbox_full", (st, b))
                break
            accepted += 1
        check(0 < accepted < 50, accepted)
        check(metric(srv, "sluice_webhook_refused_total") == 1)
        check(metric(srv, "sluice_webhook_outbox_depth") == accepted)
    finally:
        srv.cleanup()


def test_pending_webhook_survives_kill9():
    port = free_port()  # nothing listens yet: the receiver is down
    srv = Server(args=webhook_args(port, attempts=1000)).start()
    rcv = None
    try:
        st, _ = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm",
                                                  "key": "crash-0001", "payload": {"n": 1}})
        check(st == 202, st)
        wait_for(lambda: metric(srv, "sluice_webhook_retries_total") >= 2, 20)
        srv.kill()
        rcv = Receiver(port=port)
        srv.start()
        wait_for(lambda: len(rcv.delivered("crash-0001")) == 1, 20)
        check('msg="webhooks" endpoints=1 pending=1 dead_letters=0' in srv.log_text(), "resumed")
        check(json.loads(rcv.delivered("crash-0001")[0]["body"])["payload"] == {"n": 1})
        check(signature_ok(rcv.delivered("crash-0001")[0]))
        # Delivered before this restart: the key is remembered, nothing goes out again.
        # (The receiver has the request before sluice has read the 200 and journalled the
        # delivery; stopping in between would rightly deliver it again, same key.)
        wait_for(lambda: metric(srv, "sluice_webhook_outbox_depth") == 0, 10)
        srv.stop()
        srv.start()
        st, _ = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm",
                                                  "key": "crash-0001", "payload": {"n": 1}})
        check(st == 202)
        check(metric(srv, "sluice_webhook_duplicates_total") == 1)
        check(metric(srv, "sluice_webhook_outbox_depth") == 0)
        check(len(rcv.attempts("crash-0001")) == 1, len(rcv.attempts("crash-0001")))
    finally:
        srv.cleanup()
        if rcv:
            rcv.close()


def test_dead_letter_then_redeliver():
    rcv = Receiver(fail=-1)
    srv = Server(args=webhook_args(rcv.port, attempts=3)).start()
    try:
        st, _ = admin(srv, "POST", "/v1/actions", {"kind": "webhook", "target": "crm",
                                                  "key": "dead-0001", "payload": {"x": 1}})
        check(st == 202)
        wait_for(lambda: metric(srv, "sluice_webhook_dead_letters") == 1, 20)
        check(len(rcv.attempts("dead-0001")) == 3, len(rcv.attempts("dead-0001")))
        with open(os.path.join(srv.data_dir, "webhooks", "dead-letters.jsonl")) as f:
            line = json.loads(f.readline())
        check(line["key"] == "dead-0001" and line["lastError"] == "HTTP 500" and line["attempts"] == 3, line)
        # Dead letters survive a restart.
        srv.stop()
        srv.start()
        check(metric(srv, "sluice_webhook_dead_letters") == 1)
        with rcv.lock:
            rcv.fail = 0
        cmd = [BINARY, "redeliver", "dead-0001", "--listen=127.0.0.1:%d" % srv.port,
               "--data-dir=" + srv.data_dir, "--admin-key=" + ADMIN_KEY]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        check(r.returncode == 0 and b'"requeued":1' in r.stdout, (r.returncode, r.stdout, r.stderr))
        wait_for(lambda: len(rcv.delivered("dead-0001")) == 1, 20)
        check(metric(srv, "sluice_webhook_dead_letters") == 0)
        # Nothing left to requeue.
        r = subprocess.run(cmd[:2] + cmd[3:], stdout=subprocess.PIPE, timeout=30)
        check(r.returncode == 0 and b'"requeued":0' in r.stdout, r.stdout)
    finally:
        srv.cleanup()
        rcv.close()


class Stream:
    """A raw SSE client: GET path, read the head, then events as dicts."""

    def __init__(self, port, path, headers=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        h = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, h)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.head = head.decode()

    def next_event(self, timeout=10):
        deadline = time.time() + timeout
        while True:
            while b"\n\n" in self.buf:
                block, _, self.buf = self.buf.partition(b"\n\n")
                ev = {}
                for line in block.decode().split("\n"):
                    if line.startswith(":") or not line:
                        continue
                    k, _, v = line.partition(": ")
                    ev[k] = ev[k] + "\n" + v if k in ev and k == "data" else v
                if "data" in ev:
                    ev["json"] = json.loads(ev["data"])
                    return ev
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no event within %.0fs" % timeout)
            self.s.settimeout(left)
            chunk = self.s.recv(65536)
            if not chunk:
                raise AssertionError("stream closed")
            self.buf += chunk

    def close(self):
        self.s.close()


def token_for(srv, anon):
    st, _, data = srv.request("POST", "/v1/offers/token", body={"anonymousId": anon})
    check(st == 200, (st, data))
    return json.loads(data)["token"]


def test_offers_stream_push_and_replay():
    srv = Server().start()
    try:
        anon = "6f1c2a9e-0b7d-4d3e-9a51-3f0e8c2b7a10"
        tok = token_for(srv, anon)
        path = "/v1/offers?anonymousId=%s&token=%s" % (anon, tok)
        s1, s2 = Stream(srv.port, path), Stream(srv.port, path)  # two open tabs
        other = Stream(srv.port, "/v1/offers?anonymousId=other-1&token=" + token_for(srv, "other-1"))
        check(s1.status == 200 and "text/event-stream" in s1.head, s1.head)
        wait_for(lambda: metric(srv, "sluice_http_connections") >= 3, 10)
        st, b = admin(srv, "POST", "/v1/push", {"anonymousId": anon, "template": "banner",
                                                "fields": {"text": "10% off"}})
        check(st == 200 and b["reached"] == 2, (st, b))
        for s in (s1, s2):
            ev = s.next_event()
            check(ev["event"] == "offer" and ev["json"] == {"template": "banner", "fields": {"text": "10% off"}}, ev)
        # Everyone online: both visitors.
        st, b = admin(srv, "POST", "/v1/push", {"all": True, "template": "flash", "fields": {"until": "18:00"}})
        check(st == 200 and b["reached"] == 3, (st, b))
        last = s1.next_event()
        check(last["json"]["template"] == "flash", last)
        check(other.next_event()["json"]["template"] == "flash")
        # An offer from the sinks carries its rule and key.
        st, b = admin(srv, "POST", "/v1/actions", {"kind": "offer", "target": "cart-reminder",
                                                  "anonymousId": anon, "rule": "abandoned-cart",
                                                  "key": "offer-1", "payload": {"sku": "A1"}})
        check(st == 202, (st, b))
        ev = s1.next_event()
        check(ev["json"] == {"template": "cart-reminder", "fields": {"sku": "A1"},
                             "rule": "abandoned-cart", "key": "offer-1"}, ev)
        s1.close()
        s2.close()
        # Missed while away, replayed on reconnect with Last-Event-ID.
        wait_for(lambda: metric(srv, "sluice_http_connections") <= 2, 10)  # other + this request
        st, b = admin(srv, "POST", "/v1/push", {"anonymousId": anon, "template": "missed", "fields": {}})
        check(st == 200 and b["reached"] == 0, b)
        s3 = Stream(srv.port, path, {"Last-Event-ID": ev["id"]})
        got = s3.next_event()
        check(got["json"]["template"] == "missed" and int(got["id"]) > int(ev["id"]), got)
        s3.close()
        # A new page passes the last id its tab saw in the query instead (sluice.js).
        s4 = Stream(srv.port, path + "&lastEventId=" + ev["id"])
        again = s4.next_event()
        check(again["json"]["template"] == "missed" and again["id"] == got["id"], again)
        s4.close()
        # An offer decided long ago (replayed after a restart) is skipped and counted.
        st, _ = admin(srv, "POST", "/v1/actions", {"kind": "offer", "target": "late", "anonymousId": anon,
                                                  "decidedAt": "2020-01-01T00:00:00Z"})
        check(st == 202)
        check(metric(srv, "sluice_offers_stale_total") == 1)
        other.close()
    finally:
        srv.cleanup()


def test_offers_tokens_refused():
    srv = Server(args=["--offers-token-ttl-s=1", "--cors-origins=https://shop.example"]).start()
    try:
        tok = token_for(srv, "visitor-a")
        # A page on an allowed origin gets the CORS headers EventSource needs; others 403.
        s = Stream(srv.port, "/v1/offers?anonymousId=visitor-a&token=" + tok, {"Origin": "https://shop.example"})
        check(s.status == 200 and "Access-Control-Allow-Origin: https://shop.example" in s.head, s.head)
        s.close()
        s = Stream(srv.port, "/v1/offers?anonymousId=visitor-a&token=" + tok, {"Origin": "https://evil.example"})
        check(s.status == 403, s.head)
        s.close()

        def status(path, auth=None):
            st, _, data = srv.request("GET", path, auth=auth)
            return st, json.loads(data)

        st, b = status("/v1/offers?anonymousId=visitor-b&token=" + tok)
        check(st == 403 and b["error"] == "invalid_token", (st, b))
        forged = tok[:-1] + ("0" if tok[-1] != "0" else "1")
        st, b = status("/v1/offers?anonymousId=visitor-a&token=" + forged)
        check(st == 403, (st, b))
        far = "v1.9999999999." + tok.split(".")[2]  # a later expiry under the old signature
        st, b = status("/v1/offers?anonymousId=visitor-a&token=" + far)
        check(st == 403, (st, b))
        st, b = status("/v1/offers?anonymousId=visitor-a")
        check(st == 401 and b["error"] == "missing_token", (st, b))
        st, b = status("/v1/offers?token=" + tok)
        check(st == 400, (st, b))
        # Tokens come only with a key.
        st, _, _ = srv.request("POST", "/v1/offers/token", body={"anonymousId": "x"}, auth=None)
        check(st == 401, st)
        st, _, _ = srv.request("POST", "/v1/offers/token", body={"anonymousId": ""})
        check(st == 400, st)
        st, _, _ = srv.request("POST", "/v1/push", body={"all": True, "template": "t"})
        check(st == 403, st)  # the write key may not push
        st, b = admin(srv, "POST", "/v1/push", {"all": True, "anonymousId": "x", "template": "t"})
        check(st == 400, (st, b))
        # Valid now, expired after its second (a fresh token: the checks above can take
        # longer than the 1-second TTL on a busy machine).
        tok = token_for(srv, "visitor-a")
        path = "/v1/offers?anonymousId=visitor-a&token=" + tok
        s = Stream(srv.port, path)
        check(s.status == 200, s.head)
        s.close()

        def expired():
            s = Stream(srv.port, path)
            s.close()
            return s.status == 401 and b"token_expired" in s.buf
        wait_for(expired, 5)
        check(metric(srv, "sluice_offers_refused_total") >= 5)
    finally:
        srv.cleanup()


def test_emit_lands_in_the_log_once():
    srv = Server().start()
    try:
        act = {"kind": "emit", "target": "Offer Shown", "userId": "u-9", "key": "emit-0001",
               "payload": {"offer": "SAVE10"}}
        for _ in range(2):  # the same decision twice: one event
            st, b = admin(srv, "POST", "/v1/actions", act)
            check(st == 200 and b["key"] == "emit-0001", (st, b))
        st, b = admin(srv, "POST", "/v1/actions", {"kind": "emit", "target": "Offer Shown"})
        check(st == 400, (st, b))  # nobody to attribute it to
        srv.stop()
        evs = [e for e in srv.export() if e.get("messageId") == "emit-0001"]
        check(len(evs) == 1, evs)
        e = evs[0]
        check(e["type"] == "track" and e["event"] == "Offer Shown" and e["userId"] == "u-9", e)
        check(e["properties"] == {"offer": "SAVE10"}, e)
    finally:
        srv.cleanup()


if __name__ == "__main__":
    run_all(globals())
