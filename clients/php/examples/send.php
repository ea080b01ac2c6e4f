<?php
// php examples/send.php [URL] [TOKEN]: fires one job, submits one and prints its status.
// With `make run`'s config (examples/flingd.conf) the email type appends to var/outbox.jsonl.
declare(strict_types=1);

require __DIR__ . '/../src/FlingException.php';   // or Composer's vendor/autoload.php
require __DIR__ . '/../src/Client.php';

$fling = new Fling\Client($argv[1] ?? 'http://127.0.0.1:7878', $argv[2] ?? getenv('FLING_TOKEN') ?: null);

// Fire-and-forget: no reply is read; false (and lastError()) only if it could not be sent.
if (!$fling->fire('email', ['to' => 'ann@example.com', 'template' => 'welcome'])) {
    fwrite(STDERR, 'not sent: ' . $fling->lastError() . "\n");
}

// Acknowledged: the id once the job is committed, or an exception with the daemon's code.
try {
    $id = $fling->submit('email', ['to' => 'bob@example.com'], priority: 5, key: 'welcome-bob');
    $job = $fling->status($id);
    echo "job $id is {$job['state']}\n";
} catch (Fling\FlingException $e) {
    fwrite(STDERR, "refused: {$e->error} ({$e->getCode()}): {$e->getMessage()}\n");
    exit(1);
}
