// The Node client (clients/node) against a real flingd: node test_client.mjs FLINGD_PATH.
// Prints "N passed, M failed" and exits 0 only if nothing failed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const { Client, FlingError, verifySignature } = createRequire(import.meta.url)(path.join(here, '../../clients/node/fling.js'));

const TOKEN = 'client-t0ken'; // as in flingd.conf
const SECRET = 's3cret-client';
const FIRE_COUNT = 500;

if (process.argv[2] === '--fire') {
  // The child that fires and exits at once: test_client.mjs --fire URL TOKEN COUNT
  const c = new Client(process.argv[3], { token: process.argv[4] });
  for (let i = 0; i < Number(process.argv[5]); i++) {
    if (!(await c.fire('f', `job ${i}`))) {
      console.error(`fire ${i}: ${c.lastError}`);
      process.exit(1);
    }
  }
  process.exit(0);
}

let passed = 0;
let failed = 0;
function check(ok, what) {
  ok ? passed++ : failed++;
  console.log((ok ? 'ok   ' : 'FAIL ') + what);
}

/** The FlingError the promise rejects with, or null. */
async function rejected(promise) {
  try {
    await promise;
  } catch (e) {
    if (e instanceof FlingError) return e;
    throw e;
  }
  return null;
}

async function eventually(fn, secs) {
  for (const end = Date.now() + secs * 1000; Date.now() < end; await sleep(50)) {
    if (await fn()) return true;
  }
  return Boolean(await fn());
}

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

async function countJobs(c, type) {
  let n = 0;
  let after = null;
  for (let page = 0; page < 100; page++) {
    const r = await c.jobs({ type, limit: 1000, after });
    n += r.jobs.length;
    if ((after = r.next) === null) break;
  }
  return n;
}

async function startFlingd(flingd, dir, conf) {
  fs.writeFileSync(path.join(dir, 'flingd.conf'), conf);
  const ready = path.join(dir, 'ready.json');
  const args = ['-c', path.join(dir, 'flingd.conf'), '--ready-file', ready];
  if (process.geteuid() === 0) args.push('--allow-root'); // CI runs as root
  const log = fs.openSync(path.join(dir, 'flingd.log'), 'a');
  const proc = spawn(flingd, args, { stdio: ['ignore', log, log] });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  for (const end = Date.now() + 20000; Date.now() < end && !exited; await sleep(10)) {
    try {
      const info = JSON.parse(fs.readFileSync(ready, 'utf8'));
      if (info.pid === proc.pid) return { proc, url: `http://127.0.0.1:${info.port}` };
    } catch {
      // not written yet
    }
  }
  proc.kill('SIGKILL');
  throw new Error('flingd did not start:\n' + fs.readFileSync(path.join(dir, 'flingd.log'), 'utf8'));
}

/** SIGTERM, then the exit code (SIGKILL and -1 after 10 s). */
async function stopFlingd(proc) {
  if (proc.exitCode !== null) return proc.exitCode;
  const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  proc.kill('SIGTERM');
  const code = await Promise.race([exited, sleep(10000).then(() => -1)]);
  if (code === -1) proc.kill('SIGKILL');
  return code;
}

/** Takes flingd's callback POSTs on 127.0.0.1:0 and checks each signature as it arrives. */
function startReceiver() {
  const got = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const sig = req.headers['fling-signature'];
      const verified = verifySignature(body, sig, SECRET) && !verifySignature(Buffer.concat([body, Buffer.from(' ')]), sig, SECRET)
        && !verifySignature(body, sig, 'other') && !verifySignature(body, undefined, SECRET)
        && JSON.parse(body.toString()).id === req.headers['fling-job-id'];
      got.push({ path: req.url, id: req.headers['fling-job-id'], verified });
      res.writeHead(200, { 'Content-Length': '0' });
      res.end();
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, got })));
}

