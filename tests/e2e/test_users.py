"""End-to-end: forget a user (API and CLI) and export a user. After an erasure no file in
the data dir holds the user's id, their anonymousId or their pseudonym, and no other
user's event is lost."""
import json
import os
import subprocess
import urllib.parse

from harness import ADMIN_KEY, BINARY, READ_KEY, Server, all_bytes, check, run_all, wait_for




def seed(srv, who, anon, n):
    """An anonymous visit, a login (identify links anon -> who), then tracked events."""
    check(srv.request("POST", "/v1/page", {"anonymousId": anon, "name": "Home",
                                            "context": {"page": {"url": "https://shop.example/?utm_source=%s" % who}}})[0] == 200)
    check(srv.request("POST", "/v1/identify", {"userId": who, "anonymousId": anon,
                                                "traits": {"email": who + "@example.com"}})[0] == 200)
    for i in range(n):
        check(srv.request("POST", "/v1/track", {"event": "Viewed", "userId": who, "properties": {"i": i}})[0] == 200)


def admin(srv, method, path):
    return srv.request(method, path, headers={"Authorization": "Bearer " + ADMIN_KEY})


def test_forget_via_api_leaves_no_trace_and_keeps_others():
    srv = Server(args=["--segment-bytes=8k"]).start()
    try:
        seed(srv, "zoe-forget-me", "anon-zoe-1234", 40)
        seed(srv, "yann-keep", "anon-yann-5678", 40)
        # A bad event that quotes the user must go too.
        srv.request("POST", "/v1/track", {"userId": "zoe-forget-me", "event": 5})
        seed(srv, "zoe-forget-me", "anon-zoe-1234", 5)
        before = srv.export()
        yann_before = [e for e in before if e.get("userId") == "yann-keep" or e.get("anonymousId") == "anon-yann-5678"]
        st, _, data = admin(srv, "GET", "/v1/users/zoe-forget-me/export")
        check(st == 200, (st, data))
        zoe = [json.loads(l) for l in data.decode().splitlines()]
        check(len(zoe) == 2 + 40 + 2 + 5, len(zoe))  # page, identify, 40 tracks, again 2 + 5
        check(any(e.get("anonymousId") == "anon-zoe-1234" and "userId" not in e for e in zoe), "pre-login page view belongs")
        # Wrong keys are refused.
        check(srv.request("DELETE", "/v1/users/zoe-forget-me")[0] in (401, 403))
        check(srv.request("DELETE", "/v1/users/zoe-forget-me", headers={"Authorization": "Bearer " + READ_KEY})[0] == 403)
        check(admin(srv, "GET", "/v1/users/zoe-forget-me")[0] == 405)
        st, _, data = admin(srv, "DELETE", "/v1/users/zoe-forget-me")
        check(st == 200, (st, data))
        r = json.loads(data)
        check(r["events"] == len(zoe) and r["badRecords"] >= 1 and r["ids"] >= 2, r)
        blob = all_bytes(srv.data_dir)
        for needle in [b"zoe-forget-me", b"anon-zoe-1234"]:
            check(needle not in blob, "%r still on disk" % needle)
        # Derived state is rebuilt from the rewritten log: a checkpoint written after the
        # erasure (at shutdown below) must not bring the user back.
        after = srv.export()
        check(len(after) == len(before), "offsets stay dense: tombstones replace events")
        yann_after = [e for e in after if e.get("userId") == "yann-keep" or e.get("anonymousId") == "anon-yann-5678"]
        check(yann_after == yann_before, "other users' events are untouched")
        check(sum(1 for e in after if e.get("type") == "forgotten") == len(zoe))
        with open(os.path.join(srv.data_dir, "audit.log")) as f:
            lines = [json.loads(l) for l in f]
        check(lines[-1]["action"] == "forget" and lines[-1]["request"] == r["request"])
        # Writes keep working after the rewrite, and a restart recovers cleanly.
        check(srv.request("POST", "/v1/track", {"event": "After", "userId": "yann-keep"})[0] == 200)
        # The query API no longer knows the forgotten user's campaign once rebuilt.
        def zoe_gone():
            st, _, data = srv.request("POST", "/v1/query", {"type": "topN", "dimension": "utm_source",
                                                            "from": "-1h", "to": "now", "limit": 100},
                                      headers={"Authorization": "Bearer " + READ_KEY})
            return st == 200 and b"zoe-forget-me" not in data and b"yann-keep" in data
        wait_for(zoe_gone, 10)
        check(srv.stop() == 0)
        blob = all_bytes(srv.data_dir)
        for needle in [b"zoe-forget-me", b"anon-zoe-1234"]:
            check(needle not in blob, "%r on disk after the shutdown checkpoint" % needle)
        srv.start()
        check("torn tail" not in srv.log_text())
        check(len(srv.export()) == len(after) + 1)
    finally:
        srv.cleanup()


def test_forget_cli_with_pseudonymisation():
    srv = Server(args=["--pseudonymise"]).start()
    try:
        seed(srv, "walt-real", "anon-walt-42", 3)
        seed(srv, "vera-real", "anon-vera-43", 3)
        evs = srv.export()
        pseudo = [e["userId"] for e in evs if e.get("type") == "identify" and e["anonymousId"] == "anon-walt-42"][0]
        check(pseudo.startswith("p1_"))
        check(srv.stop() == 0)
        # While the server runs the CLI refuses (the log is locked); stopped, it works.
        r = subprocess.run([BINARY, "export-user", "walt-real", "--data-dir=" + srv.data_dir, "--pseudonymise"],
                           capture_output=True)
        check(r.returncode == 0 and len(r.stdout.splitlines()) == 5, r.stderr)
        r = subprocess.run([BINARY, "forget", "walt-real", "--data-dir=" + srv.data_dir, "--pseudonymise"],
                           capture_output=True)
        check(r.returncode == 0 and b"forgot 5 events" in r.stdout, r.stdout + r.stderr)
        blob = all_bytes(srv.data_dir)
        for needle in [b"walt-real", b"anon-walt-42", pseudo.encode()]:
            check(needle not in blob, "%r still on disk" % needle)
        check(b"anon-vera-43" in blob)
        srv.start()
        r = subprocess.run([BINARY, "forget", "vera-real", "--data-dir=" + srv.data_dir], capture_output=True)
        check(r.returncode != 0 and b"DELETE /v1/users" in r.stderr, r.stderr)
    finally:
        srv.cleanup()


run_all(globals())
