"""Access control and injection: every endpoint with no key, a wrong key and a key of the
wrong kind; event data that tries to split headers or responses. The table ENDPOINTS is
the list of what sluice serves: an endpoint added without a row here is a gap."""
import base64
import json
import socket

from harness import ADMIN_KEY, READ_KEY, WRITE_KEY, Server, check, raw, run_all

srv = Server().start()

# (method, path, body, kinds that may use it); "public" endpoints take no key. The admin
# key may do everything, sending events included.
ENDPOINTS = [
    ("POST", "/v1/batch", {"batch": [{"type": "track", "event": "e", "userId": "u"}]}, {"write", "admin"}),
    ("POST", "/v1/track", {"event": "e", "userId": "u"}, {"write", "admin"}),
    ("POST", "/v1/page", {"userId": "u"}, {"write", "admin"}),
    ("POST", "/v1/identify", {"userId": "u"}, {"write", "admin"}),
    ("POST", "/v1/events", b'{"event":"e","userId":"u"}\n', {"write", "admin"}),
    ("POST", "/v1/query", {"type": "totals", "from": "-1h", "to": "now"}, {"read", "admin"}),
    ("GET", "/v1/live", None, {"read", "admin"}),
    ("GET", "/v1/live?feed=events", None, {"read", "admin"}),
    ("GET", "/metrics", None, {"read", "admin"}),
    ("POST", "/v1/offers/token", {"anonymousId": "a-1"}, {"write", "admin"}),
    ("POST", "/v1/push", {"anonymousId": "a-1", "template": "t", "fields": {}}, {"admin"}),
    ("POST", "/v1/actions", {"kind": "offer", "target": "t", "payload": {}, "anonymousId": "a-1"}, {"admin"}),
    ("POST", "/v1/webhooks/redeliver", {"all": True}, {"admin"}),
    ("GET", "/v1/users/someone/export", None, {"admin"}),
    ("DELETE", "/v1/users/someone-else", None, {"admin"}),
]
PUBLIC = ["/", "/healthz", "/readyz", "/version", "/sluice.js", "/demo"]
KEYS = {"write": WRITE_KEY, "read": READ_KEY, "admin": ADMIN_KEY}


def call(method, path, body, key, scheme="Bearer"):
    h = {}
    if key is not None:
        h["Authorization"] = ("Bearer " + key if scheme == "Bearer" else
                              "Basic " + base64.b64encode((key + ":").encode()).decode())
    if path.startswith("/v1/live"):  # a stream: read only the status line and headers
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        try:
            auth = "Authorization: %s\r\n" % h["Authorization"] if h else ""
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, auth)).encode())
            d = b""
            while b"\r\n\r\n" not in d:
                c = s.recv(4096)
                if not c:
                    break
                d += c
            head, _, rest = d.partition(b"\r\n\r\n")
            return int(head.split()[1]), rest
        finally:
            s.close()
    st, _, data = srv.request(method, path, body, headers=h, auth=None)
    return st, data


def test_every_endpoint_refuses_no_key_wrong_key_and_wrong_kind():
    checked = 0
    for method, path, body, allowed in ENDPOINTS:
        for label, key in [("no key", None), ("wrong key", "not-a-key-" + "0" * 20)]:
            st, data = call(method, path, body, key)
            check(st == 401, "%s %s with %s: %d" % (method, path, label, st))
            if "write" not in allowed:  # ingestion names its own codes (missing_key, ...)
                check(json.loads(data)["error"] == "unauthorized", data)
            checked += 1
        for kind, key in KEYS.items():
            for scheme in ("Bearer", "Basic"):
                st, data = call(method, path, body, key, scheme)
                if kind in allowed:
                    check(st not in (401, 403), "%s %s with the %s key (%s): %d %s"
                          % (method, path, kind, scheme, st, data[:200]))
                else:
                    check(st in (401, 403), "%s %s with the %s key (%s) must be refused: %d"
                          % (method, path, kind, scheme, st))
                    if "write" not in allowed:
                        check(st == 403 and json.loads(data)["error"] == "wrong_key_kind",
                              "%s %s with the %s key: %d %s" % (method, path, kind, st, data[:200]))
                checked += 1
    print("  %d endpoint x key combinations checked" % checked)


def test_public_endpoints_need_no_key_and_leak_no_key():
    for path in PUBLIC:
        st, _, data = srv.request("GET", path, auth=None)
        check(st == 200, (path, st))
        for secret in (READ_KEY, ADMIN_KEY):
            check(secret.encode() not in data, "%s leaks a secret key" % path)


def test_no_header_or_response_splitting_through_event_data():
    # The redirect target and pixel parameters carry client text into the answer's head.
    evil = "https%3A%2F%2Fexample.com%2F%0D%0ASet-Cookie%3A%20x%3D1%0D%0A%0D%0A%3Chtml%3E"
    resp = raw(srv.port, ("GET /v1/r?u=%s&e=click&aid=a1&writeKey=%s HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\n\r\n" % (evil, WRITE_KEY)).encode())
    head = resp.split(b"\r\n\r\n", 1)[0]
    check(b"Set-Cookie" not in head, head)
    for line in head.split(b"\r\n"):
        check(b"\n" not in line and b"\r" not in line, line)
    resp = raw(srv.port, ("GET /v1/p.gif?e=open%%0D%%0AX-Evil%%3A%%201&aid=a2&writeKey=%s HTTP/1.1\r\n"
                          "Host: x\r\nConnection: close\r\n\r\n" % WRITE_KEY).encode())
    head = resp.split(b"\r\n\r\n", 1)[0]
    check(b"X-Evil" not in head, head)
    # A key in the body is never echoed, nor stored.
    st, _, data = srv.request("POST", "/v1/track", {"event": "e", "userId": "u-echo", "writeKey": WRITE_KEY},
                              auth=None)
    check(st == 200 and WRITE_KEY.encode() not in data, (st, data))


def test_live_stream_takes_the_key_in_the_query_but_not_the_write_key():
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        s.sendall(("GET /v1/live?key=%s HTTP/1.1\r\nHost: x\r\n\r\n" % WRITE_KEY).encode())
        check(s.recv(4096).startswith(b"HTTP/1.1 403"))
    finally:
        s.close()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        s.sendall(("GET /v1/live?key=%s HTTP/1.1\r\nHost: x\r\n\r\n" % READ_KEY).encode())
        check(s.recv(4096).startswith(b"HTTP/1.1 200"))
    finally:
        s.close()


try:
    run_all(globals())
finally:
    srv.cleanup()
