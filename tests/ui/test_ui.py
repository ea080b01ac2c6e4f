#!/usr/bin/env python3
"""test_ui.py — the dashboard (GET /ui) in a real headless Chromium, driven over the DevTools
protocol: it loads with no console error and no request to another host, its counts match
/v1/jobs, a job submitted meanwhile appears without a reload, its cancel button cancels, a
failed job's page shows its payload (text, or a hex dump for binary) and its retry button queues
it again, a type's pause/resume button pauses and resumes it, and with a token the page works after the token is entered and shows only the sign-in without.
Screenshots of the overview and of a job's page go to OUT_DIR.

usage: test_ui.py FLINGD OUT_DIR   (run by tests/ui/run under ctest)
"""
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import websockets

FLINGD, OUT_DIR = sys.argv[1], sys.argv[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STATES = ["queued", "scheduled", "running", "succeeded", "failed", "cancelled"]


class Daemon:
    """A flingd in a temp dir on a free 127.0.0.1 port (from its ready file)."""

    def __init__(self, token=None):
        self.dir = tempfile.mkdtemp(prefix="flingui.")
        self.token = token
        conf = os.path.join(self.dir, "flingd.conf")
        with open(conf, "w") as f:
            f.write("[server]\nlisten = 127.0.0.1:0\n")
            if token:
                f.write("token = %s\n" % token)
            f.write("[store]\npath = %s/fling.db\ndurability = normal\n" % self.dir)
            f.write("[workers]\nshutdown_grace = 0.5\n")
            f.write("[type.quick]\nhandler = noop\n[type.slow]\nhandler = sleep\n")
            f.write("[type.bad]\nhandler = exec\ncommand = /bin/false\nmax_attempts = 1\n")
        ready = os.path.join(self.dir, "ready.json")
        args = [FLINGD, "-c", conf, "--ready-file", ready]
        if os.geteuid() == 0:
            args.append("--allow-root")
        self.log = open(os.path.join(self.dir, "flingd.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(ready):
                try:
                    with open(ready) as f:
                        self.port = json.load(f)["port"]
                    break
                except (ValueError, KeyError):
                    pass
            time.sleep(0.05)
        else:
            raise RuntimeError("flingd did not become ready")
        self.url = "http://127.0.0.1:%d" % self.port

    def http(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def submit(self, type_, headers=None, payload=b"1"):
        status, body = self.http("POST", "/v1/jobs/" + type_, payload, headers)
        assert status == 202, (status, body)
        return body["id"]

    def job(self, job_id):
        status, body = self.http("GET", "/v1/jobs/" + job_id)
        assert status == 200, (status, body)
        return body

    def wait_state(self, job_id, state, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.job(job_id)["state"] == state:
                return
            time.sleep(0.05)
        raise AssertionError("job %s did not become %s: %s" % (job_id, state, self.job(job_id)))

    def paused(self, type_):
        status, body = self.http("GET", "/v1/types")
        assert status == 200, (status, body)
        return [t["paused"] for t in body["types"] if t["name"] == type_] == [True]

    def count(self, state):
        """How many jobs are in state, paging GET /v1/jobs."""
        n, after = 0, None
        while True:
            path = "/v1/jobs?limit=1000&state=" + state + ("&after=" + after if after else "")
            status, body = self.http("GET", path)
            assert status == 200, (status, body)
            n += len(body["jobs"])
            after = body["next"]
            if not after:
                return n

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Browser:
    """Chromium headless on a DevTools port read from DevToolsActivePort, one page."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="flingui-chrome.")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", "--user-data-dir=" + self.profile, "--window-size=1280,900",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(active) and open(active).read().count("\n") >= 1:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("chromium did not open its DevTools port")
        self.port = int(open(active).read().split("\n")[0])

    def page_ws(self):
        for _ in range(100):
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % self.port, timeout=5) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise RuntimeError("no page target")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One DevTools session: commands by id, events recorded."""

    def __init__(self, ws):
        self.ws, self.next_id, self.pending = ws, 0, {}
        self.console_errors, self.requests, self.log_errors = [], [], []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        async for raw in self.ws:
            m = json.loads(raw)
            if "id" in m:
                fut = self.pending.pop(m["id"], None)
                if fut and not fut.done():
                    fut.set_result(m)
                continue
            method, p = m.get("method"), m.get("params", {})
            if method == "Runtime.exceptionThrown":
                self.console_errors.append(p["exceptionDetails"].get("text", "") + " " +
                                           json.dumps(p["exceptionDetails"].get("exception", {}).get("description")))
            elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                self.console_errors.append(json.dumps(p["args"]))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                self.log_errors.append(p["entry"].get("url", "") + " " + p["entry"]["text"])
            elif method == "Network.requestWillBeSent":
                self.requests.append(p["request"]["url"])

    async def send(self, method, **params):
        self.next_id += 1
        fut = asyncio.get_event_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        m = await asyncio.wait_for(fut, 30)
        if "error" in m:
            raise RuntimeError("%s: %s" % (method, m["error"]))
        return m["result"]

    async def eval(self, expr):
        r = await self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("eval %s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    async def wait_for(self, expr, what, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = await self.eval(expr)
            if v:
                return v
            await asyncio.sleep(0.1)
        raise AssertionError("timed out waiting for " + what)

    async def goto(self, url):
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", "the page to load")

    async def screenshot(self, name):
        r = await self.send("Page.captureScreenshot", format="png")
        os.makedirs(OUT_DIR, exist_ok=True)
        path = os.path.join(OUT_DIR, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        print("screenshot:", path)


def counts_js():
    return "JSON.stringify(Object.fromEntries(%s.map(s => [s, (document.getElementById('count-' + s) || {}).textContent])))" % json.dumps(STATES)


async def overview_and_job(browser):
    d = Daemon()
    try:
        for _ in range(3):
            d.submit("quick")
        slow = [d.submit("slow", {"Fling-Delay": "600"}) for _ in range(2)]
        async with websockets.connect(browser.page_ws(), max_size=None) as ws:
            page = Page(ws)
            for domain in ("Runtime", "Log", "Network", "Page"):
                await page.send(domain + ".enable")
            await page.goto(d.url + "/ui")
            await page.wait_for("document.getElementById('live').textContent === 'live'", "the event stream")
            await page.wait_for("document.querySelectorAll('#jobs tbody tr[data-id]').length === 5", "the job list")
            # the quick jobs have run: the page's counts are those of /v1/jobs
            await page.wait_for("document.getElementById('count-succeeded').textContent === '3'", "the counts")
            shown = json.loads(await page.eval(counts_js()))
            for s in STATES:
                assert int(shown[s]) == d.count(s), (s, shown[s], d.count(s))
            # a job submitted now appears without a reload
            fresh = d.submit("slow", {"Fling-Delay": "600"})
            await page.wait_for("!!document.querySelector('#jobs tbody tr[data-id=\"%s\"]')" % fresh, "the new job")
            await page.wait_for("document.getElementById('count-scheduled').textContent === '3'", "live counts")
            await page.eval("window.scrollTo(0, 0)")
            await page.screenshot("ui-overview.png")
            # a phone's width: nothing wider than the screen but the tables' own scrollers
            await page.send("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
            await asyncio.sleep(0.3)
            assert await page.eval("document.documentElement.scrollWidth <= 390"), "the page is wider than a phone"
            await page.screenshot("ui-overview-phone.png")
            await page.send("Emulation.clearDeviceMetricsOverride")
            # a job's page, and its cancel button
            await page.eval("document.querySelector('#jobs tbody tr[data-id=\"%s\"]').click()" % slow[0])
            await page.wait_for("document.getElementById('j-state').textContent === 'scheduled'", "the job page")
            assert await page.eval("document.getElementById('j-status').textContent.includes('no status bits')")
            await page.wait_for("document.getElementById('j-payload').textContent === '1'", "the payload")
            assert await page.eval("document.getElementById('retry').hidden"), "retry offered on a waiting job"
            await page.screenshot("ui-job.png")
            await page.eval("document.getElementById('cancel').click()")
            await page.wait_for("document.getElementById('j-state').textContent === 'cancelled'", "the cancel")
            status, job = d.http("GET", "/v1/jobs/" + slow[0])
            assert status == 200 and job["state"] == "cancelled", job
            assert await page.eval("document.getElementById('cancel').hidden"), "cancel offered on an ended job"
            await retry_and_pause(page, d)
            # nothing but flingd was asked for, and nothing went wrong in the page
            foreign = [u for u in page.requests if not u.startswith(d.url + "/") and not u.startswith("data:")]
            assert not foreign, foreign
            assert not page.console_errors, page.console_errors
            assert not page.log_errors, page.log_errors
            page.reader.cancel()
    finally:
        d.stop()


def pause_button(type_):
    return "document.querySelector('#types tbody tr[data-type=\"%s\"] button.pause')" % type_


async def retry_and_pause(page, d):
    """A failed job's payload and retry button, and a type's pause/resume button. The type is
    paused while the job is retried so that it stays queued where the page can see it."""
    failed = d.submit("bad", payload=b"hello\tfling\n")
    binary = d.submit("bad", payload=b"\x00\x01\xfe\xffbin")
    big = d.submit("bad", payload=b"a" * 70000)
    d.wait_state(failed, "failed")
    d.wait_state(binary, "failed")
    await page.eval("location.hash = '#/'")
    await page.wait_for("(%s || {}).textContent === 'Pause'" % pause_button("bad"), "the pause button")
    await page.eval(pause_button("bad") + ".click()")
    await page.wait_for("(%s || {}).textContent === 'Resume'" % pause_button("bad"), "the resume button")
    assert await page.eval("document.querySelector('#types tbody tr[data-type=\"bad\"] .paused-mark') !== null")
    assert d.paused("bad"), "GET /v1/types does not show the type paused"
    await page.eval("location.hash = '#/job/%s'" % failed)
    await page.wait_for("document.getElementById('j-state').textContent === 'failed'", "the failed job's page")
    await page.wait_for("document.getElementById('j-payload').textContent === 'hello\\tfling\\n'", "the payload text")
    assert await page.eval("document.getElementById('j-payload-note').textContent.includes('as text')")
    assert await page.eval("document.getElementById('cancel').hidden && !document.getElementById('retry').hidden")
    await page.eval("document.getElementById('retry').click()")
    await page.wait_for("document.getElementById('j-state').textContent === 'queued'", "the retry")
    job = d.job(failed)
    assert job["state"] == "queued" and job["retried"] == 1, job
    assert await page.eval("document.getElementById('retry').hidden"), "retry offered on a queued job"
    await page.eval("location.hash = '#/job/%s'" % binary)
    await page.wait_for("document.getElementById('j-payload').textContent.startsWith('00000000  00 01 fe ff 62 69 6e')",
                        "the payload's hex dump")
    assert await page.eval("document.getElementById('j-payload-note').textContent.includes('hex dump')")
    await page.eval("location.hash = '#/job/%s'" % big)
    await page.wait_for("document.getElementById('j-payload-note').textContent.includes('first 65536 bytes of 70000')",
                        "the note on a cut payload")
    assert await page.eval("document.getElementById('j-payload').textContent === 'a'.repeat(65536)")
    await page.eval("location.hash = '#/'")
    await page.wait_for("(%s || {}).textContent === 'Resume'" % pause_button("bad"), "the resume button")
    await page.eval(pause_button("bad") + ".click()")
    await page.wait_for("(%s || {}).textContent === 'Pause'" % pause_button("bad"), "the pause button again")
    assert not d.paused("bad"), "GET /v1/types still shows the type paused"
    d.wait_state(failed, "failed")   # resumed: the retried job ran (and failed) again
    assert d.job(failed)["retried"] == 1


async def with_token(browser):
    d = Daemon(token="s3cret-token")
    try:
        d.submit("quick")
        async with websockets.connect(browser.page_ws(), max_size=None) as ws:
            page = Page(ws)
            for domain in ("Runtime", "Log", "Network", "Page"):
                await page.send(domain + ".enable")
            await page.send("Runtime.evaluate", expression="sessionStorage.clear()")
            await page.goto(d.url + "/ui#/")
            # without the token: the sign-in form alone, no data, no script error
            await page.wait_for("!document.getElementById('login').hidden", "the sign-in form")
            assert await page.eval("document.getElementById('overview').hidden && document.getElementById('job').hidden")
            assert await page.eval("document.querySelectorAll('#jobs tbody tr[data-id]').length === 0")
            assert not page.console_errors, page.console_errors
            # a wrong token is refused and asked for again
            await page.eval("document.getElementById('token').value = 'wrong'; "
                            "document.getElementById('login-form').requestSubmit(); true")
            await page.wait_for("document.getElementById('login-msg').textContent.includes('refused')", "a refusal")
            await page.eval("document.getElementById('token').value = 's3cret-token'; "
                            "document.getElementById('login-form').requestSubmit(); true")
            await page.wait_for("document.querySelectorAll('#jobs tbody tr[data-id]').length === 1", "the job list")
            await page.wait_for("document.getElementById('live').textContent === 'live'", "the event stream")
            fresh = d.submit("quick")
            await page.wait_for("!!document.querySelector('#jobs tbody tr[data-id=\"%s\"]')" % fresh, "the new job")
            # the token went in a header, never in a URL
            assert not [u for u in page.requests if "s3cret" in u], page.requests
            assert not page.console_errors, page.console_errors
            page.reader.cancel()
    finally:
        d.stop()


async def main():
    browser = Browser()
    try:
        await overview_and_job(browser)
        print("ok: overview, live job, counts, job page, cancel, payload, retry, pause/resume")
        await with_token(browser)
        print("ok: token")
    finally:
        browser.stop()


if __name__ == "__main__":
    if not CHROMIUM:
        print("chromium is not installed (scripts/install-deps --test)")
        sys.exit(77)
    asyncio.run(asyncio.wait_for(main(), 120))
