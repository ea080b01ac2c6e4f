// node example.js [URL] [TOKEN]: fires one job, submits one and prints its status.
// With `make run`'s config (examples/flingd.conf) the email type appends to var/outbox.jsonl.
'use strict';
const { Client, FlingError } = require('./fling.js');

async function main() {
  const client = new Client(process.argv[2] || 'http://127.0.0.1:7878',
    { token: process.argv[3] || process.env.FLING_TOKEN || null });

  // Fire-and-forget: no reply is read; false (and lastError) only if it could not be sent.
  if (!(await client.fire('email', { to: 'ann@example.com', template: 'welcome' }))) {
    console.error('not sent:', client.lastError);
  }

  // Acknowledged: the id once the job is committed, or a FlingError with the daemon's code.
  try {
    const id = await client.submit('email', { to: 'bob@example.com' }, { priority: 5, key: 'welcome-bob' });
    console.log(`job ${id} is ${(await client.status(id)).state}`);
  } catch (e) {
    if (!(e instanceof FlingError)) throw e;
    console.error(`refused: ${e.code} (${e.status}): ${e.message}`);
    process.exitCode = 1;
  }
}

main();
