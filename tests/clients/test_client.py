"""The Python client (clients/python) against a real flingd: python3 test_client.py FLINGD_PATH.

Prints "N passed, M failed" and exits 0 only if nothing failed."""

import asyncio
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import fling  # noqa: E402

TOKEN = "client-t0ken"   # as in flingd.conf
SECRET = "s3cret-client"
FIRE_COUNT = 500

if len(sys.argv) > 1 and sys.argv[1] == "--fire":
    # The child that fires and exits at once: test_client.py --fire URL TOKEN COUNT
    c = fling.Client(sys.argv[2], sys.argv[3])
    for i in range(int(sys.argv[4])):
        if not c.fire("f", "job %d" % i):
            sys.exit("fire %d: %s" % (i, c.last_error))
    sys.exit(0)

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)


def raised(fn, *args, **kwargs):
    """The FlingError fn raises, or None."""
    try:
        fn(*args, **kwargs)
    except fling.FlingError as e:
        return e
    return None


def eventually(fn, secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.05)
    return bool(fn())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_jobs(c, job_type):
    n, after = 0, None
    for _ in range(100):
        page = c.jobs(type=job_type, limit=1000, after=after)
        n += len(page["jobs"])
        after = page["next"]
        if after is None:
            break
    return n


class Receiver(http.server.ThreadingHTTPServer):
    """Takes flingd's callback POSTs on 127.0.0.1:0 and checks each signature as it arrives."""

    def __init__(self):
        self.got = []
        self.cond = threading.Condition()
        super().__init__(("127.0.0.1", 0), ReceiverHandler)


class ReceiverHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sig = self.headers.get("Fling-Signature")
        verified = (fling.verify_signature(body, sig, SECRET) and not fling.verify_signature(body + b" ", sig, SECRET)
                    and not fling.verify_signature(body, sig, "other") and not fling.verify_signature(body, None, SECRET)
                    and json.loads(body)["id"] == self.headers.get("Fling-Job-Id"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with self.server.cond:
            self.server.got.append((self.path, self.headers.get("Fling-Job-Id"), verified))
            self.server.cond.notify_all()

    def log_message(self, *args):
        pass


def start_flingd(flingd, d, conf):
    with open(os.path.join(d, "flingd.conf"), "w") as f:
        f.write(conf)
    ready = os.path.join(d, "ready.json")
    cmd = [flingd, "-c", os.path.join(d, "flingd.conf"), "--ready-file", ready]
    if os.geteuid() == 0:
        cmd.append("--allow-root")   # CI runs as root
    log = open(os.path.join(d, "flingd.log"), "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    end = time.monotonic() + 20
    while time.monotonic() < end and proc.poll() is None:
        try:
            with open(ready) as f:
                info = json.load(f)
            if info["pid"] == proc.pid:
                return proc, "http://127.0.0.1:%d" % info["port"]
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    sys.exit("flingd did not start:\n" + open(os.path.join(d, "flingd.log")).read())


def stop_flingd(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -1


def run(flingd, d, receiver):
    rport = receiver.server_address[1]
    sock = os.path.join(d, "fling.sock")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "flingd.conf")) as f:
        conf = f.read().replace("@DIR@", d).replace("@RPORT@", str(rport))
    proc, url = start_flingd(flingd, d, conf)
    try:
        checks(url, sock, rport, receiver)
    finally:
        check(stop_flingd(proc) == 0, "flingd stopped cleanly")
    if failed:
        print("flingd log:\n" + open(os.path.join(d, "flingd.log")).read())


def checks(url, sock, rport, receiver):
    c = fling.Client(url, TOKEN)

    # A dead daemon: fire() returns False with a reason; submit() raises connect_failed.
    dead = fling.Client("http://127.0.0.1:%d" % free_port(), TOKEN, connect_timeout=1.0)
    check(dead.fire("n", "x") is False and dead.last_error, "fire() at a dead daemon returns False (%s)" % dead.last_error)
    e = raised(dead.submit, "n", "x")
    check(e is not None and e.code == "connect_failed" and e.status == 0, "submit() at a dead daemon raises connect_failed")

    # Fire-and-forget from a process that exits right after: every job is enqueued.
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--fire", url, TOKEN, str(FIRE_COUNT)],
                           stdin=subprocess.DEVNULL, timeout=60)
    check(child.returncode == 0, "a child fired %d jobs and exited" % FIRE_COUNT)
    check(eventually(lambda: count_jobs(c, "f") >= FIRE_COUNT, 20) and count_jobs(c, "f") == FIRE_COUNT,
          "all %d fired jobs are enqueued (counted through GET /v1/jobs pages)" % FIRE_COUNT)

    # submit, status, cancel.
    jid = c.submit("t", "60")
    job = c.status(jid)
    check(job["id"] == jid and job["state"] in ("queued", "running") and job["type"] == "t",
          "submit() returned id %s, status() shows it" % jid)
    check(c.cancel(int(jid))["id"] == jid, "cancel() returns the job")
    check(eventually(lambda: c.status(jid)["state"] == "cancelled", 10), "the cancelled job ends cancelled")
    e = raised(c.cancel, jid)
    check(e is not None and e.code == "not_cancellable" and e.status == 409, "cancelling it again: 409 not_cancellable")
    e = raised(c.status, "999999")
    check(e is not None and e.code == "not_found" and e.status == 404, "status() of no job: 404 not_found")

    # retry: a failed job is queued again; a waiting or running one, or no job, is refused.
    fid = c.submit("fail", "x")
    check(eventually(lambda: c.status(fid)["state"] == "failed", 10), "a job whose command fails ends failed")
    job = c.retry(fid)
    check(job["id"] == fid and job["state"] in ("queued", "running") and job["retried"] == 1,
          "retry() returns the job queued again with retried 1")
    check(eventually(lambda: c.status(fid)["state"] == "failed", 10) and c.status(fid)["retried"] == 1,
          "the retried job ran again (and failed again)")
    rid = c.submit("t", "60")
    e = raised(c.retry, rid)
    check(e is not None and e.code == "not_retryable" and e.status == 409, "retry() of a waiting job: 409 not_retryable")
    c.cancel(rid)
    e = raised(c.retry, "999999")
    check(e is not None and e.code == "not_found" and e.status == 404, "retry() of no job: 404 not_found")

    # Options as keyword arguments reach the daemon.
    jid = c.submit("t", b"1", delay=60, priority=7, attempts=2, timeout=5.5, key="py-key-1")
    job = c.status(jid)
    check(job["state"] == "scheduled" and job["priority"] == 7 and job["max_attempts"] == 2,
          "delay, priority and attempts are applied")
    check(c.submit("t", "1", key="py-key-1") == jid, "a repeated idempotency key returns the first job")
    c.cancel(jid)
    jid = c.submit("t", "0.3", wait=10)
    check(c.status(jid)["state"] == "succeeded", "wait: submit() returns once the job ended")
    jid = c.submit("n", {"to": "ann"})
    check(eventually(lambda: c.status(jid)["state"] == "succeeded", 10), "a dict payload is accepted (sent as JSON)")

    # Refusals and their codes.
    e = raised(c.submit, "nope", "x")
    check(e is not None and e.code == "unknown_type" and e.status == 404, "an unknown type: 404 unknown_type")
    e = raised(c.submit, "n", "x", callback="http://127.0.0.1:1/elsewhere")
    check(e is not None and e.code == "callback_not_allowed" and e.status == 400,
          "a callback outside the allow list: 400 callback_not_allowed")
    bad = 0
    for fn in (lambda: c.fire("n", "x", prio=1), lambda: c.fire("n", "x", wait=3), lambda: c.submit("no/such", "x"),
               lambda: c.submit("n", "x", attempts=0), lambda: c.submit("n", "x", key="a\r\nX: y")):
        try:
            fn()
        except (ValueError, TypeError):
            bad += 1
    check(bad == 5, "bad options and names are refused before anything is sent")

    # The token.
    e = raised(fling.Client(url).submit, "n", "x")
    check(e is not None and e.code == "unauthorized" and e.status == 401, "without the token: 401 unauthorized")
    e = raised(fling.Client(url, "wrong").status, jid)
    check(e is not None and e.code == "unauthorized", "with a wrong token: 401 unauthorized")

    # The kept connection, closed by the daemon while idle (idle_timeout 1 s), is replaced.
    c.status(jid)
    time.sleep(2)
    check(c.status(jid)["id"] == jid, "a call after the daemon closed the idle kept connection succeeds")

    # One client shared by 8 threads: every submit gets its own id, none fails.
    ids, errors = [], []

    def worker():
        for _ in range(25):
            try:
                ids.append(c.submit("n", "threaded"))
            except fling.FlingError as err:
                errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors and len(set(ids)) == 200, "8 threads on one Client: 200 submits, 200 ids (%d errors)" % len(errors))

    # The Unix socket.
    u = fling.Client("unix:" + sock, TOKEN)
    uid = u.submit("n", "over unix")
    check(u.status(uid)["type"] == "n" and u.fire("n", "fired over unix"), "submit, status and fire over unix:" + sock)

    # asyncio: fire, submit, status, cancel, errors, over TCP and the Unix socket.
    async def async_checks():
        async with fling.AsyncClient(url, TOKEN) as a, fling.AsyncClient("unix:" + sock, TOKEN) as au:
            fired = await asyncio.gather(*(a.fire("n", "async %d" % i) for i in range(20)))
            ids = await asyncio.gather(*(au.submit("n", "async") for _ in range(20)))
            job = await a.status(ids[0])
            sid = await a.submit("t", "60")
            cancelled = await a.cancel(sid)
            err = None
            try:
                await a.submit("nope", "x")
            except fling.FlingError as ex:
                err = ex
            dead_fire = await fling.AsyncClient("http://127.0.0.1:%d" % free_port(), connect_timeout=1.0).fire("n", "x")
            return all(fired) and len(set(ids)) == 20 and job["id"] == ids[0] and cancelled["id"] == sid \
                and err is not None and err.code == "unknown_type" and err.status == 404 and dead_fire is False

    check(asyncio.run(async_checks()), "AsyncClient: fire, submit (TCP and unix), status, cancel, unknown_type")

    # Signed callbacks: the type's on_complete and the job's Fling-Callback, verified on arrival.
    hook = c.submit("hook", '{"a":1}')
    cb = c.submit("n", "x", callback="http://127.0.0.1:%d/cb" % rport)
    with receiver.cond:
        receiver.cond.wait_for(lambda: len(receiver.got) >= 2, 20)
        got = list(receiver.got)
    check(len(got) == 2 and all(v for _, _, v in got),
          "both callbacks carry a signature that verify_signature accepts (and a changed body fails)")
    paths = {jid: path for path, jid, _ in got}
    check(paths.get(hook) == "/done" and paths.get(cb) == "/cb", "on_complete and Fling-Callback each reached their path")
    check(eventually(lambda: (c.status(hook).get("callbacks") or [{}])[0].get("state") == "delivered", 10),
          "the daemon recorded the delivery")
    c.close()


def main():
    d = tempfile.mkdtemp(prefix="flingtest.py.")
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        run(sys.argv[1], d, receiver)
    finally:
        receiver.shutdown()
        shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