async function checks(url, sock, rport, receiver) {
  const c = new Client(url, { token: TOKEN });

  // A dead daemon: fire() resolves false with a reason; submit() rejects with connect_failed.
  const dead = new Client(`http://127.0.0.1:${await freePort()}`, { token: TOKEN, connectTimeout: 1000 });
  check((await dead.fire('n', 'x')) === false && dead.lastError, `fire() at a dead daemon resolves false (${dead.lastError})`);
  let e = await rejected(dead.submit('n', 'x'));
  check(e && e.code === 'connect_failed' && e.status === 0, 'submit() at a dead daemon rejects with connect_failed');

  // Fire-and-forget from a process that exits right after: every job is enqueued.
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--fire', url, TOKEN, String(FIRE_COUNT)],
    { stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await Promise.race([new Promise((r) => child.once('exit', r)), sleep(60000).then(() => 'timeout')]);
  check(code === 0, `a child fired ${FIRE_COUNT} jobs and exited`);
  check(await eventually(async () => (await countJobs(c, 'f')) >= FIRE_COUNT, 20) && (await countJobs(c, 'f')) === FIRE_COUNT,
    `all ${FIRE_COUNT} fired jobs are enqueued (counted through GET /v1/jobs pages)`);

  // submit, status, cancel.
  let id = await c.submit('t', '60');
  let job = await c.status(id);
  check(job.id === id && ['queued', 'running'].includes(job.state) && job.type === 't', `submit() returned id ${id}, status() shows it`);
  check((await c.cancel(Number(id))).id === id, 'cancel() returns the job');
  check(await eventually(async () => (await c.status(id)).state === 'cancelled', 10), 'the cancelled job ends cancelled');
  e = await rejected(c.cancel(id));
  check(e && e.code === 'not_cancellable' && e.status === 409, 'cancelling it again: 409 not_cancellable');
  e = await rejected(c.status('999999'));
  check(e && e.code === 'not_found' && e.status === 404, 'status() of no job: 404 not_found');

  // retry: a failed job is queued again; a waiting or running one, or no job, is refused.
  const fid = await c.submit('fail', 'x');
  check(await eventually(async () => (await c.status(fid)).state === 'failed', 10), 'a job whose command fails ends failed');
  job = await c.retry(fid);
  check(job.id === fid && ['queued', 'running'].includes(job.state) && job.retried === 1,
    'retry() returns the job queued again with retried 1');
  check(await eventually(async () => (await c.status(fid)).state === 'failed', 10) && (await c.status(fid)).retried === 1,
    'the retried job ran again (and failed again)');
  const rid = await c.submit('t', '60');
  e = await rejected(c.retry(rid));
  check(e && e.code === 'not_retryable' && e.status === 409, 'retry() of a waiting job: 409 not_retryable');
  await c.cancel(rid);
  e = await rejected(c.retry('999999'));
  check(e && e.code === 'not_found' && e.status === 404, 'retry() of no job: 404 not_found');

  // Options reach the daemon.
  id = await c.submit('t', Buffer.from('1'), { delay: 60, priority: 7, attempts: 2, timeout: 5.5, key: 'node-key-1' });
  job = await c.status(id);
  check(job.state === 'scheduled' && job.priority === 7 && job.max_attempts === 2, 'delay, priority and attempts are applied');
  check((await c.submit('t', '1', { key: 'node-key-1' })) === id, 'a repeated idempotency key returns the first job');
  await c.cancel(id);
  id = await c.submit('t', '0.3', { wait: 10 });
  check((await c.status(id)).state === 'succeeded', 'wait: submit() resolves once the job ended');
  id = await c.submit('n', { to: 'ann' });
  check(await eventually(async () => (await c.status(id)).state === 'succeeded', 10), 'an object payload is accepted (sent as JSON)');

  // Refusals and their codes.
  e = await rejected(c.submit('nope', 'x'));
  check(e && e.code === 'unknown_type' && e.status === 404, 'an unknown type: 404 unknown_type');
  e = await rejected(c.submit('n', 'x', { callback: 'http://127.0.0.1:1/elsewhere' }));
  check(e && e.code === 'callback_not_allowed' && e.status === 400, 'a callback outside the allow list: 400 callback_not_allowed');
  let bad = 0;
  for (const p of [c.fire('n', 'x', { prio: 1 }), c.fire('n', 'x', { wait: 3 }), c.submit('no/such', 'x'),
    c.submit('n', 'x', { attempts: 0 }), c.submit('n', 'x', { key: 'a\r\nX: y' })]) {
    await p.catch((err) => { bad += err instanceof TypeError || err instanceof RangeError; });
  }
  check(bad === 5, 'bad options and names are refused before anything is sent');

  // The token.
  e = await rejected(new Client(url).submit('n', 'x'));
  check(e && e.code === 'unauthorized' && e.status === 401, 'without the token: 401 unauthorized');
  e = await rejected(new Client(url, { token: 'wrong' }).status(id));
  check(e && e.code === 'unauthorized', 'with a wrong token: 401 unauthorized');

  // The kept connection, closed by the daemon while idle (idle_timeout 1 s), is replaced.
  await c.status(id);
  await sleep(2000);
  check((await c.status(id)).id === id, 'a call after the daemon closed the idle kept connection succeeds');

  // Many calls at once on one client take turns on its connection.
  const ids = await Promise.all(Array.from({ length: 100 }, () => c.submit('n', 'concurrent')));
  check(new Set(ids).size === 100, '100 concurrent submits on one client: 100 ids');

  // The Unix socket.
  const u = new Client(`unix:${sock}`, { token: TOKEN });
  const uid = await u.submit('n', 'over unix');
  check((await u.status(uid)).type === 'n' && (await u.fire('n', 'fired over unix')), `submit, status and fire over unix:${sock}`);
  u.close();

  // Signed callbacks: the type's on_complete and the job's Fling-Callback, verified on arrival.
  const hook = await c.submit('hook', '{"a":1}');
  const cb = await c.submit('n', 'x', { callback: `http://127.0.0.1:${rport}/cb` });
  await eventually(() => receiver.got.length >= 2, 20);
  check(receiver.got.length === 2 && receiver.got.every((g) => g.verified),
    'both callbacks carry a signature that verifySignature accepts (and a changed body fails)');
  const paths = Object.fromEntries(receiver.got.map((g) => [g.id, g.path]));
  check(paths[hook] === '/done' && paths[cb] === '/cb', 'on_complete and Fling-Callback each reached their path');
  check(await eventually(async () => (await c.status(hook)).callbacks?.[0]?.state === 'delivered', 10), 'the daemon recorded the delivery');
  c.close();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flingtest.node.'));
const receiver = await startReceiver();
const rport = receiver.server.address().port;
const conf = fs.readFileSync(path.join(here, 'flingd.conf'), 'utf8').replaceAll('@DIR@', dir).replaceAll('@RPORT@', String(rport));
let daemon = null;
try {
  daemon = await startFlingd(process.argv[2], dir, conf);
  await checks(daemon.url, path.join(dir, 'fling.sock'), rport, receiver);
} catch (err) {
  check(false, `no exception: ${err.stack}`);
} finally {
  if (daemon) check((await stopFlingd(daemon.proc)) === 0, 'flingd stopped cleanly');
  if (failed) console.log('flingd log:\n' + fs.readFileSync(path.join(dir, 'flingd.log'), 'utf8'));
  receiver.server.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
