"""End-to-end durability: kill -9 under mixed load loses no acknowledged event and
duplicates none; a torn or corrupt tail is truncated and reported; a full disk answers
503 + Retry-After without corrupting the log, and writing resumes when space returns."""
import glob
import json
import os
import random
import shutil
import tempfile
import time

from harness import MixedLoad, Server, audit, check, run_all, tmpfs, wait_for

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))


def test_kill_9_under_load_loses_and_duplicates_nothing():
    data_dir = tempfile.mkdtemp(prefix="sluice-crash-")
    acked_all = []
    try:
        for rnd in range(ROUNDS):
            srv = Server(data_dir=data_dir, args=["--segment-bytes=256k"]).start()
            load = MixedLoad(srv).start()
            wait_for(lambda: len(load.acked) > 200, 30)
            time.sleep(random.uniform(0.05, 0.5))
            srv.kill()
            load.stop()
            check(not load.errors, "unexpected answers: %r" % load.errors[:5])
            acked_all.extend(load.acked)
            srv.cleanup()
            # Restart: recovery must succeed, and every acked id be there exactly once.
            srv = Server(data_dir=data_dir).start()
            ids = [e["messageId"] for e in srv.export()]
            srv.stop()
            lost, dup = audit(acked_all, ids)
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


def test_full_disk_under_concurrent_load():
    """Five clients (single events, 20-event batches, pixels) fill the disk: every refusal
    is a 503 with Retry-After, no batch is acknowledged in part, the log holds exactly the
    acknowledged events, and once space returns the same clients get 200 again without a
    restart. A restart then finds no torn tail and the same events."""
    srv = None
    with tmpfs("4m") as mnt:
        try:
            data_dir = os.path.join(mnt, "data")
            srv = Server(data_dir=data_dir, args=["--segment-bytes=64k"]).start()
            filler = os.path.join(mnt, "filler")
            free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            with open(filler, "wb") as f:
                f.write(b"\0" * (free - 400 * 1024))
            load = MixedLoad(srv, pad=300).start()
            full = lambda: sum(1 for r in load.refused if b"disk_full" in r[3])
            wait_for(lambda: full() >= 30, 60)
            check(srv.request("GET", "/healthz", auth=None)[0] == 200)
            acked_while_full = len(load.acked)
            os.unlink(filler)  # space returns; the load goes on
            wait_for(lambda: len(load.acked) > acked_while_full + 300, 30)
            load.stop()
            check(not load.errors, "unexpected answers: %r" % load.errors[:5])
            for kind, st, retry, data in load.refused:
                check(retry is not None and int(retry) > 0, (kind, st, retry))
                check(json.loads(data)["error"] in ("disk_full", "overloaded"), (kind, data))
            print("  %d events acknowledged, %d requests refused (%d disk_full)" %
                  (len(load.acked), len(load.refused), full()))
            got = [e["messageId"] for e in srv.export()]
            stored = set(got)
            for ids, st in load.batches:  # all of a batch or nothing, as its answer said
                n = sum(1 for m in ids if m in stored)
                check(n == (len(ids) if st == 200 else 0), (st, n))
            lost, dup = audit(load.acked, got)
            check(not lost and not dup, (lost[:3], dup[:3]))
            check(len(got) == len(load.acked), "the log holds exactly the acknowledged events")
            check(srv.stop() == 0)
            srv.start()
            check("torn tail" not in srv.log_text(), "no torn tail after ENOSPC")
            check([e["messageId"] for e in srv.export()] == got)
            check(srv.stop() == 0)
        finally:
            if srv:
                srv.cleanup()


run_all(globals())
