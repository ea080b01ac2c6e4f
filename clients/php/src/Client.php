<?php

declare(strict_types=1);

namespace Fling;

/**
 * The PHP client of flingd: plain PHP streams, no extension beyond the standard ones.
 *
 * fire() is the fire-and-forget trigger: a fresh connection (connect timeout), the whole
 * request written before anything else, a normal fclose(), never a read. It never raises a
 * warning or an exception for an unreachable daemon: it returns false and lastError() says why.
 * submit(), status(), cancel(), retry() and jobs() share one kept-alive connection and throw
 * FlingException (with the daemon's error code) when something goes wrong.
 *
 * A kept connection may have been closed by the daemon while idle. That is only safe to find
 * out before a request leaves, so an idle connection that reads as closed is replaced, and so
 * is one that took none of the request; once any byte was sent a request is never sent again
 * (the daemon may have enqueued it, and a resend would enqueue it twice).
 */
final class Client
{
    private const OPTIONS = ['timeout', 'delay', 'priority', 'attempts', 'key', 'callback', 'wait', 'on_disconnect'];

    private string $address;
    private string $host;
    private ?string $lastError = null;
    /** @var resource|null */
    private $conn = null;

    /**
     * @param string      $url            "http://host:port" or "unix:/path/to/flingd.sock"
     * @param string|null $token          sent as "Authorization: Bearer <token>"
     * @param float       $connectTimeout seconds to connect
     * @param float       $ioTimeout      seconds for a request and its reply
     */
    public function __construct(
        string $url = 'http://127.0.0.1:7878',
        private ?string $token = null,
        private float $connectTimeout = 3.0,
        private float $ioTimeout = 10.0,
    ) {
        if (preg_match('#^unix:(/.+)$#', $url, $m)) {
            $this->address = 'unix://' . $m[1];
            $this->host = 'localhost';
        } elseif (preg_match('#^http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?$#', $url, $m)) {
            $this->address = 'tcp://' . $m[1] . ':' . $m[2];
            $this->host = $m[1] . ':' . $m[2];
        } else {
            throw new \InvalidArgumentException("fling: URL must be http://host:port or unix:/path, not \"$url\"");
        }
        if ($token !== null && !preg_match('/^[\x21-\x7e]+$/', $token)) {
            throw new \InvalidArgumentException('fling: the token must be visible ASCII');
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    /**
     * Sends one job and hangs up without reading the reply. true once every byte of the
     * request was handed to the kernel; false otherwise, with the reason in lastError().
     * Options (named arguments): timeout, delay, priority, attempts, key, callback.
     */
    public function fire(string $type, mixed $payload = '', mixed ...$opts): bool
    {
        if (isset($opts['wait']) || isset($opts['on_disconnect'])) {
            throw new \InvalidArgumentException('fling: wait and on_disconnect need submit(), which reads the reply');
        }
        $request = $this->submitRequest($type, $payload, $opts, false);
        $this->lastError = null;
        $fp = $this->connect();
        if ($fp === null) {
            return false;
        }
        $sent = $this->writeAll($fp, $request);
        fclose($fp);
        return $sent === strlen($request);
    }

    /** Why the last fire() returned false (null after a fire() that succeeded); also the
     *  low-level cause behind the last connect_failed / send_failed exception. */
    public function lastError(): ?string
    {
        return $this->lastError;
    }

    /**
     * Sends one job and waits for its acknowledgement; returns the job id. Options as fire(),
     * plus wait (seconds: the call returns when the job ended or the wait ran out) and
     * on_disconnect ("cancel" or "continue": what becomes of the job if this client leaves
     * while waiting). A repeated idempotency key returns the id of the job it first made.
     */
    public function submit(string $type, mixed $payload = '', mixed ...$opts): string
    {
        $wait = (int)($opts['wait'] ?? 0);
        $reply = $this->exchange($this->submitRequest($type, $payload, $opts, true), $this->ioTimeout + $wait);
        if (!isset($reply['id']) || !is_string($reply['id'])) {
            throw new FlingException('bad_reply', 'fling: the reply to a submit has no job id');
        }
        return $reply['id'];
    }

    /** The job as GET /v1/jobs/{id} shows it (state, status, attempts, output, callbacks...). */
    public function status(string|int $id): array
    {
        return $this->exchange($this->request('GET', self::jobPath($id)));
    }

    /** Cancels a waiting job or stops a running one; returns the job. 409 not_cancellable if it ended. */
    public function cancel(string|int $id): array
    {
        return $this->exchange($this->request('DELETE', self::jobPath($id)));
    }

    /**
     * Queues a failed or cancelled job again (its history stays: "retried" counts); returns
     * the job. 409 not_retryable for any other state.
     */
    public function retry(string|int $id): array
    {
        return $this->exchange($this->request('POST', self::jobPath($id) . '/retry'));
    }

    /**
     * One page of jobs, newest first: ['jobs' => [...], 'next' => cursor|null]; pass 'next'
     * as $after for the following page.
     */
    public function jobs(?string $state = null, ?string $type = null, ?int $limit = null, ?string $after = null): array
    {
        $query = http_build_query(array_filter(
            ['state' => $state, 'type' => $type, 'limit' => $limit, 'after' => $after],
            fn($v) => $v !== null
        ));
        return $this->exchange($this->request('GET', '/v1/jobs' . ($query === '' ? '' : '?' . $query)));
    }

    /** Closes the kept-alive connection (the next call opens a new one). */
    public function close(): void
    {
        if ($this->conn !== null) {
            fclose($this->conn);
            $this->conn = null;
        }
    }

    private function submitRequest(string $type, mixed $payload, array $opts, bool $keepAlive): string
    {
        if (!preg_match('/^[A-Za-z0-9_.-]{1,64}$/', $type)) {
            throw new \InvalidArgumentException("fling: \"$type\" is not a job type name (1-64 of A-Z a-z 0-9 _ . -)");
        }
        $headers = self::optionHeaders($opts);
        if (!is_string($payload)) {
            $payload = json_encode($payload, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
            $headers[] = 'Content-Type: application/json';
        }
        if (!$keepAlive) {
            $headers[] = 'Connection: close';
        }
        return $this->request('POST', '/v1/jobs/' . $type, $headers, $payload);
    }

    /** @return string[] the option headers, each value checked as the daemon would. */
    private static function optionHeaders(array $opts): array
    {
        foreach (array_keys($opts) as $name) {
            if (!in_array($name, self::OPTIONS, true)) {
                throw new \InvalidArgumentException("fling: unknown option \"$name\"");
            }
        }
        $h = [];
        if (isset($opts['timeout'])) {
            $h[] = 'Fling-Timeout: ' . self::seconds($opts['timeout'], 'timeout', 7 * 86400, false);
        }
        if (isset($opts['delay'])) {
            $h[] = 'Fling-Delay: ' . self::seconds($opts['delay'], 'delay', 366 * 86400, true);
        }
        if (isset($opts['priority'])) {
            $h[] = 'Fling-Priority: ' . self::integer($opts['priority'], 'priority', -2147483648, 2147483647);
        }
        if (isset($opts['attempts'])) {
            $h[] = 'Fling-Max-Attempts: ' . self::integer($opts['attempts'], 'attempts', 1, 1000);
        }
        if (isset($opts['key'])) {
            $h[] = 'Idempotency-Key: ' . self::visible($opts['key'], 'key', 255);
        }
        if (isset($opts['callback'])) {
            $url = self::visible($opts['callback'], 'callback', 2048);
            if (!preg_match('#^https?://.#', $url)) {
                throw new \InvalidArgumentException('fling: callback must be an http:// or https:// URL');
            }
            $h[] = 'Fling-Callback: ' . $url;
        }
        if (isset($opts['wait'])) {
            $h[] = 'Prefer: wait=' . self::integer($opts['wait'], 'wait', 1, 3600);
        }
        if (isset($opts['on_disconnect'])) {
            if (!in_array($opts['on_disconnect'], ['cancel', 'continue'], true)) {
                throw new \InvalidArgumentException('fling: on_disconnect must be "cancel" or "continue"');
            }
            $h[] = 'Fling-On-Disconnect: ' . $opts['on_disconnect'];
        }
        return $h;
    }

    /** Seconds as the daemon reads them: plain decimal digits, no exponent, no sign. */
    private static function seconds(mixed $v, string $name, int $max, bool $zeroOk): string
    {
        if (!is_int($v) && !is_float($v) || !is_finite((float)$v) || $v < 0 || $v > $max || (!$zeroOk && $v <= 0)) {
            throw new \InvalidArgumentException("fling: $name must be a number of seconds" . ($zeroOk ? ' >= 0' : ' > 0') . " and at most $max");
        }
        return rtrim(rtrim(sprintf('%.3F', $v), '0'), '.');
    }

    private static function integer(mixed $v, string $name, int $min, int $max): string
    {
        if (!is_int($v) || $v < $min || $v > $max) {
            throw new \InvalidArgumentException("fling: $name must be an integer from $min to $max");
        }
        return (string)$v;
    }

    private static function visible(mixed $v, string $name, int $max): string
    {
        if (!is_string($v) || !preg_match('/^[\x21-\x7e]{1,' . $max . '}$/', $v)) {
            throw new \InvalidArgumentException("fling: $name must be 1 to $max visible ASCII characters");
        }
        return $v;
    }

    private function request(string $method, string $path, array $headers = [], string $body = ''): string
    {
        $head = "$method $path HTTP/1.1\r\nHost: {$this->host}\r\n";
        if ($this->token !== null) {
            $head .= "Authorization: Bearer {$this->token}\r\n";
        }
        foreach ($headers as $h) {
            $head .= "$h\r\n";
        }
        return $head . 'Content-Length: ' . strlen($body) . "\r\n\r\n" . $body;
    }

    /**
     * Runs $fn with PHP's warnings turned into lastError instead of output: a dead daemon must
     * never print anything into the application's page or log.
     */
    private function quietly(callable $fn): mixed
    {
        set_error_handler(function (int $no, string $msg): bool {
            $this->lastError = $msg;
            return true;
        });
        try {
            return $fn();
        } finally {
            restore_error_handler();
        }
    }

    /** @return resource|null a connected stream, or null with lastError set. */
    private function connect()
    {
        return $this->quietly(function () {
            $fp = stream_socket_client($this->address, $errno, $errstr, $this->connectTimeout);
            if ($fp === false) {
                $this->lastError = "connect to {$this->address}: " . ($errstr !== '' ? $errstr : ($this->lastError ?? 'failed'));
                return null;
            }
            stream_set_timeout($fp, (int)$this->ioTimeout, (int)(fmod($this->ioTimeout, 1.0) * 1e6));
            return $fp;
        });
    }

    /** Writes $data whole (fwrite may take part of it); returns how many bytes the kernel took. */
    private function writeAll($fp, string $data): int
    {
        return $this->quietly(function () use ($fp, $data): int {
            $done = 0;
            $len = strlen($data);
            while ($done < $len) {
                $n = fwrite($fp, $done === 0 ? $data : substr($data, $done));
                if ($n === false || $n === 0) {
                    $this->lastError = 'send: ' . ($this->lastError ?? 'the connection was closed');
                    break;
                }
                $done += $n;
            }
            return $done;
        });
    }

    /** Sends a request on the kept-alive connection and returns the decoded JSON reply of a 2xx. */
    private function exchange(string $request, ?float $ioTimeout = null): array
    {
        for ($attempt = 0; ; $attempt++) {
            $reused = $this->conn !== null;
            if ($reused && !$this->idleUsable()) {
                $this->close();
                $reused = false;
            }
            if ($this->conn === null && ($this->conn = $this->connect()) === null) {
                throw new FlingException('connect_failed', "fling: {$this->lastError}");
            }
            $sent = $this->writeAll($this->conn, $request);
            if ($sent === 0 && $reused && $attempt === 0) {
                $this->close();   // the kernel took nothing: the daemon cannot have it
                continue;
            }
            try {
                [$status, $body, $keep] = $this->readReply($this->conn, microtime(true) + ($ioTimeout ?? $this->ioTimeout));
            } catch (FlingException $e) {
                $this->close();
                throw $sent < strlen($request) ? new FlingException('send_failed', "fling: {$this->lastError}") : $e;
            }
            if (!$keep || $sent < strlen($request)) {
                $this->close();
            }
            return self::decode($status, $body);
        }
    }

    /** An idle kept connection has nothing to say: if it reads as ready, the daemon closed it. */
    private function idleUsable(): bool
    {
        $r = [$this->conn];
        $w = $e = null;
        return $this->quietly(fn() => stream_select($r, $w, $e, 0)) === 0;
    }

    /** @return array{int, string, bool} status, body and whether the connection stays open. */
    private function readReply($fp, float $deadline): array
    {
        $buf = '';
        while (($end = strpos($buf, "\r\n\r\n")) === false) {
            $buf .= $this->readSome($fp, $deadline, 8192);
        }
        $head = substr($buf, 0, $end);
        $body = substr($buf, $end + 4);
        if (!preg_match('#^HTTP/1\.[01] (\d{3}) #', $head, $m)) {
            throw new FlingException('bad_reply', 'fling: the reply is not HTTP/1.1');
        }
        $length = preg_match('/\r\ncontent-length:[ \t]*(\d+)/i', $head, $cl) ? (int)$cl[1] : 0;
        while (strlen($body) < $length) {
            $body .= $this->readSome($fp, $deadline, $length - strlen($body));
        }
        $keep = !preg_match('/\r\nconnection:[ \t]*close/i', $head) && strlen($body) === $length;
        return [(int)$m[1], substr($body, 0, $length), $keep];
    }

    private function readSome($fp, float $deadline, int $max): string
    {
        $left = $deadline - microtime(true);
        if ($left <= 0) {
            throw new FlingException('timeout', 'fling: no reply in time');
        }
        stream_set_timeout($fp, (int)$left, (int)(fmod($left, 1.0) * 1e6));
        $data = $this->quietly(fn() => fread($fp, $max));
        if ($data === false || $data === '') {
            $timedOut = stream_get_meta_data($fp)['timed_out'];
            throw new FlingException($timedOut ? 'timeout' : 'recv_failed',
                $timedOut ? 'fling: no reply in time' : 'fling: the connection closed before the reply');
        }
        return $data;
    }

    private static function jobPath(string|int $id): string
    {
        $id = (string)$id;
        if (!preg_match('/^[1-9][0-9]{0,18}$/', $id)) {
            throw new \InvalidArgumentException("fling: \"$id\" is not a job id");
        }
        return '/v1/jobs/' . $id;
    }

    private static function decode(int $status, string $body): array
    {
        $json = json_decode($body, true);
        if ($status >= 200 && $status < 300) {
            if (!is_array($json)) {
                throw new FlingException('bad_reply', "fling: a $status reply without a JSON body", $status);
            }
            return $json;
        }
        $code = is_array($json) && is_string($json['error'] ?? null) ? $json['error'] : 'http_' . $status;
        $msg = is_array($json) && is_string($json['message'] ?? null) ? $json['message'] : "HTTP $status";
        throw new FlingException($code, "fling: $code: $msg", $status);
    }
}

