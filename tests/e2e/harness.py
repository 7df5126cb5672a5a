"""End-to-end harness: start the real sluice binary on 127.0.0.1 with an ephemeral port
and a temporary data dir, talk HTTP to it, stop or kill it, read its log back.

Each test file defines functions named test_*; run_all() runs them in order and prints
"<file>: N passed, N failed" last. Waiting is by polling with a deadline, never a fixed
sleep."""
import base64
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "asan", "sluice"))
WRITE_KEY, READ_KEY, ADMIN_KEY = "wk-test-write", "rk-test-read", "ak-test-admin"


class Server:
    def __init__(self, data_dir=None, args=(), keys=True, env=None, binary=None):
        self.binary = binary or BINARY
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="sluice-e2e-")
        self.args = list(args)
        self.keys = keys
        self.env = env
        self.proc = None
        self.port = None
        self.stderr_path = os.path.join(tempfile.gettempdir(), "sluice-e2e-%d.stderr" % os.getpid())

    def start(self, timeout=20):
        cmd = [self.binary, "serve", "--listen=127.0.0.1:0", "--data-dir=" + self.data_dir]
        if self.keys:
            cmd += ["--write-key=" + WRITE_KEY, "--read-key=" + READ_KEY, "--admin-key=" + ADMIN_KEY]
        cmd += self.args
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        if self.env:
            env.update(self.env)
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        deadline = time.time() + timeout
        self.banner = ""
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            self.banner += line
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            self.proc.kill()
            raise RuntimeError("server did not start: " + self.banner + self.log_text()[-2000:])
        # Read the rest of the banner (keys) without blocking forever.
        while "keys are kept" not in self.banner:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            self.banner += line
        wait_for(lambda: self.request("GET", "/healthz")[0] == 200, 10)
        return self

    def log_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, auth=WRITE_KEY):
        h = dict(headers or {})
        if auth is not None and "Authorization" not in h:
            h["Authorization"] = "Basic " + base64.b64encode((auth + ":").encode()).decode()
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            c.close()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()
        self.proc = None
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    def export(self, *extra):
        r = subprocess.run([BINARY, "export", "--data-dir=" + self.data_dir] + list(extra),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("export failed: " + r.stderr.decode())
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]

    def cleanup(self):
        if self.proc:
            self.kill()
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        try:
            os.unlink(self.stderr_path)
        except OSError:
            pass


def all_bytes(data_dir):
    """Every byte of every file below data_dir (for "no trace left" checks)."""
    out = b""
    for root, _, files in os.walk(data_dir):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out += fh.read()
    return out


def metric(srv, name):
    """The value of an unlabelled metric from /metrics (read key)."""
    st, _, data = srv.request("GET", "/metrics", headers={"Authorization": "Bearer " + READ_KEY})
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s missing" % name)


@contextlib.contextmanager
def tmpfs(size):
    """A fresh tmpfs of `size` (e.g. "2m") mounted for the block: its path. Needs root."""
    mnt = tempfile.mkdtemp(prefix="sluice-tmpfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", mnt], capture_output=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        raise AssertionError("cannot mount a tmpfs (needs root): %s" % r.stderr)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)


class Skip(Exception):
    """Raised by a test that cannot run here (not root, no loop device): run_all reports
    it as skipped with the reason, neither passed nor failed."""


