"""fling: the Python client of flingd. Standard library only, Python 3.9+.

Client.fire() is the fire-and-forget trigger: a fresh connection (connect timeout), the whole
request handed to the kernel, a normal close, never a read. It returns False (and sets
last_error) when the daemon cannot be reached; it never raises for that. submit(), status(),
cancel(), retry() and jobs() share one kept-alive connection, guarded by a lock so that threads can
share a Client, and raise FlingError with the daemon's error code.

A kept connection may have been closed by the daemon while idle. That is only safe to find out
before a request leaves, so an idle connection that reads as closed is replaced, and so is one
that took none of the request; once any byte was sent a request is never sent again (the
daemon may have enqueued it, and a resend would enqueue it twice).

AsyncClient has the same methods as coroutines, for asyncio programs.
"""

import asyncio
import hashlib
import hmac
import json
import re
import select
import socket
import threading
import time
import urllib.parse

__all__ = ["Client", "AsyncClient", "FlingError", "verify_signature"]

_URL_TCP = re.compile(r"http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?\Z")
_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_ID = re.compile(r"[1-9][0-9]{0,18}\Z")
_VISIBLE = re.compile(r"[\x21-\x7e]+\Z")
_OPTIONS = ("timeout", "delay", "priority", "attempts", "key", "callback", "wait", "on_disconnect")


