import { createHash } from 'node:crypto';

// The live page at `/`: plain HTML, CSS and a script served as its own file (`/app.js`: the CSP
// allows no inline script), no build step. The script listens to `/events` (server-sent events,
// one snapshot about every second) and redraws in place. Kept as a string module so src/ (tests)
// and dist/ (built service) serve it alike. Every string from Redis reaches the DOM through
// textContent only, never as markup: inventory keys are operator-written.
//
// With auth on (the body's data-auth="on"), the page needs a bearer token with orders:read: from
// its login field, or from `?token=`, which it moves out of the address bar at once (so it is not
// bookmarked, shared or sent as a Referer) into sessionStorage (gone with the tab). EventSource
// cannot send an Authorization header, so the stream is then read with fetch.

const STYLE = `
  :root {
    color-scheme: light dark;
    --bg: #f3f5f8; --card: #fff; --ink: #1c2330; --muted: #6b7585; --line: #e3e7ee;
    --ok: #1f8f4e; --ok-bg: #e3f5ea; --bad: #c9302c; --bad-bg: #fdecea; --warn: #a86400; --warn-bg: #fff3dc;
    --info: #2f5fb3; --info-bg: #e8effb; --accent: #3b6fd8;
  }
  @media (prefers-color-scheme: dark) {
    :root {
      --bg: #12161d; --card: #1b212b; --ink: #e6e9ef; --muted: #8c96a8; --line: #2a3240;
      --ok: #4cc27f; --ok-bg: #173324; --bad: #ff6b61; --bad-bg: #3a1c1b; --warn: #f0b357; --warn-bg: #3a2d14;
      --info: #86a9f0; --info-bg: #1c2a45; --accent: #6d97ee;
    }
  }
  * { box-sizing: border-box; }
  body { font: 14px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; background: var(--bg); color: var(--ink); }
  header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.25rem; background: var(--card); border-bottom: 1px solid var(--line); }
  h1 { font-size: 1.15rem; margin: 0; font-weight: 650; }
  header .spacer { flex: 1; }
  main { display: grid; grid-template-columns: minmax(0, 1fr) 23rem; gap: 1rem; padding: 1rem 1.25rem; max-width: 96rem; margin: 0 auto; }
  .col { display: flex; flex-direction: column; gap: 1rem; min-width: 0; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: .6rem; padding: .75rem .9rem; }
  h2 { font-size: .78rem; margin: 0 0 .55rem; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); font-weight: 600; display: flex; gap: .5rem; align-items: baseline; }
  h2 .aside { margin-left: auto; text-transform: none; letter-spacing: 0; font-weight: 400; }
  .pill { display: inline-block; padding: .1rem .55rem; border-radius: 999px; font-size: .8rem; font-weight: 600; background: var(--line); color: var(--muted); white-space: nowrap; }
  .pill.ok { background: var(--ok-bg); color: var(--ok); }
  .pill.bad { background: var(--bad-bg); color: var(--bad); }
  .pill.warn { background: var(--warn-bg); color: var(--warn); }
  .pill.info { background: var(--info-bg); color: var(--info); }
  #updated { color: var(--muted); font-size: .85rem; font-variant-numeric: tabular-nums; }
  .tiles { display: grid; grid-template-columns: repeat(7, minmax(0, 1fr)); gap: .6rem; }
  .tile { border: 1px solid var(--line); border-radius: .5rem; padding: .45rem .65rem; min-width: 0; }
  .tile .n { font-size: 1.55rem; font-weight: 600; font-variant-numeric: tabular-nums; overflow: hidden; text-overflow: ellipsis; }
  .tile .l { color: var(--muted); font-size: .8rem; }
  .tile .r { color: var(--muted); font-size: .75rem; font-variant-numeric: tabular-nums; min-height: 1em; }
  .tile.bad .n { color: var(--bad); }
  .rate { display: grid; grid-template-columns: 13rem minmax(0, 1fr); gap: 1rem; align-items: center; margin-top: .75rem; }
  .rate .n { font-size: 2rem; font-weight: 650; font-variant-numeric: tabular-nums; }
  .rate .l { color: var(--muted); font-size: .8rem; }
  #spark { width: 100%; height: 3.4rem; display: block; }
  #spark polyline { fill: none; stroke: var(--accent); stroke-width: 2; vector-effect: non-scaling-stroke; }
  #spark polygon { fill: var(--accent); opacity: .12; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .28rem .45rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 500; font-size: .78rem; }
  tr:last-child td { border-bottom: 0; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; max-width: 14rem; overflow: hidden; text-overflow: ellipsis; }
  td.sku { max-width: 13rem; overflow: hidden; text-overflow: ellipsis; }
  td.time { color: var(--muted); font-variant-numeric: tabular-nums; }
  .zero { color: var(--bad); font-weight: 600; }
  .empty { color: var(--muted); font-style: italic; }
  tr.alert td { background: var(--bad-bg); color: var(--bad); font-weight: 600; }
  #dlq-alert { display: block; margin: 0 1.25rem; margin-top: 1rem; padding: .6rem .9rem; border-radius: .6rem; background: var(--bad-bg); color: var(--bad); font-weight: 600; border: 1px solid var(--bad); }
  #dlq-alert[hidden] { display: none; }
  .scroll { max-height: 15.5rem; overflow-y: auto; }
  .bar { height: .4rem; border-radius: .2rem; background: var(--accent); opacity: .55; min-width: 1px; }
  td.barcell { width: 35%; }
  ul.nodes { list-style: none; margin: 0; padding: 0; }
  ul.nodes li { display: flex; align-items: center; gap: .5rem; padding: .25rem 0; border-bottom: 1px solid var(--line); }
  ul.nodes li:last-child { border-bottom: 0; }
  .dot { width: .65rem; height: .65rem; border-radius: 50%; background: var(--muted); flex: none; }
  .dot.up { background: var(--ok); }
  .dot.down { background: var(--bad); }
  .node { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; flex: 1; overflow: hidden; text-overflow: ellipsis; }
  .stale { opacity: .55; }
  #invalid { color: var(--warn); font-size: .8rem; margin: .25rem 0 0; }
  #recent tr[data-id] { cursor: pointer; }
  #recent tr.selected td { background: var(--info-bg); }
  #history-panel[hidden] { display: none; }
  #history td.details { white-space: normal; color: var(--muted); }
  #login { display: flex; gap: .4rem; align-items: center; }
  #login[hidden] { display: none; }
  #login input { font: inherit; padding: .15rem .4rem; width: 16rem; }
  #login-error { color: var(--bad); font-size: .85rem; }
  .readonly { color: var(--muted); font-size: .8rem; }
`;

