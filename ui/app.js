// app.js — the fling dashboard: counts from /metrics, types and their paused flag from /v1/types,
// the job list from /v1/jobs (one page at a time, cursor paging), a job's page from /v1/jobs/{id}
// and its payload from /v1/jobs/{id}/payload, live updates from /v1/events read with
// fetch() so the token travels in the Authorization header (never in a URL).
'use strict';
(() => {
  const STATES = ['queued', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled'];
  const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
  const STATUS_BITS = [
    [1, 'ABORTED', 'the submitting client left before its 202 arrived'],
    [2, 'TIMEOUT', 'an attempt ran past its time limit'],
  ];
  const CHART_SECONDS = 300;
  const PAGE = 50;
  const PAYLOAD_SHOWN = 64 * 1024;   // a payload can be large: show its head only
  const RETRYABLE = new Set(['failed', 'cancelled']);
  const $ = (sel) => document.querySelector(sel);

  let token = sessionStorage.getItem('fling-token') || '';
  let generation = 0;          // a new sign-in restarts the event stream
  let lastEventId = null;
  let pages = [null];          // the `after` cursor of each page seen; [0] is the first page
  let nextCursor = null;
  let currentJob = null;
  let refreshTimer = null;
  const perSecond = new Map(); // unix second -> {sub, fin}

  class AuthError extends Error {}

  async function api(path, opts = {}) {
    const headers = Object.assign({}, opts.headers);
    if (token) headers.Authorization = 'Bearer ' + token;
    const res = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
    if (res.status === 401) throw new AuthError('the token was refused');
    return res;
  }

  async function apiJSON(path) {
    const res = await api(path);
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(path + ': ' + res.status + ' ' + (body && body.message ? body.message : ''));
    return body;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function showError(msg) {
    const e = $('#error');
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  function fail(err) {
    if (err instanceof AuthError) showLogin(token ? 'The token was refused. Enter it again.' : null);
    else showError(String(err.message || err));
  }

  function showLogin(msg) {
    $('#overview').hidden = true;
    $('#job').hidden = true;
    $('#login').hidden = false;
    if (msg) $('#login-msg').textContent = msg;
    setLive(false);
    generation++;
  }

  function setLive(on) {
    const l = $('#live');
    l.textContent = on ? 'live' : 'offline';
    l.classList.toggle('off', !on);
  }

  // ---- counts ----------------------------------------------------------------------------

  function parseMetrics(text) {
    const types = {};
    const of = (t) => types[t] || (types[t] = Object.fromEntries(STATES.map((s) => [s, 0])));
    for (const line of text.split('\n')) {
      let m = line.match(/^fling_jobs\{type="([^"]*)",state="(\w+)"\} (\d+)/);
      if (m) { of(m[1])[m[2]] = Number(m[3]); continue; }
      m = line.match(/^fling_type_attempts_total\{type="([^"]*)",outcome="(succeeded|failed|cancelled)"\} (\d+)/);
      if (m) of(m[1])[m[2]] = Number(m[3]);
    }
    return types;
  }

  async function loadCounts() {
    const res = await api('/metrics');
    if (!res.ok) throw new Error('/metrics: ' + res.status);
    const types = parseMetrics(await res.text());
    const paused = await loadPaused(types);
    const cards = $('#counts');
    cards.replaceChildren();
    for (const s of STATES) {
      const n = Object.values(types).reduce((a, t) => a + t[s], 0);
      const c = el('div', null, 'card');
      const num = el('div', n, 'n');
      num.id = 'count-' + s;
      c.append(num, el('div', s + (TERMINAL.has(s) ? '*' : ''), 'l'));
      cards.append(c);
    }
    const body = $('#types tbody');
    body.replaceChildren();
    for (const name of Object.keys(types).sort()) {
      const tr = el('tr');
      const nameTd = el('td', name);
      if (paused.get(name)) nameTd.append(el('span', 'paused', 'paused-mark'));
      tr.dataset.type = name;
      tr.append(nameTd, ...STATES.map((s) => el('td', types[name][s])));
      if (paused.has(name)) tr.append(pauseCell(name, paused.get(name)));
      else tr.append(el('td', '-'));
      tr.addEventListener('click', () => { $('#f-type').value = name; firstPage(); });
      body.append(tr);
    }
    const sel = $('#f-type');
    const keep = sel.value;
    sel.replaceChildren(el('option', 'any'));
    sel.firstChild.value = '';
    for (const name of Object.keys(types).sort()) sel.append(el('option', name));
    sel.value = keep;
  }

  // Every configured type gets a row, with or without jobs; returns type -> paused.
  async function loadPaused(types) {
    const body = await apiJSON('/v1/types');
    const paused = new Map();
    for (const t of body.types) {
      paused.set(t.name, t.paused);
      if (!types[t.name]) types[t.name] = Object.fromEntries(STATES.map((s) => [s, 0]));
    }
    return paused;
  }

  function pauseCell(name, isPaused) {
    const td = el('td');
    const btn = el('button', isPaused ? 'Resume' : 'Pause');
    btn.type = 'button';
    btn.className = 'pause';
    btn.addEventListener('click', (ev) => {
      ev.stopPropagation();   // the row's own click filters the job list
      btn.disabled = true;
      setPaused(name, !isPaused).catch(fail).finally(() => { btn.disabled = false; });
    });
    td.append(btn);
    return td;
  }

  async function setPaused(name, pause) {
    const path = '/v1/types/' + encodeURIComponent(name) + (pause ? '/pause' : '/resume');
    const res = await api(path, { method: 'POST' });
    if (!res.ok) throw new Error(path + ': ' + res.status);
    await loadCounts();
  }

  // ---- the chart --------------------------------------------------------------------------

  function countEvent(name) {
    const sec = Math.floor(Date.now() / 1000);
    const b = perSecond.get(sec) || { sub: 0, fin: 0 };
    if (name === 'submitted') b.sub++;
    else if (TERMINAL.has(name)) b.fin++;
    else return;
    perSecond.set(sec, b);
  }

  function drawChart() {
    const now = Math.floor(Date.now() / 1000);
    for (const k of perSecond.keys()) if (k <= now - CHART_SECONDS) perSecond.delete(k);
    let max = 1;
    for (const b of perSecond.values()) max = Math.max(max, b.sub, b.fin);
    const W = 600, H = 120, top = 12;
    const pts = (key) => {
      const out = [];
      for (let i = 0; i < CHART_SECONDS; i++) {
        const b = perSecond.get(now - CHART_SECONDS + 1 + i);
        const v = b ? b[key] : 0;
        out.push((i * W / (CHART_SECONDS - 1)).toFixed(1) + ',' + (H - 2 - v * (H - top - 2) / max).toFixed(1));
      }
      return out.join(' ');
    };
    const svg = $('#chart');
    const ns = 'http://www.w3.org/2000/svg';
    const line = (key) => {
      const p = document.createElementNS(ns, 'polyline');
      p.setAttribute('points', pts(key));
      p.setAttribute('class', key);
      return p;
    };
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', '4');
    label.setAttribute('y', '10');
    label.textContent = 'max ' + max + '/s';
    svg.replaceChildren(line('sub'), line('fin'), label);
  }

  // ---- the job list -----------------------------------------------------------------------

  function stateBadge(s) { return el('span', s, 'state ' + s); }

  async function loadJobs() {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if ($('#f-state').value) q.set('state', $('#f-state').value);
    if ($('#f-type').value) q.set('type', $('#f-type').value);
    const after = pages[pages.length - 1];
    if (after) q.set('after', after);
    const body = await apiJSON('/v1/jobs?' + q);
    const tbody = $('#jobs tbody');
    tbody.replaceChildren();
    for (const j of body.jobs) {
      const tr = el('tr');
      tr.dataset.id = j.id;
      const st = el('td');
      st.append(stateBadge(j.state));
      tr.append(el('td', j.id), el('td', j.type), st, el('td', j.status), el('td', j.attempts + '/' + j.max_attempts),
                el('td', j.created_at));
      tr.addEventListener('click', () => { location.hash = '#/job/' + j.id; });
      tbody.append(tr);
    }
    if (!body.jobs.length) {
      const tr = el('tr');
      const td = el('td', 'no jobs');
      td.colSpan = 6;
      tr.append(td);
      tbody.append(tr);
    }
    nextCursor = body.next;
    $('#next').disabled = !nextCursor;
    $('#first').disabled = pages.length === 1;
  }

  function firstPage() {
    pages = [null];
    loadJobs().catch(fail);
  }

  // ---- a job's page -----------------------------------------------------------------------

  function fields(j) {
    const dl = $('#j-fields');
    dl.replaceChildren();
    const rows = [
      ['type', j.type], ['attempts', j.attempts + ' of ' + j.max_attempts], ['priority', j.priority],
      ['timeout', j.timeout + ' s'], ['created', j.created_at], ['run at', j.run_at], ['started', j.started_at],
      ['finished', j.finished_at], ['updated', j.updated_at], ['exit code', j.exit_code], ['callback', j.callback],
    ];
    for (const [k, v] of rows) dl.append(el('dt', k), el('dd', v === null || v === undefined ? '-' : v));
  }

  function statusBits(status) {
    const ul = $('#j-status');
    ul.replaceChildren();
    let rest = status;
    for (const [bit, name, words] of STATUS_BITS) {
      if (status & bit) ul.append(el('li', bit + ' ' + name + ': ' + words));
      rest &= ~bit;
    }
    for (let bit = 4; rest && bit < 2 ** 30; bit *= 2) {
      if (rest & bit) { ul.append(el('li', bit + ': an unknown bit')); rest &= ~bit; }
    }
    if (!status) ul.append(el('li', '0: no status bits set'));
  }

  function callbacks(list) {
    const tbody = $('#j-callbacks tbody');
    tbody.replaceChildren();
    for (const d of list || []) {
      const tr = el('tr');
      tr.append(el('td', d.event), el('td', d.target), el('td', d.state), el('td', d.attempts),
                el('td', d.last_status === null ? '-' : d.last_status), el('td', d.last_error || '-'),
                el('td', d.next_attempt_at || '-'));
      tbody.append(tr);
    }
    if (!list || !list.length) {
      const tr = el('tr');
      const td = el('td', 'none');
      td.colSpan = 7;
      tr.append(td);
      tbody.append(tr);
    }
  }

  async function loadJob(id) {
    const res = await api('/v1/jobs/' + encodeURIComponent(id));
    $('#j-id').textContent = id;
    if (res.status === 404) {
      $('#j-state').replaceWith(Object.assign(el('span', 'not found', 'state'), { id: 'j-state' }));
      $('#cancel').hidden = true;
      $('#retry').hidden = true;
      return;
    }
    if (!res.ok) throw new Error('/v1/jobs/' + id + ': ' + res.status);
    const j = await res.json();
    const badge = stateBadge(j.state);
    badge.id = 'j-state';
    $('#j-state').replaceWith(badge);
    fields(j);
    statusBits(j.status);
    $('#j-output').textContent = j.output === null ? '(none)' : j.output;
    $('#j-error').textContent = j.error === null ? '(none)' : j.error;
    callbacks(j.callbacks);
    $('#cancel').hidden = TERMINAL.has(j.state);
    $('#retry').hidden = !RETRYABLE.has(j.state);
  }

  // Reads at most PAYLOAD_SHOWN bytes of the body; returns them and whether more was left.
  async function readHead(res) {
    const reader = res.body.getReader();
    const chunks = [];
    let n = 0;
    while (n < PAYLOAD_SHOWN) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      n += value.length;
    }
    const cut = n > PAYLOAD_SHOWN || (n === PAYLOAD_SHOWN && !(await reader.read()).done);
    reader.cancel().catch(() => {});
    const head = new Uint8Array(Math.min(n, PAYLOAD_SHOWN));
    let at = 0;
    for (const c of chunks) {
      const part = c.subarray(0, head.length - at);
      head.set(part, at);
      at += part.length;
    }
    return { head, cut };
  }

  // Text when the bytes are UTF-8 with no control character but tab and newline; null if not.
  function asText(bytes, cut) {
    let text;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: cut });
    } catch (e) {
      return null;
    }
    return /[\u0000-\u0008\u000b-\u001f\u007f]/.test(text) ? null : text;
  }

  function hexDump(bytes) {
    const lines = [];
    for (let off = 0; off < bytes.length; off += 16) {
      const row = bytes.subarray(off, off + 16);
      const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
      const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
      lines.push(off.toString(16).padStart(8, '0') + '  ' + hex.padEnd(47) + '  ' + ascii);
    }
    return lines.join('\n');
  }

  // The payload never changes: it is read once per visit of the page, not on each live refresh.
  async function loadPayload(id) {
    const pre = $('#j-payload');
    const note = $('#j-payload-note');
    pre.textContent = '';
    note.textContent = '';
    const res = await api('/v1/jobs/' + encodeURIComponent(id) + '/payload');
    if (!res.ok) {
      note.textContent = res.status === 404 ? 'no such job' : 'payload not available (HTTP ' + res.status + ')';
      return;
    }
    const { head, cut } = await readHead(res);
    const type = res.headers.get('Content-Type') || 'application/octet-stream';
    const text = asText(head, cut);
    pre.textContent = text !== null ? (text.length ? text : '(empty)') : hexDump(head);
    const total = res.headers.get('Content-Length');
    note.textContent = type + (text !== null ? ', shown as text' : ', shown as a hex dump')
      + (cut ? '; the first ' + PAYLOAD_SHOWN + ' bytes of ' + (total || 'more') + ' shown' : '');
  }

  async function retryJob() {
    const id = currentJob;
    const btn = $('#retry');
    btn.disabled = true;
    try {
      const res = await api('/v1/jobs/' + encodeURIComponent(id) + '/retry', { method: 'POST' });
      const body = await res.json().catch(() => null);
      $('#j-msg').textContent = res.ok ? 'queued again' : (body && body.message) || ('HTTP ' + res.status);
      await loadJob(id);
    } finally {
      btn.disabled = false;
    }
  }

  async function cancelJob() {
    const id = currentJob;
    const btn = $('#cancel');
    btn.disabled = true;
    try {
      const res = await api('/v1/jobs/' + encodeURIComponent(id), { method: 'DELETE' });
      const body = await res.json().catch(() => null);
      $('#j-msg').textContent = res.status === 200 ? 'cancelled'
        : res.status === 202 ? 'stopping: it ends cancelled'
        : (body && body.message) || ('HTTP ' + res.status);
      await loadJob(id);
    } finally {
      btn.disabled = false;
    }
  }

  // ---- live events ------------------------------------------------------------------------

  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh().catch(fail);
    }, 500);
  }

  async function refresh() {
    if (!$('#overview').hidden) {
      await loadCounts();
      if (pages.length === 1) await loadJobs();   // older pages stay still while read
    } else if (currentJob) {
      await loadJob(currentJob);
    }
  }

  function onFrame(frame) {
    let name = 'message', data = null;
    for (const line of frame.split('\n')) {
      if (line.startsWith('id: ')) lastEventId = line.slice(4);
      else if (line.startsWith('event: ')) name = line.slice(7);
      else if (line.startsWith('data: ')) data = line.slice(6);
    }
    if (data === null) return;   // a comment: ": ping", ": gap ..."
    countEvent(name);
    scheduleRefresh();
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function follow(gen) {
    while (gen === generation) {
      try {
        const headers = { Accept: 'text/event-stream' };
        if (lastEventId) headers['Last-Event-ID'] = lastEventId;
        const res = await api('/v1/events', { headers });
        if (!res.ok) throw new Error('/v1/events: ' + res.status);
        setLive(true);
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        while (gen === generation) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            onFrame(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
        reader.cancel().catch(() => {});
      } catch (err) {
        if (err instanceof AuthError) { fail(err); return; }
      }
      if (gen === generation) setLive(false);
      await sleep(2000);
    }
  }

  // ---- routing ----------------------------------------------------------------------------

  async function route() {
    const m = location.hash.match(/^#\/job\/(\d+)$/);
    $('#login').hidden = true;
    showError('');
    if (m) {
      currentJob = m[1];
      $('#overview').hidden = true;
      $('#job').hidden = false;
      $('#j-msg').textContent = '';
      await loadJob(currentJob);
      await loadPayload(currentJob);
    } else {
      currentJob = null;
      $('#job').hidden = true;
      $('#overview').hidden = false;
      await loadCounts();
      await loadJobs();
    }
  }

  function start() {
    generation++;
    route().then(() => follow(generation)).catch(fail);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      token = $('#token').value;
      sessionStorage.setItem('fling-token', token);
      $('#token').value = '';
      start();
    });
    $('#f-state').addEventListener('change', firstPage);
    $('#f-type').addEventListener('change', firstPage);
    $('#next').addEventListener('click', () => { if (nextCursor) { pages.push(nextCursor); loadJobs().catch(fail); } });
    $('#first').addEventListener('click', firstPage);
    $('#cancel').addEventListener('click', () => { cancelJob().catch(fail); });
    $('#retry').addEventListener('click', () => { retryJob().catch(fail); });
    window.addEventListener('hashchange', () => { route().catch(fail); });
    setInterval(drawChart, 1000);
    drawChart();
    start();
  });
})();