@contextlib.contextmanager
def ext4_image(size_mib):
    """A fresh ext4 file system in a loop-mounted image file of size_mib MiB, mounted with
    errors=remount-ro for the block: yields (mount point, image path, /sys/fs/ext4/<dev>
    directory). Unmounted and removed afterwards, also when the block fails. Raises Skip
    when not root or when the machine has no loop device or ext4 tools."""
    if os.geteuid() != 0:
        raise Skip("needs root to mount a loop device")
    if not os.path.exists("/dev/loop-control") or not shutil.which("mkfs.ext4"):
        raise Skip("no loop device (/dev/loop-control) or no mkfs.ext4")
    work = tempfile.mkdtemp(prefix="sluice-ext4-")
    img, mnt = os.path.join(work, "fs.img"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    mounted = False
    try:
        with open(img, "wb") as f:
            f.truncate(size_mib << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True, capture_output=True)
        r = subprocess.run(["mount", "-o", "loop,errors=remount-ro", img, mnt], capture_output=True)
        if r.returncode != 0:
            raise Skip("cannot loop-mount an ext4 image: %s" % r.stderr.decode().strip())
        mounted = True
        dev = os.path.basename(subprocess.run(["findmnt", "-n", "-o", "SOURCE", mnt], check=True,
                                              capture_output=True).stdout.decode().strip())
        yield mnt, img, "/sys/fs/ext4/" + dev
    finally:
        if mounted or os.path.ismount(mnt):
            if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


class MixedLoad:
    """Clients sending single events (/v1/track), 20-event batches (/v1/batch) and pixels
    (/v1/p.gif) with unique messageIds, one thread per entry of kinds, until stop().
    acked: messageIds answered 2xx. batches: (ids, status) per answered batch. refused:
    (kind, status, retry-after header, body) per 503. errors: any other status, or a 2xx
    that is not a plain success. pad: bytes of padding per event (not pixels)."""

    def __init__(self, srv, kinds=("single", "single", "batch", "batch", "pixel"), pad=0):
        self.srv, self.kinds, self.pad = srv, kinds, pad
        self.acked, self.batches, self.refused, self.errors = [], [], [], []
        self.answers = 0
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in self.kinds]
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _send(self, conn, kind):
        auth = {"Authorization": "Basic " + base64.b64encode((WRITE_KEY + ":").encode()).decode(),
                "Content-Type": "application/json"}
        props = {"pad": "x" * self.pad} if self.pad else {}
        if kind == "single":
            ids = ["s-" + uuid.uuid4().hex]
            conn.request("POST", "/v1/track", json.dumps({"event": "e", "userId": "u", "messageId": ids[0],
                                                          "properties": props}), auth)
        elif kind == "batch":
            ids = ["b-" + uuid.uuid4().hex for _ in range(20)]
            body = {"batch": [{"type": "track", "event": "e", "userId": "u%d" % i, "messageId": m,
                               "properties": dict(props, n=i)} for i, m in enumerate(ids)]}
            conn.request("POST", "/v1/batch", json.dumps(body), auth)
        else:
            ids = ["p-" + uuid.uuid4().hex]
            conn.request("GET", "/v1/p.gif?writeKey=%s&userId=u&messageId=%s" % (WRITE_KEY, ids[0]))
        return ids

    def _run(self, kind):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
                ids = self._send(conn, kind)
                r = conn.getresponse()
                data = r.read()
                self.answers += 1
                if kind == "batch":
                    self.batches.append((ids, r.status))
                if 200 <= r.status < 300:
                    if kind != "pixel" and json.loads(data) != {"success": True}:
                        self.errors.append((kind, r.status, data))
                    self.acked.extend(ids)
                elif r.status == 503:
                    self.refused.append((kind, r.status, r.getheader("Retry-After"), data))
                else:
                    self.errors.append((kind, r.status, data))
            except Exception:
                conn = None
                if self._stop.is_set():
                    break
                time.sleep(0.005)


def audit(acked, exported_ids):
    """Every acknowledged messageId in the export exactly once: (lost, duplicated)."""
    counts = {}
    for m in exported_ids:
        counts[m] = counts.get(m, 0) + 1
    lost = [m for m in acked if m not in counts]
    dup = [m for m, c in counts.items() if c > 1]
    return lost, dup


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    """The resident set size of process pid, in KiB (/proc)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for(cond, timeout, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return True
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise AssertionError("condition not met within %.1fs" % timeout)


def raw(port, data, timeout=5, read_until_close=True):
    """Send raw bytes, return everything the server answers until it closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


def query(srv, body, key=READ_KEY):
    """POST body (a dict) to /v1/query with key; returns (status, decoded answer)."""
    st, _, data = srv.request("POST", "/v1/query", json.dumps(body).encode(),
                              headers={"Authorization": "Bearer " + key,
                                       "Content-Type": "application/json"}, auth=None)
    return st, json.loads(data)


def query_ok(srv, body):
    """query() that must answer 200; returns the answer."""
    st, r = query(srv, body)
    check(st == 200, (st, r))
    return r


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def send_events(srv, events):
    """Send (path, event) pairs with the write key; each must get 200."""
    for path, ev in events:
        st, _, data = srv.request("POST", path, ev)
        check(st == 200, (st, data))


def run_all(module_globals):
    name = os.path.basename(module_globals["__file__"]).replace(".py", "")
    tests = [(k, v) for k, v in module_globals.items() if k.startswith("test_") and callable(v)]
    only = os.environ.get("ONLY")
    passed = failed = 0
    for tname, fn in tests:
        if only and only not in tname:
            continue
        t0 = time.time()
        try:
            fn()
            passed += 1
            print("ok   %s (%.1fs)" % (tname, time.time() - t0))
        except Skip as why:
            print("skip %s: %s" % (tname, why))
        except Exception:
            failed += 1
            print("FAIL %s" % tname)
            for line in traceback.format_exc().splitlines():
                print("  " + line)
        sys.stdout.flush()
    print("%s: %d passed, %d failed" % (name, passed, failed))
    sys.exit(1 if failed else 0)