const SCRIPT = `
'use strict';
// A snapshot older than this means the stream stalled even if the browser has not noticed.
const STALE_MS = 5000;
const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n).toLocaleString('en-US');
const rate = (n) => (n >= 10 ? n.toFixed(0) : n.toFixed(1));

// Auth on: the bearer token, taken from ?token= (then removed from the address) or the login field.
const AUTH = document.body.dataset.auth === 'on';
function takeToken() {
  const params = new URLSearchParams(location.search);
  const given = params.get('token');
  if (given) {
    sessionStorage.setItem('token', given);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
  }
  return sessionStorage.getItem('token');
}
let token = AUTH ? takeToken() : null;
const authHeaders = () => (token ? { authorization: 'Bearer ' + token } : {});

function showLogin(message) {
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('login-token').focus();
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('login-token').value.trim();
  if (!value) return;
  token = value;
  sessionStorage.setItem('token', value);
  $('login-token').value = '';
  $('login').hidden = true;
  connect();
});

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  // textContent only: every string here may come from Redis.
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function pill(text, kind) {
  return el('span', 'pill' + (kind ? ' ' + kind : ''), text);
}

function emptyRow(tbody, columns, text) {
  const td = el('td', 'empty', text);
  td.colSpan = columns;
  const tr = el('tr');
  tr.append(td);
  tbody.replaceChildren(tr);
}

function setStatus(kind, text) {
  const s = $('status');
  s.className = 'pill ' + kind;
  s.textContent = text;
  s.dataset.state = kind === 'ok' ? 'live' : kind === 'warn' ? 'reconnecting' : 'down';
}

const TILES = [
  ['accepted', 'accepted', (f) => f.orders.accepted, (r) => r.accepted],
  ['created', 'created', (f) => f.orders.created, (r) => r.created],
  ['rejected', 'rejected', (f) => f.orders.rejected, (r) => r.rejected],
  ['cancelled', 'cancelled', (f) => f.orders.cancelled, (r) => r.cancelled],
  ['duplicates', 'duplicates', (f) => f.orders.duplicates, null],
  ['processed', 'processed', (f) => f.processed_orders_count, null],
  ['sent', 'notifications sent', (f) => f.notifications.sent, (r) => r.sent],
  ['failed', 'notifications failed', (f) => f.notifications.failed, null],
];

function renderTiles(f, rates) {
  const box = $('totals');
  if (box.children.length === 0) {
    box.append(...TILES.map(([id, label]) => {
      const t = el('div', 'tile');
      const n = el('div', 'n', '–');
      n.id = id;
      const r = el('div', 'r');
      r.id = id + '-rate';
      t.append(n, el('div', 'l', label), r);
      return t;
    }));
  }
  for (const [id, , value, rateOf] of TILES) {
    const v = value(f);
    $(id).textContent = fmt(v);
    $(id).parentElement.classList.toggle('bad', id === 'failed' && v > 0);
    $(id + '-rate').textContent = rates && rateOf ? rate(rateOf(rates)) + '/s' : '';
  }
}

function renderRate(rates, history) {
  $('orders-rate').textContent = rates ? rate(rates.accepted) : '–';
  const svg = $('spark');
  const w = 300;
  const h = 60;
  const pts = history.map((p) => p.accepted);
  const max = Math.max(1, ...pts);
  $('spark-max').textContent = 'peak ' + rate(Math.max(0, ...pts)) + '/s, last ' + pts.length + ' s';
  if (pts.length < 2) {
    svg.replaceChildren();
    return;
  }
  // Spread over the whole width; the label below says how many seconds it spans.
  const step = w / (pts.length - 1);
  const x0 = 0;
  const coords = pts.map((v, i) => (x0 + i * step).toFixed(1) + ',' + (h - 2 - (v / max) * (h - 6)).toFixed(1));
  const ns = 'http://www.w3.org/2000/svg';
  const area = document.createElementNS(ns, 'polygon');
  area.setAttribute('points', x0.toFixed(1) + ',' + h + ' ' + coords.join(' ') + ' ' + w + ',' + h);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', coords.join(' '));
  svg.replaceChildren(area, line);
}

const STATUS_KIND = { created: 'ok', rejected: 'bad', accepted: 'info', cancelling: 'info', cancelled: 'warn', expired: 'warn' };
const NOTIFY_KIND = { sent: 'ok', failed: 'bad', sending: 'warn' };

function time(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? '' : d.toLocaleTimeString('en-GB');
}

function renderRecent(list) {
  const tbody = $('recent');
  if (list.length === 0) return emptyRow(tbody, 6, 'no orders yet');
  tbody.replaceChildren(...list.map((o) => {
    const tr = el('tr');
    tr.dataset.id = o.id;
    const status = el('td');
    status.append(pill(o.status + (o.reason ? ': ' + o.reason.replace(/_/g, ' ') : ''), STATUS_KIND[o.status] || ''));
    const notif = el('td');
    notif.append(o.notification ? pill(o.notification.status + (o.notification.attempts > 1 ? ' (' + o.notification.attempts + ' tries)' : ''), NOTIFY_KIND[o.notification.status] || '') : el('span', 'empty', 'pending'));
    status.className = 'status';
    notif.className = 'notification';
    tr.append(el('td', 'time', time(o.createdAt)), el('td', 'id', o.id), el('td', 'sku', o.sku), el('td', 'num', o.qty === null ? '' : fmt(o.qty)), status, notif);
    return tr;
  }));
}

// The history of the order last clicked in the recent list, fetched from the dashboard's own
// origin (the CSP allows no other); fetched again when that order's row changes.
let selected = null;
let selectedSignature = '';

function markSelected() {
  for (const tr of $('recent').children) tr.classList.toggle('selected', tr.dataset.id === selected);
}

function detailsOf(e) {
  const parts = [];
  for (const k of ['reason', 'kind', 'channel', 'attempts', 'units', 'error']) {
    if (e[k] !== undefined && e[k] !== null) parts.push(k + ' ' + String(e[k]).replace(/_/g, ' '));
  }
  return parts.join(', ');
}

async function showHistory(id) {
  selected = id;
  $('history-panel').hidden = false;
  $('history-id').textContent = id;
  markSelected();
  const tbody = $('history');
  let res;
  let body;
  try {
    res = await fetch('/orders/' + encodeURIComponent(id) + '/history', { headers: { accept: 'application/json', ...authHeaders() } });
    body = await res.json();
  } catch (err) {
    if (selected === id) emptyRow(tbody, 3, 'history unavailable');
    return;
  }
  if (selected !== id) return;
  if (!res.ok) return emptyRow(tbody, 3, res.status === 404 ? 'no such order (gone after its retention?)' : 'history unavailable');
  if (body.history.length === 0) return emptyRow(tbody, 3, 'no history recorded');
  tbody.replaceChildren(...body.history.map((e) => {
    const tr = el('tr');
    tr.dataset.event = String(e.event);
    tr.append(el('td', 'time', time(e.at)), el('td', 'event', String(e.event).replace(/_/g, ' ')), el('td', 'details', detailsOf(e)));
    return tr;
  }));
}

function followSelected(list) {
  markSelected();
  const o = list.find((x) => x.id === selected);
  if (!o) return;
  const signature = o.status + '|' + (o.notification ? o.notification.status + o.notification.attempts : '');
  if (signature !== selectedSignature) {
    selectedSignature = signature;
    showHistory(selected);
  }
}

$('recent').addEventListener('click', (ev) => {
  const tr = ev.target instanceof Element ? ev.target.closest('tr') : null;
  if (!tr || !tr.dataset.id) return;
  selectedSignature = '';
  showHistory(tr.dataset.id);
});

function renderQueues(queues) {
  const tbody = $('queues');
  const alert = $('dlq-alert');
  if (queues === null) {
    alert.hidden = true;
    return emptyRow(tbody, 3, 'broker unavailable');
  }
  const dead = [];
  tbody.replaceChildren(...Object.entries(queues).map(([q, d]) => {
    const isDlq = /\\.dlq$/.test(q);
    const tr = el('tr', isDlq && d.messages > 0 ? 'alert' : '');
    tr.dataset.queue = q;
    if (isDlq && d.messages > 0) dead.push(fmt(d.messages) + ' in ' + q);
    tr.append(el('td', '', q), el('td', 'num', fmt(d.messages)), el('td', 'num', fmt(d.consumers)));
    return tr;
  }));
  alert.hidden = dead.length === 0;
  alert.textContent = dead.length === 0 ? '' : 'Dead-lettered messages: ' + dead.join(', ');
}

function renderBrokers(b) {
  const list = $('brokers');
  if (b.nodes.length === 0) return list.replaceChildren(el('li', 'empty', 'no nodes configured'));
  list.replaceChildren(...b.nodes.map((n) => {
    const li = el('li');
    li.dataset.node = n.node;
    const known = n.checkedAt !== undefined;
    li.append(el('span', 'dot ' + (!known ? '' : n.up ? 'up' : 'down')), el('span', 'node', n.node));
    if (n.node === b.connectedTo) li.append(pill('connected', 'info'));
    li.append(pill(!known ? 'checking' : n.up ? 'up' : 'down', !known ? '' : n.up ? 'ok' : 'bad'));
    if (n.error) li.title = n.error;
    return li;
  }));
}

function renderInventory(f) {
  const inv = Object.entries(f.inventory);
  const total = inv.reduce((s, [, n]) => s + n, 0);
  $('inventory-total').textContent = fmt(inv.length) + ' SKUs, ' + fmt(total) + ' units';
  const tbody = $('inventory');
  if (inv.length === 0) emptyRow(tbody, 3, 'no inventory keys');
  else {
    const max = Math.max(1, ...inv.map(([, n]) => n));
    tbody.replaceChildren(...inv.map(([sku, n]) => {
      const tr = el('tr');
      tr.dataset.sku = sku;
      const bar = el('div', 'bar');
      // CSSOM, not a style attribute: allowed by the page's CSP.
      bar.style.width = Math.max(0, Math.min(100, (n / max) * 100)).toFixed(1) + '%';
      const cell = el('td', 'barcell');
      cell.append(bar);
      tr.append(el('td', 'sku', sku), el('td', 'num' + (n === 0 ? ' zero' : ''), fmt(n)), cell);
      return tr;
    }));
  }
  const invalid = Object.entries(f.inventory_invalid || {});
  $('invalid').hidden = invalid.length === 0;
  $('invalid').textContent = invalid.length === 0 ? '' : 'Not whole numbers, left out: ' + invalid.map(([s, v]) => s + ' = ' + v).join(', ');
}

let lastSnapshotAt = 0;

function render(s) {
  lastSnapshotAt = Date.now();
  const redis = $('redis');
  redis.className = 'pill ' + (s.redis.up ? 'ok' : 'bad');
  redis.textContent = s.redis.up ? 'Redis up' : 'Redis down';
  redis.title = s.redis.error || '';
  const broker = $('broker');
  broker.className = 'pill ' + (s.brokers.connectedTo ? 'ok' : 'bad');
  broker.textContent = s.brokers.connectedTo ? 'Broker ' + s.brokers.connectedTo : 'Broker down';
  renderBrokers(s.brokers);
  $('updated').textContent = 'updated ' + time(s.generatedAt);
  $('updated').dataset.at = s.generatedAt;
  setStatus('ok', 'Live');
  // Without Redis the last figures stay, dimmed, rather than a blank page.
  document.querySelector('main').classList.toggle('stale', !s.redis.up);
  if (!s.figures) return;
  renderTiles(s.figures, s.rates);
  renderRate(s.rates, s.history);
  renderRecent(s.recent);
  followSelected(s.recent);
  renderQueues(s.figures.queues);
  renderInventory(s.figures);
}

let source;
// Each connection's number: a stream that ends after a newer one began schedules nothing.
let generation = 0;
function connect() {
  if (!AUTH) {
    source = new EventSource('/events');
    source.addEventListener('snapshot', (e) => render(JSON.parse(e.data)));
    source.onerror = () => {
      setStatus('warn', 'Reconnecting…');
      // The browser retries by itself after a dropped stream, but gives up on an error status (503).
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
    return;
  }
  if (!token) {
    setStatus('bad', 'Signed out');
    return showLogin('');
  }
  const mine = ++generation;
  const aborter = new AbortController();
  source = { close: () => aborter.abort() };
  streamEvents(mine, aborter.signal).then(() => {
    if (mine !== generation || !token) return;
    setStatus('warn', 'Reconnecting…');
    setTimeout(() => mine === generation && connect(), 3000);
  });
}

/** The event stream over fetch, with the token; resolves when it ends (or could not start). */
async function streamEvents(mine, signal) {
  let res;
  try {
    res = await fetch('/events', { headers: { accept: 'text/event-stream', ...authHeaders() }, signal });
  } catch (err) {
    return;
  }
  if (res.status === 401 || res.status === 403) {
    token = null;
    sessionStorage.removeItem('token');
    setStatus('bad', 'Signed out');
    return showLogin(res.status === 403 ? 'This token lacks the orders:read scope' : 'The token was refused');
  }
  if (!res.ok || !res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || mine !== generation) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\\n\\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (event === 'snapshot' && data.length > 0) render(JSON.parse(data.join('\\n')));
      }
    }
  } catch (err) {
    // Aborted (a stalled stream replaced) or dropped: the caller reconnects if still current.
  }
}

setInterval(() => {
  if (lastSnapshotAt && Date.now() - lastSnapshotAt > STALE_MS && $('status').dataset.state === 'live') {
    setStatus('warn', 'Reconnecting…');
    source.close();
    connect();
  }
}, 1000);
connect();
`;