class FlingError(Exception):
    """A request flingd refused, or one that could not be exchanged.

    code is the daemon's error code ("unknown_type", "unauthorized", "not_cancellable", ...)
    or, when no reply came, one of connect_failed, send_failed, recv_failed, timeout,
    bad_reply. status is the HTTP status (0 when there was no reply)."""

    def __init__(self, code, message, status=0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def verify_signature(body, header, secret):
    """True if header (Fling-Signature) is "sha256=<hex HMAC-SHA256 of body keyed with secret>".

    body is the raw request body (bytes or str); the comparison is constant-time."""
    if header is None or not secret:
        return False
    if isinstance(body, str):
        body = body.encode()
    if isinstance(secret, str):
        secret = secret.encode()
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def _seconds(v, name, top, zero_ok):
    """Seconds as the daemon reads them: plain decimal digits, no exponent, no sign."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v <= top) or (not zero_ok and v <= 0):
        raise ValueError("fling: %s must be a number of seconds %s and at most %d" % (name, ">= 0" if zero_ok else "> 0", top))
    return ("%.3f" % v).rstrip("0").rstrip(".")


def _integer(v, name, low, high):
    if isinstance(v, bool) or not isinstance(v, int) or not (low <= v <= high):
        raise ValueError("fling: %s must be an integer from %d to %d" % (name, low, high))
    return str(v)


def _visible(v, name, top):
    if not isinstance(v, str) or not _VISIBLE.match(v) or len(v) > top:
        raise ValueError("fling: %s must be 1 to %d visible ASCII characters" % (name, top))
    return v


def _option_headers(opts):
    """The option headers of a submit, each value checked as the daemon would."""
    for name in opts:
        if name not in _OPTIONS:
            raise TypeError("fling: unknown option %r" % name)
    o = {k: v for k, v in opts.items() if v is not None}
    h = []
    if "timeout" in o:
        h.append("Fling-Timeout: " + _seconds(o["timeout"], "timeout", 7 * 86400, False))
    if "delay" in o:
        h.append("Fling-Delay: " + _seconds(o["delay"], "delay", 366 * 86400, True))
    if "priority" in o:
        h.append("Fling-Priority: " + _integer(o["priority"], "priority", -(2**31), 2**31 - 1))
    if "attempts" in o:
        h.append("Fling-Max-Attempts: " + _integer(o["attempts"], "attempts", 1, 1000))
    if "key" in o:
        h.append("Idempotency-Key: " + _visible(o["key"], "key", 255))
    if "callback" in o:
        url = _visible(o["callback"], "callback", 2048)
        if not re.match(r"https?://.", url):
            raise ValueError("fling: callback must be an http:// or https:// URL")
        h.append("Fling-Callback: " + url)
    if "wait" in o:
        h.append("Prefer: wait=" + _integer(o["wait"], "wait", 1, 3600))
    if "on_disconnect" in o:
        if o["on_disconnect"] not in ("cancel", "continue"):
            raise ValueError('fling: on_disconnect must be "cancel" or "continue"')
        h.append("Fling-On-Disconnect: " + o["on_disconnect"])
    return h


def _job_path(job_id):
    job_id = str(job_id)
    if not _ID.match(job_id):
        raise ValueError("fling: %r is not a job id" % job_id)
    return "/v1/jobs/" + job_id


def _parse_head(head):
    """(status, content length, keep-alive) of a reply head (bytes, without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
    if not m:
        raise FlingError("bad_reply", "fling: the reply is not HTTP/1.1")
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length" and value.isdigit():
            length = int(value)
        elif name == "connection" and value.lower() == "close":
            keep = False
    return int(m.group(1)), length, keep


def _decode(status, body):
    """The JSON of a 2xx reply, or FlingError with the daemon's code."""
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if 200 <= status < 300:
        if not isinstance(obj, dict):
            raise FlingError("bad_reply", "fling: a %d reply without a JSON body" % status, status)
        return obj
    obj = obj if isinstance(obj, dict) else {}
    code = obj.get("error") if isinstance(obj.get("error"), str) else "http_%d" % status
    msg = obj.get("message") if isinstance(obj.get("message"), str) else "HTTP %d" % status
    raise FlingError(code, "fling: %s: %s" % (code, msg), status)


def _submit_id(reply):
    if not isinstance(reply.get("id"), str):
        raise FlingError("bad_reply", "fling: the reply to a submit has no job id")
    return reply["id"]


class _Base:
    """What both clients share: the address, the token, and the requests as bytes."""

    def __init__(self, url="http://127.0.0.1:7878", token=None, connect_timeout=3.0, io_timeout=10.0):
        m = _URL_TCP.match(url)
        if url.startswith("unix:/"):
            self._unix, self._tcp, self._host = url[5:], None, "localhost"
        elif m:
            self._unix, self._tcp, self._host = None, (m.group(1).strip("[]"), int(m.group(2))), m.group(1) + ":" + m.group(2)
        else:
            raise ValueError("fling: URL must be http://host:port or unix:/path, not %r" % url)
        if token is not None and not _VISIBLE.match(token):
            raise ValueError("fling: the token must be visible ASCII")
        self._token = token
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout

    def _request(self, method, path, headers=(), body=b""):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self._host)
        if self._token is not None:
            head += "Authorization: Bearer %s\r\n" % self._token
        for h in headers:
            head += h + "\r\n"
        head += "Content-Length: %d\r\n\r\n" % len(body)
        return head.encode("latin-1") + body

    def _submit_request(self, job_type, payload, opts, keep_alive):
        if not isinstance(job_type, str) or not _TYPE.match(job_type):
            raise ValueError("fling: %r is not a job type name (1-64 of A-Z a-z 0-9 _ . -)" % (job_type,))
        headers = _option_headers(opts)
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, (bytes, bytearray, memoryview)):
            payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            headers.append("Content-Type: application/json")
        if not keep_alive:
            headers.append("Connection: close")
        return self._request("POST", "/v1/jobs/" + job_type, headers, bytes(payload))

    def _fire_request(self, job_type, payload, opts):
        if opts.get("wait") is not None or opts.get("on_disconnect") is not None:
            raise ValueError("fling: wait and on_disconnect need submit(), which reads the reply")
        return self._submit_request(job_type, payload, opts, False)

    def _io_budget(self, opts):
        return self._io_timeout + (opts.get("wait") or 0)

    @staticmethod
    def _jobs_path(state, type, limit, after):
        q = {k: v for k, v in (("state", state), ("type", type), ("limit", limit), ("after", after)) if v is not None}
        return "/v1/jobs" + ("?" + urllib.parse.urlencode(q) if q else "")

    def _where(self):
        return "unix:" + self._unix if self._unix else "%s:%d" % self._tcp


