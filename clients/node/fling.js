'use strict';
// fling: the Node.js client of flingd. Node 18+, core modules only (net, http, crypto).
//
// fire() is the fire-and-forget trigger: a fresh connection (connect timeout), the whole
// request handed to the kernel, a normal close, never a read. It resolves false (and sets
// lastError) when the daemon cannot be reached; it never rejects for that. submit(), status(),
// cancel(), retry() and jobs() go over one kept-alive connection (an http.Agent with one socket, so
// requests take turns) and reject with a FlingError carrying the daemon's error code.
//
// A request is never sent twice once it may have left: only a GET that failed on a reused
// socket the daemon had just closed is sent again (a POST could be enqueued twice).

const crypto = require('crypto');
const http = require('http');
const net = require('net');

const URL_TCP = /^http:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/;
const TYPE = /^[A-Za-z0-9_.-]{1,64}$/;
const ID = /^[1-9][0-9]{0,18}$/;
const VISIBLE = /^[\x21-\x7e]+$/;
const OPTIONS = ['timeout', 'delay', 'priority', 'attempts', 'key', 'callback', 'wait', 'onDisconnect'];

/** A request flingd refused, or one that could not be exchanged. code is the daemon's error
 *  code ('unknown_type', 'unauthorized', 'not_cancellable', ...) or, when no reply came, one of
 *  connect_failed, send_failed, recv_failed, timeout, bad_reply; status is the HTTP status
 *  (0 when there was no reply). */
class FlingError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.name = 'FlingError';
    this.code = code;
    this.status = status;
  }
}

/** true if header (Fling-Signature) is 'sha256=<hex HMAC-SHA256 of body keyed with secret>'.
 *  body is the raw request body (Buffer or string); the comparison is constant-time. */
function verifySignature(body, header, secret) {
  if (typeof header !== 'string' || !secret) return false;
  const expected = Buffer.from('sha256=' + crypto.createHmac('sha256', secret).update(body).digest('hex'));
  const got = Buffer.from(header.trim().toLowerCase());
  return got.length === expected.length && crypto.timingSafeEqual(got, expected);
}

/** Seconds as the daemon reads them: plain decimal digits, no exponent, no sign. */
function seconds(v, name, max, zeroOk) {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max || (!zeroOk && v <= 0)) {
    throw new RangeError(`fling: ${name} must be a number of seconds ${zeroOk ? '>= 0' : '> 0'} and at most ${max}`);
  }
  return v.toFixed(3).replace(/\.?0+$/, '');
}

function integer(v, name, min, max) {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`fling: ${name} must be an integer from ${min} to ${max}`);
  }
  return String(v);
}

function visible(v, name, max) {
  if (typeof v !== 'string' || !VISIBLE.test(v) || v.length > max) {
    throw new RangeError(`fling: ${name} must be 1 to ${max} visible ASCII characters`);
  }
  return v;
}

/** The option headers of a submit, each value checked as the daemon would. */
function optionHeaders(opts) {
  for (const name of Object.keys(opts)) {
    if (!OPTIONS.includes(name)) throw new TypeError(`fling: unknown option "${name}"`);
  }
  const h = {};
  const has = (k) => opts[k] !== undefined && opts[k] !== null;
  if (has('timeout')) h['Fling-Timeout'] = seconds(opts.timeout, 'timeout', 7 * 86400, false);
  if (has('delay')) h['Fling-Delay'] = seconds(opts.delay, 'delay', 366 * 86400, true);
  if (has('priority')) h['Fling-Priority'] = integer(opts.priority, 'priority', -(2 ** 31), 2 ** 31 - 1);
  if (has('attempts')) h['Fling-Max-Attempts'] = integer(opts.attempts, 'attempts', 1, 1000);
  if (has('key')) h['Idempotency-Key'] = visible(opts.key, 'key', 255);
  if (has('callback')) {
    h['Fling-Callback'] = visible(opts.callback, 'callback', 2048);
    if (!/^https?:\/\/./.test(opts.callback)) throw new RangeError('fling: callback must be an http:// or https:// URL');
  }
  if (has('wait')) h.Prefer = 'wait=' + integer(opts.wait, 'wait', 1, 3600);
  if (has('onDisconnect')) {
    if (!['cancel', 'continue'].includes(opts.onDisconnect)) {
      throw new RangeError('fling: onDisconnect must be "cancel" or "continue"');
    }
    h['Fling-On-Disconnect'] = opts.onDisconnect;
  }
  return h;
}