const pageHtml = (auth: boolean) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Order pipeline</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body data-auth="${auth ? 'on' : 'off'}">
<header>
<h1>Order pipeline</h1>
<span class="readonly" title="Nothing on this page changes the pipeline">read-only</span>
<span id="status" class="pill warn" data-state="connecting">Connecting…</span>
<span id="updated"></span>
<span class="spacer"></span>
<span id="redis" class="pill">Redis</span>
<span id="broker" class="pill">Broker</span>
<form id="login" hidden><label for="login-token">Bearer token</label><input id="login-token" type="password" autocomplete="off" spellcheck="false"><button type="submit">Show</button><span id="login-error" role="alert"></span></form>
</header>
<div id="dlq-alert" role="alert" hidden></div>
<main>
<div class="col">
<section>
<h2>Totals</h2>
<div class="tiles" id="totals"></div>
<div class="rate">
<div><div class="n" id="orders-rate">–</div><div class="l">accepted / s (5 s average)</div></div>
<div><svg id="spark" viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="orders per second, last minute"></svg><div class="l" id="spark-max"></div></div>
</div>
</section>
<section>
<h2>Recent orders <span class="aside">newest first</span></h2>
<table>
<thead><tr><th>time</th><th>order</th><th>SKU</th><th class="num">qty</th><th>status</th><th>notification</th></tr></thead>
<tbody id="recent"></tbody>
</table>
</section>
<section id="history-panel" hidden>
<h2>Order history <span class="aside" id="history-id"></span></h2>
<table>
<thead><tr><th>time</th><th>event</th><th>details</th></tr></thead>
<tbody id="history"></tbody>
</table>
</section>
</div>
<div class="col">
<section>
<h2>Queues</h2>
<table>
<thead><tr><th>queue</th><th class="num">messages</th><th class="num">consumers</th></tr></thead>
<tbody id="queues"></tbody>
</table>
</section>
<section>
<h2>Broker nodes</h2>
<ul class="nodes" id="brokers"></ul>
</section>
<section>
<h2>Inventory <span class="aside" id="inventory-total"></span></h2>
<div class="scroll">
<table>
<tbody id="inventory"></tbody>
</table>
</div>
<p id="invalid" hidden></p>
</section>
</div>
</main>
<script src="/app.js"></script>
</body>
</html>
`;

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

/** The page with auth off (as it always was) and on (it asks for a token). */
export const PAGE_HTML = pageHtml(false);
export const PAGE_HTML_AUTH = pageHtml(true);

/** Allows exactly the inline style above, the script file of this origin, and requests to this origin only. */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The page's script, served as /app.js (tests compile it to catch syntax errors a browser would hit). */
export const PAGE_SCRIPT = SCRIPT;
