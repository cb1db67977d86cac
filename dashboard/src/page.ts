import { createHash } from 'node:crypto';

// The live page at `/`: plain HTML with an inline script that polls `/metrics` for JSON every
// second. Kept as a string module so src/ (tests) and dist/ (built service) serve it alike.

const STYLE = `
  :root { color-scheme: light dark; --muted: #888; --ok: #2e7d32; --bad: #c62828; --line: #8884; }
  body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
  #status { color: var(--muted); font-size: .9rem; }
  #status.bad { color: var(--bad); font-weight: 600; }
  .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .75rem; }
  .tile { border: 1px solid var(--line); border-radius: .5rem; padding: .6rem .8rem; }
  .tile .n { font-size: 1.8rem; font-variant-numeric: tabular-nums; }
  .tile .l { color: var(--muted); font-size: .85rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .zero { color: var(--bad); font-weight: 600; }
  .empty { color: var(--muted); font-style: italic; }
`;

const SCRIPT = `
'use strict';
const REFRESH_MS = 1000;
const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n).toLocaleString();

function tiles(el, entries) {
  el.replaceChildren(...entries.map(([label, value]) => {
    const tile = document.createElement('div');
    tile.className = 'tile';
    const n = document.createElement('div');
    n.className = 'n';
    n.textContent = fmt(value);
    const l = document.createElement('div');
    l.className = 'l';
    l.textContent = label;
    tile.append(n, l);
    return tile;
  }));
}

function rows(tbody, list, columns, emptyText) {
  if (list.length === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = columns;
    td.className = 'empty';
    td.textContent = emptyText;
    tr.append(td);
    tbody.replaceChildren(tr);
    return;
  }
  tbody.replaceChildren(...list.map((cells) => {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      // textContent only: SKUs come from Redis keys anyone with access could have written.
      td.textContent = typeof c.v === 'number' ? fmt(c.v) : String(c.v);
      if (typeof c.v === 'number') td.className = 'num';
      if (c.cls) td.className += ' ' + c.cls;
      tr.append(td);
    }
    return tr;
  }));
}

function render(f) {
  tiles($('orders'), [
    ['accepted', f.orders.accepted],
    ['created', f.orders.created],
    ['rejected', f.orders.rejected],
    ['duplicates', f.orders.duplicates],
    ['processed', f.processed_orders_count],
  ]);
  tiles($('notifications'), [['sent', f.notifications.sent], ['failed', f.notifications.failed]]);
  const inv = Object.entries(f.inventory);
  const total = inv.reduce((s, [, n]) => s + n, 0);
  $('inventory-total').textContent = inv.length + ' SKUs, ' + fmt(total) + ' units';
  rows($('inventory'), inv.map(([sku, n]) => [{ v: sku }, { v: n, cls: n === 0 ? 'zero' : '' }]), 2, 'no inventory keys');
  const invalid = Object.entries(f.inventory_invalid || {});
  $('invalid').hidden = invalid.length === 0;
  $('invalid').textContent = invalid.length === 0 ? '' : 'Not whole numbers, left out: ' + invalid.map(([s, v]) => s + '=' + v).join(', ');
  if (f.queues === null) {
    rows($('queues'), [], 3, 'broker unavailable');
  } else {
    rows($('queues'), Object.entries(f.queues).map(([q, d]) => [{ v: q }, { v: d.messages }, { v: d.consumers }]), 3, 'no queues');
  }
}

async function refresh() {
  const status = $('status');
  try {
    const res = await fetch('/metrics', { headers: { Accept: 'application/json' }, cache: 'no-store', signal: AbortSignal.timeout(5000) });
    const body = await res.json();
    if (!res.ok) throw new Error(body.detail || body.title || ('HTTP ' + res.status));
    render(body);
    status.className = '';
    status.textContent = 'Updated ' + new Date(body.generatedAt).toLocaleTimeString();
  } catch (err) {
    status.className = 'bad';
    status.textContent = 'Not updating: ' + err.message;
  } finally {
    // Schedule after the answer, so a slow server never gets overlapping requests.
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
`;

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Order pipeline</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Order pipeline</h1>
<div id="status">Loading…</div>
<h2>Orders</h2>
<div class="tiles" id="orders"></div>
<h2>Notifications</h2>
<div class="tiles" id="notifications"></div>
<h2>Queues</h2>
<table>
<thead><tr><th>queue</th><th class="num">messages</th><th class="num">consumers</th></tr></thead>
<tbody id="queues"></tbody>
</table>
<h2>Inventory <span id="inventory-total" class="empty"></span></h2>
<p id="invalid" class="zero" hidden></p>
<table>
<thead><tr><th>SKU</th><th class="num">units</th></tr></thead>
<tbody id="inventory"></tbody>
</table>
<script>${SCRIPT}</script>
</body>
</html>
`;

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

/** Allows exactly the inline style and script above, and requests to this origin only. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The inline script alone (tests compile it to catch syntax errors a browser would hit). */
export const PAGE_SCRIPT = SCRIPT;