class Client(_Base):
    """Client(url="http://127.0.0.1:7878", token=None, connect_timeout=3.0, io_timeout=10.0).

    url is "http://host:port" or "unix:/path/to/flingd.sock". Safe to share between threads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._sock = None
        self._local = threading.local()

    @property
    def last_error(self):
        """Why this thread's last fire() returned False (None after one that succeeded)."""
        return getattr(self._local, "error", None)

    def fire(self, job_type, payload=b"", **opts):
        """Sends one job and hangs up without reading the reply: True once every byte of the
        request was handed to the kernel, else False with the reason in last_error."""
        req = self._fire_request(job_type, payload, opts)
        self._local.error = None
        try:
            sock = self._connect()
        except FlingError as e:
            self._local.error = e.message
            return False
        try:
            sock.sendall(req)
            return True
        except OSError as e:
            self._local.error = "fling: send to %s: %s" % (self._where(), e)
            return False
        finally:
            sock.close()

    def submit(self, job_type, payload=b"", **opts):
        """Sends one job, waits for its acknowledgement and returns the job id. With wait=N
        the call returns once the job ended, or after N seconds."""
        return _submit_id(self._exchange(self._submit_request(job_type, payload, opts, True), self._io_budget(opts)))

    def status(self, job_id):
        """The job as GET /v1/jobs/{id} shows it."""
        return self._exchange(self._request("GET", _job_path(job_id)))

    def cancel(self, job_id):
        """Cancels a waiting job or stops a running one; returns the job."""
        return self._exchange(self._request("DELETE", _job_path(job_id)))

    def retry(self, job_id):
        """Queues a failed or cancelled job again (its history stays: "retried" counts);
        returns the job. FlingError not_retryable for any other state."""
        return self._exchange(self._request("POST", _job_path(job_id) + "/retry"))

    def jobs(self, state=None, type=None, limit=None, after=None):
        """One page of jobs, newest first: {"jobs": [...], "next": cursor or None}."""
        return self._exchange(self._request("GET", self._jobs_path(state, type, limit, after)))

    def close(self):
        """Closes the kept-alive connection (the next call opens a new one)."""
        with self._lock:
            self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _connect(self):
        try:
            if self._unix:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self._connect_timeout)
                try:
                    sock.connect(self._unix)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(self._tcp, timeout=self._connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            raise FlingError("connect_failed", "fling: connect to %s: %s" % (self._where(), e)) from None
        return sock

    def _drop(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _exchange(self, req, io_timeout=None):
        with self._lock:
            for attempt in range(2):
                reused = self._sock is not None
                if reused and select.select([self._sock], [], [], 0)[0]:
                    self._drop()   # an idle kept connection that reads: the daemon closed it
                    reused = False
                if self._sock is None:
                    self._sock = self._connect()
                deadline = time.monotonic() + (io_timeout or self._io_timeout)
                sent, send_error = self._send(req, deadline)
                if sent == 0 and reused and attempt == 0:
                    self._drop()   # the kernel took nothing: the daemon cannot have it
                    continue
                try:
                    status, body, keep = self._read_reply(deadline)
                except FlingError:
                    self._drop()
                    if send_error:
                        raise FlingError("send_failed", "fling: send to %s: %s" % (self._where(), send_error)) from None
                    raise
                if not keep or send_error:
                    self._drop()
                return _decode(status, body)

    def _send(self, req, deadline):
        """(bytes the kernel took, the error that stopped it or None)."""
        view, sent = memoryview(req), 0
        while sent < len(req):
            try:
                self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sent += self._sock.send(view[sent:])
            except OSError as e:
                return sent, e
        return sent, None

    def _recv(self, deadline, size):
        left = deadline - time.monotonic()
        if left <= 0:
            raise FlingError("timeout", "fling: no reply in time")
        self._sock.settimeout(left)
        try:
            data = self._sock.recv(size)
        except socket.timeout:
            raise FlingError("timeout", "fling: no reply in time") from None
        except OSError as e:
            raise FlingError("recv_failed", "fling: reading the reply: %s" % e) from None
        if not data:
            raise FlingError("recv_failed", "fling: the connection closed before the reply")
        return data

    def _read_reply(self, deadline):
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._recv(deadline, 65536)
        head, _, body = buf.partition(b"\r\n\r\n")
        status, length, keep = _parse_head(head)
        while len(body) < length:
            body += self._recv(deadline, length - len(body))
        return status, body[:length], keep and len(body) == length


class AsyncClient(_Base):
    """The asyncio client: the same constructor and methods as Client, as coroutines. One
    kept-alive connection per client, used by one request at a time (an asyncio.Lock)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = None
        self._conn = None
        self.last_error = None

    async def fire(self, job_type, payload=b"", **opts):
        """As Client.fire: True once the kernel took the whole request, else False and last_error."""
        req = self._fire_request(job_type, payload, opts)
        self.last_error = None
        try:
            _, writer = await self._connect()
        except FlingError as e:
            self.last_error = e.message
            return False
        try:
            writer.transport.set_write_buffer_limits(high=0)   # drain() returns once the kernel has it all
            writer.write(req)
            await asyncio.wait_for(writer.drain(), self._io_timeout)
            return True
        except (OSError, asyncio.TimeoutError) as e:
            self.last_error = "fling: send to %s: %s" % (self._where(), str(e) or "timed out")
            return False
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass   # the request was handed over (or its failure reported) already

    async def submit(self, job_type, payload=b"", **opts):
        """As Client.submit: the job id once the daemon committed it."""
        return _submit_id(await self._exchange(self._submit_request(job_type, payload, opts, True), self._io_budget(opts)))

    async def status(self, job_id):
        return await self._exchange(self._request("GET", _job_path(job_id)))

    async def cancel(self, job_id):
        return await self._exchange(self._request("DELETE", _job_path(job_id)))

    async def jobs(self, state=None, type=None, limit=None, after=None):
        return await self._exchange(self._request("GET", self._jobs_path(state, type, limit, after)))

    async def close(self):
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _connect(self):
        try:
            if self._unix:
                opening = asyncio.open_unix_connection(self._unix)
            else:
                opening = asyncio.open_connection(*self._tcp)
            return await asyncio.wait_for(opening, self._connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise FlingError("connect_failed", "fling: connect to %s: %s" % (self._where(), str(e) or "timed out")) from None

    async def _exchange(self, req, io_timeout=None):
        if self._lock is None:
            self._lock = asyncio.Lock()   # made here: it belongs to the running loop
        async with self._lock:
            if self._conn is not None and (self._conn[0].at_eof() or self._conn[1].is_closing()):
                await self.close()   # the daemon closed the idle kept connection
            if self._conn is None:
                self._conn = await self._connect()
            reader, writer = self._conn
            try:
                status, body, keep = await asyncio.wait_for(self._send_and_read(reader, writer, req),
                                                            io_timeout or self._io_timeout)
            except asyncio.TimeoutError:
                await self.close()
                raise FlingError("timeout", "fling: no reply in time") from None
            except (OSError, asyncio.IncompleteReadError) as e:
                await self.close()
                raise FlingError("recv_failed", "fling: exchange with %s: %s" % (self._where(), e)) from None
            except FlingError:
                await self.close()
                raise
            if not keep:
                await self.close()
            return _decode(status, body)

    @staticmethod
    async def _send_and_read(reader, writer, req):
        writer.write(req)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status, length, keep = _parse_head(head[:-4])
        return status, await reader.readexactly(length), keep
