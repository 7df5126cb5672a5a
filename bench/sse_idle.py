#!/usr/bin/env python3
"""Memory per idle offers stream: N visitors (default 10,000) each hold GET /v1/offers
open on their own channel; the script reads sluice's VmRSS before and after and prints
the difference per connection, beside Redis holding N idle clients in the same run (the
reference). Then one admin push to "all" and the time until every stream has it.

    python3 bench/sse_idle.py [N]        (SLUICE=build/sluice by default)

Raises RLIMIT_NOFILE for itself and the servers it starts (the hard limit must allow
N + some). Kernel socket buffers are not in VmRSS for either server."""
import base64
import hashlib
import hmac
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE", os.path.join(ROOT, "build", "sluice"))
ADMIN = "bench-admin-key"
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import free_port, rss_kib  # noqa: E402


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, N * 2 + 1000)
    if want < N + 100:
        sys.exit("RLIMIT_NOFILE hard limit %d is too low for %d connections" % (hard, N))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def settle(pid, secs=2.0):
    """RSS once it has stopped changing for a moment (bounded)."""
    last, deadline = rss_kib(pid), time.time() + 10
    while time.time() < deadline:
        time.sleep(secs / 4)
        cur = rss_kib(pid)
        if cur == last:
            return cur
        last = cur
    return last


def token(key, anon, exp):
    msg = b"sluice-offers-v1\n%d\n" % len(anon) + anon.encode() + b"\n%d" % exp
    return "v1.%d.%s" % (exp, hmac.new(key, msg, hashlib.sha256).hexdigest())


def bench_sluice():
    d = tempfile.mkdtemp(prefix="sluice-bench-sse-")
    port = free_port()
    p = subprocess.Popen([SLUICE, "serve", "--listen=127.0.0.1:%d" % port, "--data-dir=" + d,
                          "--admin-key=" + ADMIN, "--max-connections=%d" % (N + 100),
                          "--log-level=warn", "--ua-regexes=off", "--geo-db=off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        with open(os.path.join(d, "offers.key"), "rb") as f:
            key = f.read()
        exp = int(time.time()) + 3600
        # One stream first, so the hub's and http's first allocations are in the baseline.
        warm = socket.create_connection(("127.0.0.1", port))
        warm.sendall(("GET /v1/offers?anonymousId=warm&token=%s HTTP/1.1\r\nHost: b\r\n\r\n"
                      % token(key, "warm", exp)).encode())
        warm.recv(4096)
        before = settle(p.pid)
        socks = []
        t0 = time.time()
        for i in range(N):
            anon = "%08x-0000-4000-8000-%012x" % (i, i)
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(("GET /v1/offers?anonymousId=%s&token=%s HTTP/1.1\r\nHost: b\r\n\r\n"
                       % (anon, token(key, anon, exp))).encode())
            socks.append(s)
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, bytearray())
        pending = set(socks)
        deadline = time.time() + 120
        while pending and time.time() < deadline:
            for k, _ in sel.select(1):
                k.data.extend(k.fileobj.recv(65536))
                if b"retry: 3000" in k.data:
                    pending.discard(k.fileobj)
        opened = time.time() - t0
        if pending:
            sys.exit("%d streams did not open" % len(pending))
        after = settle(p.pid)
        # Broadcast: every stream gets one push.
        for s in socks:
            sel.modify(s, selectors.EVENT_READ, bytearray())
        body = json.dumps({"all": True, "template": "flash", "fields": {"pct": 20}}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/v1/push" % port, data=body,
                                     headers={"Authorization": "Bearer " + ADMIN,
                                              "Content-Type": "application/json"})
        t0 = time.time()
        reached = json.loads(urllib.request.urlopen(req, timeout=60).read())["reached"]
        pending = set(socks)
        while pending and time.time() < t0 + 60:
            for k, _ in sel.select(1):
                k.data.extend(k.fileobj.recv(65536))
                if b"flash" in k.data:
                    pending.discard(k.fileobj)
        fanout = time.time() - t0
        rss_push = settle(p.pid)
        for s in socks:
            s.close()
        warm.close()
        return before, after, opened, reached, len(socks) - len(pending), fanout, rss_push
    finally:
        p.terminate()
        p.wait(30)
        shutil.rmtree(d, ignore_errors=True)


def bench_redis():
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--maxclients", str(N + 100)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        warm = socket.create_connection(("127.0.0.1", port))
        warm.sendall(b"PING\r\n")
        warm.recv(64)
        before = settle(p.pid)
        socks = []
        for _ in range(N):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"PING\r\n")
            socks.append(s)
        for s in socks:
            s.recv(64)
        after = settle(p.pid)
        for s in socks:
            s.close()
        warm.close()
        return before, after
    finally:
        p.terminate()
        p.wait(30)


def main():
    raise_nofile()
    sb, sa, opened, reached, got, fanout, srp = bench_sluice()
    print("sluice: %d idle offers streams (one channel each) opened in %.1fs" % (N, opened))
    print("  VmRSS before %d KiB, with the streams %d KiB: %.0f bytes per idle stream"
          % (sb, sa, (sa - sb) * 1024.0 / N))
    print("  push to all: reached %d, all %d streams had it %.0f ms after the request;"
          " VmRSS then %d KiB (%.0f bytes per stream incl. its replay copy)"
          % (reached, got, fanout * 1000, srp, (srp - sb) * 1024.0 / N))
    if shutil.which("redis-server"):
        rb, ra = bench_redis()
        print("redis-server (reference): %d idle clients: VmRSS before %d KiB, after %d KiB:"
              " %.0f bytes per idle client" % (N, rb, ra, (ra - rb) * 1024.0 / N))
    else:
        print("redis-server not installed: no reference row")


if __name__ == "__main__":
    main()