function jobPath(id) {
  const s = String(id);
  if (!ID.test(s)) throw new RangeError(`fling: "${s}" is not a job id`);
  return '/v1/jobs/' + s;
}

/** The JSON of a 2xx reply, or a FlingError with the daemon's code. */
function decode(status, body) {
  let obj = null;
  try {
    obj = JSON.parse(body);
  } catch {
    obj = null;
  }
  const isObj = obj !== null && typeof obj === 'object';
  if (status >= 200 && status < 300) {
    if (!isObj) throw new FlingError('bad_reply', `fling: a ${status} reply without a JSON body`, status);
    return obj;
  }
  const code = isObj && typeof obj.error === 'string' ? obj.error : `http_${status}`;
  const msg = isObj && typeof obj.message === 'string' ? obj.message : `HTTP ${status}`;
  throw new FlingError(code, `fling: ${code}: ${msg}`, status);
}

class Client {
  /**
   * @param {string} url 'http://host:port' or 'unix:/path/to/flingd.sock'
   * @param {{token?: string, connectTimeout?: number, ioTimeout?: number}} options
   *        token is sent as 'Authorization: Bearer <token>'; timeouts in milliseconds
   */
  constructor(url = 'http://127.0.0.1:7878', { token = null, connectTimeout = 3000, ioTimeout = 10000 } = {}) {
    const m = URL_TCP.exec(url);
    if (url.startsWith('unix:/')) {
      this._where = { socketPath: url.slice(5) }; // as http.request takes it
      this._netWhere = { path: url.slice(5) }; // as net.connect does
      this._host = 'localhost';
    } else if (m) {
      this._where = { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
      this._netWhere = this._where;
      this._host = `${m[1]}:${m[2]}`;
    } else {
      throw new RangeError(`fling: URL must be http://host:port or unix:/path, not "${url}"`);
    }
    if (token !== null && (typeof token !== 'string' || !VISIBLE.test(token))) {
      throw new RangeError('fling: the token must be visible ASCII');
    }
    this._token = token;
    this._connectTimeout = connectTimeout;
    this._ioTimeout = ioTimeout;
    this._agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    /** Why the latest fire() that resolved false failed (null after one that succeeded). */
    this.lastError = null;
  }

  /** Sends one job and hangs up without reading the reply: resolves true once every byte of
   *  the request was handed to the kernel, else false with the reason in lastError. */
  async fire(type, payload = '', opts = {}) {
    if (opts.wait != null || opts.onDisconnect != null) {
      throw new TypeError('fling: wait and onDisconnect need submit(), which reads the reply');
    }
    const req = this._submitRequest(type, payload, opts, false);
    const raw = Buffer.concat([Buffer.from(this._head(req), 'latin1'), req.body]);
    return new Promise((resolve) => {
      const sock = net.connect(this._netWhere);
      sock.setNoDelay(true);
      let timer = setTimeout(() => finish(new Error(`connect to ${this._describe()} timed out`)), this._connectTimeout);
      const finish = (err) => {
        clearTimeout(timer);
        sock.destroy();
        this.lastError = err ? `fling: ${err.message}` : null;
        resolve(!err);
      };
      sock.once('error', finish);
      sock.once('connect', () => {
        clearTimeout(timer);
        timer = setTimeout(() => finish(new Error('send timed out')), this._ioTimeout);
        sock.end(raw, () => finish(null)); // 'finish': the kernel has every byte, and a FIN follows
      });
    });
  }

  /** Sends one job, waits for its acknowledgement and resolves to the job id. With
   *  { wait: N } it resolves once the job ended, or after N seconds. */
  async submit(type, payload = '', opts = {}) {
    const reply = await this._exchange(this._submitRequest(type, payload, opts, true),
      this._ioTimeout + (opts.wait || 0) * 1000);
    if (typeof reply.id !== 'string') throw new FlingError('bad_reply', 'fling: the reply to a submit has no job id');
    return reply.id;
  }

  /** The job as GET /v1/jobs/{id} shows it. */
  async status(id) {
    return this._exchange(this._request('GET', jobPath(id)));
  }

  /** Cancels a waiting job or stops a running one; resolves to the job. */
  async cancel(id) {
    return this._exchange(this._request('DELETE', jobPath(id)));
  }

  /** Queues a failed or cancelled job again ("retried" counts); resolves to the job. */
  async retry(id) {
    return this._exchange(this._request('POST', jobPath(id) + '/retry'));
  }

  /** One page of jobs, newest first: { jobs: [...], next: cursor or null }. */
  async jobs({ state, type, limit, after } = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ state, type, limit, after })) if (v != null) q.set(k, String(v));
    const qs = q.toString();
    return this._exchange(this._request('GET', '/v1/jobs' + (qs ? '?' + qs : '')));
  }

  /** Closes the kept-alive connection (the next call opens a new one). */
  close() {
    this._agent.destroy();
    this._agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  _describe() {
    return this._where.socketPath ? 'unix:' + this._where.socketPath : this._host;
  }

  _request(method, path, headers = {}, body = Buffer.alloc(0)) {
    const h = { Host: this._host, ...headers, 'Content-Length': String(body.length) };
    if (this._token !== null) h.Authorization = 'Bearer ' + this._token;
    return { method, path, headers: h, body };
  }

  _submitRequest(type, payload, opts, keepAlive) {
    if (typeof type !== 'string' || !TYPE.test(type)) {
      throw new RangeError(`fling: "${type}" is not a job type name (1-64 of A-Z a-z 0-9 _ . -)`);
    }
    const headers = optionHeaders(opts);
    let body;
    if (Buffer.isBuffer(payload) || payload instanceof Uint8Array) {
      body = Buffer.from(payload);
    } else if (typeof payload === 'string') {
      body = Buffer.from(payload, 'utf8');
    } else {
      body = Buffer.from(JSON.stringify(payload), 'utf8');
      headers['Content-Type'] = 'application/json';
    }
    if (!keepAlive) headers.Connection = 'close';
    return this._request('POST', '/v1/jobs/' + type, headers, body);
  }

  _head(req) {
    let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
    for (const [k, v] of Object.entries(req.headers)) head += `${k}: ${v}\r\n`;
    return head + '\r\n';
  }

  async _exchange(req, ioTimeout = this._ioTimeout) {
    try {
      return await this._once(req, ioTimeout);
    } catch (e) {
      if (!(e.retryable && req.method === 'GET')) throw e;
      return this._once(req, ioTimeout);
    }
  }

  /** One request on the agent's kept-alive socket; resolves to the decoded 2xx reply. */
  _once(req, ioTimeout) {
    return new Promise((resolve, reject) => {
      let connected = false;
      let reused = false;
      const r = http.request({ ...this._where, agent: this._agent, method: req.method, path: req.path,
        headers: req.headers, setHost: false });
      const connectTimer = setTimeout(() => r.destroy(new FlingError('connect_failed',
        `fling: connect to ${this._describe()} timed out`)), this._connectTimeout);
      const ioTimer = setTimeout(() => r.destroy(new FlingError('timeout', 'fling: no reply in time')), ioTimeout);
      const done = () => {
        clearTimeout(connectTimer);
        clearTimeout(ioTimer);
      };
      r.on('socket', (s) => {
        reused = r.reusedSocket;
        if (!s.connecting) {
          connected = true;
          clearTimeout(connectTimer);
        } else {
          s.once('connect', () => {
            connected = true;
            clearTimeout(connectTimer);
          });
        }
      });
      r.on('error', (e) => {
        done();
        if (e instanceof FlingError) return reject(e);
        const err = new FlingError(connected ? 'recv_failed' : 'connect_failed',
          `fling: ${connected ? 'exchange with' : 'connect to'} ${this._describe()}: ${e.message}`);
        // The daemon closed a kept socket just as it was picked: nothing was answered.
        err.retryable = reused && e.code === 'ECONNRESET';
        reject(err);
      });
      r.on('response', (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          done();
          try {
            resolve(decode(res.statusCode, Buffer.concat(chunks).toString('utf8')));
          } catch (e) {
            reject(e);
          }
        });
        res.on('error', (e) => {
          done();
          reject(new FlingError('recv_failed', `fling: reading the reply: ${e.message}`));
        });
      });
      r.end(req.body);
    });
  }
}

module.exports = { Client, FlingError, verifySignature };
