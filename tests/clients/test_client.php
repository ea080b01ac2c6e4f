<?php
// The PHP client (clients/php) against a real flingd: php test_client.php FLINGD_PATH.
// Prints "N passed, M failed" and exits 0 only if nothing failed.
declare(strict_types=1);

require __DIR__ . '/../../clients/php/src/FlingException.php';
require __DIR__ . '/../../clients/php/src/Client.php';
require __DIR__ . '/../../clients/php/src/Signature.php';

use Fling\Client;
use Fling\FlingException;
use Fling\Signature;

const TOKEN = 'client-t0ken';   // as in flingd.conf
const SECRET = 's3cret-client';
const FIRE_COUNT = 500;

// The child that fires and exits at once: php test_client.php --fire URL TOKEN COUNT
if (($argv[1] ?? '') === '--fire') {
    $c = new Client($argv[2], $argv[3]);
    for ($i = 0; $i < (int)$argv[4]; $i++) {
        if (!$c->fire('f', "job $i")) {
            fwrite(STDERR, "fire $i: " . $c->lastError() . "\n");
            exit(1);
        }
    }
    exit(0);
}

// Any warning or notice anywhere is a failure: the client must stay silent.
$warnings = [];
set_error_handler(function (int $no, string $msg, string $file, int $line) use (&$warnings): bool {
    $warnings[] = "$msg at $file:$line";
    return true;
});

$passed = 0;
$failed = 0;
function check(bool $ok, string $what): void
{
    global $passed, $failed;
    $ok ? $passed++ : $failed++;
    echo ($ok ? 'ok   ' : 'FAIL ') . $what . "\n";
}

/** Calls $fn and returns the FlingException it throws, or null. */
function thrown(callable $fn): ?FlingException
{
    try {
        $fn();
    } catch (FlingException $e) {
        return $e;
    }
    return null;
}

/** Polls $fn every 50 ms until it returns true or $secs pass. */
function eventually(callable $fn, float $secs): bool
{
    for ($end = microtime(true) + $secs; microtime(true) < $end; usleep(50000)) {
        if ($fn()) {
            return true;
        }
    }
    return (bool)$fn();
}

function free_port(): int
{
    $s = stream_socket_server('tcp://127.0.0.1:0');
    $port = (int)substr(strrchr(stream_socket_get_name($s, false), ':'), 1);
    fclose($s);
    return $port;
}

/** Starts flingd with $conf in $dir; returns [process, url]. */
function start_flingd(string $flingd, string $dir, string $conf): array
{
    file_put_contents("$dir/flingd.conf", $conf);
    $cmd = [$flingd, '-c', "$dir/flingd.conf", '--ready-file', "$dir/ready.json"];
    if (posix_geteuid() === 0) {
        $cmd[] = '--allow-root';   // CI runs as root
    }
    $log = ['file', "$dir/flingd.log", 'a'];
    $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => $log, 2 => $log], $pipes);
    $pid = proc_get_status($proc)['pid'];
    for ($end = microtime(true) + 20; microtime(true) < $end; usleep(10000)) {
        $ready = is_file("$dir/ready.json") ? json_decode((string)file_get_contents("$dir/ready.json"), true) : null;
        if (is_array($ready) && ($ready['pid'] ?? 0) === $pid) {
            return [$proc, "http://127.0.0.1:{$ready['port']}"];
        }
        if (!proc_get_status($proc)['running']) {
            break;
        }
    }
    fwrite(STDERR, "flingd did not start:\n" . file_get_contents("$dir/flingd.log"));
    exit(1);
}

/** SIGTERM, then the exit code (SIGKILL and -1 after 10 s). */
function stop_flingd($proc): int
{
    proc_terminate($proc, 15);
    for ($end = microtime(true) + 10; microtime(true) < $end; usleep(10000)) {
        $st = proc_get_status($proc);
        if (!$st['running']) {
            return $st['exitcode'];
        }
    }
    proc_terminate($proc, 9);
    proc_close($proc);
    return -1;
}

/** Every job of $type, through the list's cursor pages. */
function count_jobs(Client $c, string $type): int
{
    $n = 0;
    $after = null;
    for ($page = 0; $page < 100; $page++) {
        $r = $c->jobs(type: $type, limit: 1000, after: $after);
        $n += count($r['jobs']);
        if (($after = $r['next']) === null) {
            break;
        }
    }
    return $n;
}

/**
 * Serves $n callback POSTs on $server (one per connection, as flingd's libcurl sends them
 * with a fresh or kept connection alike), answering 200; returns [path, headers, body] each.
 */
