"""End-to-end durability: kill -9 under mixed load loses no acknowledged event and
duplicates none; a torn or corrupt tail is truncated and reported; a full disk answers
503 + Retry-After without corrupting the log, and writing resumes when space returns."""
import base64
import glob
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

from harness import WRITE_KEY, Server, check, run_all, tmpfs, wait_for

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))
AUTH = "Basic " + base64.b64encode((WRITE_KEY + ":").encode()).decode()


def load_worker(srv, kind, acked, stop, errors):
    """Send requests of one kind until stop is set; record messageIds of 2xx answers."""
    import http.client
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            if kind == "single":
                ids = ["s-" + uuid.uuid4().hex]
                conn.request("POST", "/v1/track", json.dumps({"event": "e", "userId": "u", "messageId": ids[0]}),
                             {"Authorization": AUTH, "Content-Type": "application/json"})
            elif kind == "batch":
                ids = ["b-" + uuid.uuid4().hex for _ in range(20)]
                body = {"batch": [{"type": "track", "event": "e", "userId": "u%d" % i, "messageId": m,
                                   "properties": {"n": i}} for i, m in enumerate(ids)]}
                conn.request("POST", "/v1/batch", json.dumps(body), {"Authorization": AUTH, "Content-Type": "application/json"})
            else:
                ids = ["p-" + uuid.uuid4().hex]
                conn.request("GET", "/v1/p.gif?writeKey=%s&userId=u&messageId=%s" % (WRITE_KEY, ids[0]))
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                acked.extend(ids)
            elif r.status != 503:
                errors.append(r.status)
        except Exception:
            conn = None
            if stop.is_set():
                break
            time.sleep(0.005)


def test_kill_9_under_load_loses_and_duplicates_nothing():
    data_dir = tempfile.mkdtemp(prefix="sluice-crash-")
    acked_all = []
    try:
        for rnd in range(ROUNDS):
            srv = Server(data_dir=data_dir, args=["--segment-bytes=256k"]).start()
            acked, stop, errors = [], threading.Event(), []
            threads = [threading.Thread(target=load_worker, args=(srv, k, acked, stop, errors))
                       for k in ("single", "single", "batch", "batch", "pixel")]
            for t in threads:
                t.start()
            wait_for(lambda: len(acked) > 200, 30)
            time.sleep(random.uniform(0.05, 0.5))
            srv.kill()
            stop.set()
            for t in threads:
                t.join(10)
            check(not errors, "unexpected statuses: %r" % errors[:5])
            acked_all.extend(acked)
            srv.cleanup()
            # Restart: recovery must succeed, and every acked id be there exactly once.
            srv = Server(data_dir=data_dir).start()
            ids = [e["messageId"] for e in srv.export()]
            srv.stop()
            counts = {}
            for m in ids:
                counts[m] = counts.get(m, 0) + 1
            lost = [m for m in acked_all if m not in counts]
            dup = [m for m, c in counts.items() if c > 1]
            print("  round %d: acked %d total, %d in log, lost %d, duplicated %d" %
                  (rnd, len(acked_all), len(ids), len(lost), len(dup)))
            check(not lost, "acknowledged events lost: %r" % lost[:5])
            check(not dup, "duplicated events: %r" % dup[:5])
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def send_some(srv, n, prefix):
    ids = []
    for i in range(n):
        m = "%s-%d" % (prefix, i)
        st, _, _ = srv.request("POST", "/v1/track", {"event": "e", "userId": "u", "messageId": m})
        check(st == 200)
        ids.append(m)
    return ids


def last_segment(data_dir):
    segs = sorted(glob.glob(os.path.join(data_dir, "log", "*.log")))
    check(segs, "no segment files")
    return segs[-1]


def test_torn_tail_is_truncated_and_reported():
    srv = Server().start()
    try:
        ids = send_some(srv, 20, "torn")
        check(srv.stop() == 0)
        seg = last_segment(srv.data_dir)
        size = os.path.getsize(seg)
        with open(seg, "ab") as f:  # a frame header promising more bytes than exist
            f.write(b"\x40\x00\x00\x00\xde\xad\xbe\xef" + b"\x01" * 13)
        srv.start()
        check("dropped_bytes=21" in srv.log_text(), srv.log_text()[-800:])
        check(os.path.getsize(seg) == size)
        got = [e["messageId"] for e in srv.export()]
        check(got == ids, (len(got), len(ids)))
        more = send_some(srv, 5, "after")
        check([e["messageId"] for e in srv.export()] == ids + more)
        # Now tear the last record in half: it must go, with the rest intact.
        check(srv.stop() == 0)
        seg = last_segment(srv.data_dir)
        with open(seg, "r+b") as f:
            f.truncate(os.path.getsize(seg) - 30)
        srv.start()
        check("log recovered a torn tail" in srv.log_text())
        got = [e["messageId"] for e in srv.export()]
        check(got == ids + more[:-1], got[-3:])
        # And a flipped byte inside the (new) last record: CRC catches it.
        check(srv.stop() == 0)
        seg = last_segment(srv.data_dir)
        with open(seg, "r+b") as f:
            f.seek(os.path.getsize(seg) - 10)
            b = f.read(1)
            f.seek(os.path.getsize(seg) - 10)
            f.write(bytes([b[0] ^ 0xFF]))
        srv.start()
        got = [e["messageId"] for e in srv.export()]
        check(got == ids + more[:-2], got[-3:])
        check(srv.request("POST", "/v1/track", {"event": "e", "userId": "u"})[0] == 200)
    finally:
        srv.cleanup()


def test_full_disk_503_then_recovers():
    srv = None
    with tmpfs("2m") as mnt:
        try:
            data_dir = os.path.join(mnt, "data")
            srv = Server(data_dir=data_dir, args=["--segment-bytes=64k"]).start()
            filler = os.path.join(mnt, "filler")
            free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            with open(filler, "wb") as f:
                f.write(b"\0" * (free - 300 * 1024))
            acked, full = [], None
            body_pad = "x" * 1500
            for i in range(2000):
                m = "full-%d" % i
                st, h, data = srv.request("POST", "/v1/track", {"event": "e", "userId": "u", "messageId": m,
                                                                "properties": {"pad": body_pad}})
                if st == 200:
                    acked.append(m)
                    continue
                full = (st, h, data)
                break
            check(full is not None, "the disk never filled")
            st, h, data = full
            check(st == 503 and "retry-after" in h, full)
            check(json.loads(data)["error"] == "disk_full", data)
            check(srv.request("GET", "/healthz", auth=None)[0] == 200)
            got = [e["messageId"] for e in srv.export()]
            check(got == acked, "log after ENOSPC must hold exactly the acked events")
            os.unlink(filler)  # space returns
            st, _, _ = srv.request("POST", "/v1/track", {"event": "e", "userId": "u", "messageId": "after-full"})
            check(st == 200, st)
            check(srv.stop() == 0)
            srv.start()
            check("torn tail" not in srv.log_text(), "no torn tail after ENOSPC")
            got = [e["messageId"] for e in srv.export()]
            check(got == acked + ["after-full"], got[-3:])
            srv.stop()
        finally:
            if srv:
                srv.cleanup()


run_all(globals())