function receive_callbacks($server, int $n, float $secs): array
{
    $got = [];
    $end = microtime(true) + $secs;
    while (count($got) < $n && microtime(true) < $end) {
        $r = [$server];
        $w = $x = null;
        if (stream_select($r, $w, $x, 0, 100000) !== 1 || !($conn = stream_socket_accept($server, 1))) {
            continue;
        }
        stream_set_timeout($conn, 5);
        $buf = '';
        while (($p = strpos($buf, "\r\n\r\n")) === false && !feof($conn)) {
            $buf .= (string)fread($conn, 8192);
        }
        $head = substr($buf, 0, (int)$p);
        $body = substr($buf, (int)$p + 4);
        $headers = [];
        foreach (array_slice(explode("\r\n", $head), 1) as $line) {
            [$k, $v] = array_map('trim', explode(':', $line, 2)) + [1 => ''];
            $headers[strtolower($k)] = $v;
        }
        $len = (int)($headers['content-length'] ?? 0);
        while (strlen($body) < $len && !feof($conn)) {
            $body .= (string)fread($conn, $len - strlen($body));
        }
        fwrite($conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        fclose($conn);
        $got[] = [explode(' ', $head)[1] ?? '', $headers, $body];
    }
    return $got;
}

$flingd = $argv[1] ?? '';
$dir = sys_get_temp_dir() . '/flingtest.php.' . getmypid();
mkdir($dir, 0700);
$receiver = stream_socket_server('tcp://127.0.0.1:0');
$rport = (int)substr(strrchr(stream_socket_get_name($receiver, false), ':'), 1);
$sock = "$dir/fling.sock";
$conf = str_replace(['@DIR@', '@RPORT@'], [$dir, (string)$rport], file_get_contents(__DIR__ . '/flingd.conf'));
[$proc, $url] = start_flingd($flingd, $dir, $conf);
// However the test ends (a failed check, an uncaught exception), flingd is stopped and the dir removed.
register_shutdown_function(function () use ($proc, $dir): void {
    if (proc_get_status($proc)['running']) {
        stop_flingd($proc);
    }
    exec('rm -rf ' . escapeshellarg($dir));
});
$c = new Client($url, TOKEN);

// A dead daemon: fire() returns false with a reason, and prints nothing.
ob_start();
$dead = new Client('http://127.0.0.1:' . free_port(), TOKEN, connectTimeout: 1.0);
$ok = $dead->fire('n', 'x');
$printed = ob_get_clean();
check(!$ok && $dead->lastError() !== null && $printed === '' && $warnings === [],
      'fire() at a dead daemon returns false silently (' . $dead->lastError() . ')');
$e = thrown(fn() => $dead->submit('n', 'x'));
check($e !== null && $e->error === 'connect_failed' && $e->status() === 0, 'submit() at a dead daemon throws connect_failed');

// Fire-and-forget from a process that exits right after: every job is enqueued.
$child = proc_open([PHP_BINARY, __FILE__, '--fire', $url, TOKEN, (string)FIRE_COUNT], [0 => ['file', '/dev/null', 'r']], $pipes);
$st = ['running' => true];
for ($end = microtime(true) + 60; microtime(true) < $end && ($st = proc_get_status($child))['running'];) {
    usleep(10000);
}
check(!$st['running'] && $st['exitcode'] === 0, 'a child fired ' . FIRE_COUNT . ' jobs and exited');
check(eventually(fn() => count_jobs($c, 'f') >= FIRE_COUNT, 20) && count_jobs($c, 'f') === FIRE_COUNT,
      'all ' . FIRE_COUNT . ' fired jobs are enqueued (counted through GET /v1/jobs pages)');

// submit, status, cancel.
$id = $c->submit('t', '60');
$job = $c->status($id);
check($job['id'] === $id && in_array($job['state'], ['queued', 'running'], true) && $job['type'] === 't', "submit() returned id $id, status() shows it");
$job = $c->cancel((int)$id);
check($job['id'] === $id, 'cancel() returns the job');
check(eventually(fn() => $c->status($id)['state'] === 'cancelled', 10), 'the cancelled job ends cancelled');
$e = thrown(fn() => $c->cancel($id));
check($e !== null && $e->error === 'not_cancellable' && $e->status() === 409, 'cancelling it again: 409 not_cancellable');
$e = thrown(fn() => $c->status('999999'));
check($e !== null && $e->error === 'not_found' && $e->getCode() === 404, 'status() of no job: 404 not_found');

// retry: a failed job is queued again; a waiting or running one, or no job, is refused.
$fid = $c->submit('fail', 'x');
check(eventually(fn() => $c->status($fid)['state'] === 'failed', 10), 'a job whose command fails ends failed');
$job = $c->retry($fid);
check($job['id'] === $fid && in_array($job['state'], ['queued', 'running'], true) && $job['retried'] === 1,
    'retry() returns the job queued again with retried 1');
check(eventually(fn() => $c->status($fid)['state'] === 'failed', 10) && $c->status($fid)['retried'] === 1,
    'the retried job ran again (and failed again)');
$rid = $c->submit('t', '60');
$e = thrown(fn() => $c->retry($rid));
check($e !== null && $e->error === 'not_retryable' && $e->status() === 409, 'retry() of a waiting job: 409 not_retryable');
$c->cancel($rid);
$e = thrown(fn() => $c->retry('999999'));
check($e !== null && $e->error === 'not_found' && $e->status() === 404, 'retry() of no job: 404 not_found');

// Options as named arguments reach the daemon.
$id = $c->submit('t', '1', delay: 60, priority: 7, attempts: 2, timeout: 5.5, key: 'php-key-1');
$job = $c->status($id);
check($job['state'] === 'scheduled' && $job['priority'] === 7 && $job['max_attempts'] === 2, 'delay, priority and attempts are applied');
check($c->submit('t', '1', key: 'php-key-1') === $id, 'a repeated idempotency key returns the first job');
$c->cancel($id);
$id = $c->submit('t', '0.3', wait: 10);
check($c->status($id)['state'] === 'succeeded', 'wait: submit() returns once the job ended');
$id = $c->submit('n', ['to' => 'ann']);
check(eventually(fn() => $c->status($id)['state'] === 'succeeded', 10), 'an array payload is accepted (sent as JSON)');

// The refused submit's error code.
$e = thrown(fn() => $c->submit('nope', 'x'));
check($e !== null && $e->error === 'unknown_type' && $e->getCode() === 404, 'an unknown type: 404 unknown_type');
$e = thrown(fn() => $c->submit('n', 'x', callback: 'http://127.0.0.1:1/elsewhere'));
check($e !== null && $e->error === 'callback_not_allowed' && $e->getCode() === 400, 'a callback outside the allow list: 400 callback_not_allowed');
$bad = 0;
foreach ([fn() => $c->fire('n', 'x', prio: 1), fn() => $c->fire('n', 'x', wait: 3), fn() => $c->submit('no/such', 'x'),
          fn() => $c->submit('n', 'x', attempts: 0), fn() => $c->submit('n', 'x', key: "a\r\nX: y")] as $f) {
    try {
        $f();
    } catch (\InvalidArgumentException) {
        $bad++;
    }
}
check($bad === 5, 'bad options and names are refused before anything is sent');

// The token.
$anon = new Client($url);
$e = thrown(fn() => $anon->submit('n', 'x'));
check($e !== null && $e->error === 'unauthorized' && $e->getCode() === 401, 'without the token: 401 unauthorized');
$e = thrown(fn() => (new Client($url, 'wrong'))->status($id));
check($e !== null && $e->error === 'unauthorized', 'with a wrong token: 401 unauthorized');

// The kept connection, closed by the daemon while idle (idle_timeout 1 s), is replaced.
$c->status($id);
sleep(2);
check($c->status($id)['id'] === $id, 'a call after the daemon closed the idle kept connection succeeds');

// The Unix socket.
$u = new Client("unix:$sock", TOKEN);
$uid = $u->submit('n', 'over unix');
check($u->status($uid)['type'] === 'n' && $u->fire('n', 'fired over unix'), 'submit, status and fire over unix:' . $sock);

// Signed callbacks: the type's on_complete and the job's Fling-Callback, checked as a receiver would.
$hook = $c->submit('hook', '{"a":1}');
$cb = $c->submit('n', 'x', callback: "http://127.0.0.1:$rport/cb");
$got = receive_callbacks($receiver, 2, 20);
$paths = [];
$verified = 0;
foreach ($got as [$path, $h, $body]) {
    $paths[$h['fling-job-id'] ?? ''] = $path;
    $sig = $h['fling-signature'] ?? null;
    $verified += Signature::verify($body, $sig, SECRET) && !Signature::verify($body . ' ', $sig, SECRET)
        && !Signature::verify($body, $sig, 'other') && !Signature::verify($body, null, SECRET)
        && json_decode($body, true)['id'] === ($h['fling-job-id'] ?? '');
}
check(count($got) === 2 && $verified === 2, 'both callbacks carry a signature that Signature::verify accepts (and a changed body fails)');
check(($paths[$hook] ?? '') === '/done' && ($paths[$cb] ?? '') === '/cb', 'on_complete and Fling-Callback each reached their path');
check(eventually(fn() => ($c->status($hook)['callbacks'][0]['state'] ?? '') === 'delivered', 10), 'the daemon recorded the delivery');

$c->close();
$code = stop_flingd($proc);
check($code === 0, 'flingd stopped cleanly');
check($warnings === [], 'no PHP warning or notice' . ($warnings ? ': ' . implode('; ', $warnings) : ''));
if ($failed) {
    echo "flingd log:\n" . file_get_contents("$dir/flingd.log");
}
echo "$passed passed, $failed failed\n";
exit($failed ? 1 : 0);
