#!/usr/bin/env node
// `npm run screenshot`: a picture of the live dashboard with real figures, saved as
// docs/dashboard.png. Starts throwaway Redis and RabbitMQ (a three-node cluster) from the local
// binaries, runs the pipeline as `npm start` does, places a handful of orders (some out of stock,
// some for an unknown SKU, one repeated), waits until the page shows them, and takes the picture
// in headless Chromium at a laptop's size.
//
// Against services that already run: GATEWAY_URL and DASHBOARD_URL (and REDIS_URL to seed the
// stock first; without it the orders go to whatever stock is there).
//
// Environment: CHROMIUM (default /usr/bin/chromium), SCREENSHOT_OUT (default docs/dashboard.png),
// SCREENSHOT_NODES (broker nodes to start, default 3), SCREENSHOT_SIZE (default 1440x900).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { chromium } from 'playwright-core';
import { keys } from '@order-pipeline/shared';
import { freePort, startLocalServers } from './local-servers.mjs';
import { waitFor } from './poll.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = path.resolve(ROOT, process.env.SCREENSHOT_OUT || 'docs/dashboard.png');
const NODES = Number(process.env.SCREENSHOT_NODES || 3);
const [WIDTH = 1440, HEIGHT = 900] = (process.env.SCREENSHOT_SIZE || '1440x900').split('x').map(Number);

/** @param {string} message */
const say = (message) => process.stdout.write(`[screenshot] ${message}\n`);
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/** @param {string} base */
const ready = (base) => waitFor(`${base}/readyz`, async () => ((await fetch(`${base}/readyz`)).ok ? true : undefined), 90_000);

/** Stock seeded before the orders: a few SKUs, one already sold out. */
const STOCK = {
  'mag-safe-phone-case': 120,
  'usb-c-cable': 60,
  'wireless-charger': 8,
  'screen-protector': 45,
  'laptop-stand': 0,
};

/** @typedef {{ id: string, sku: string, qty: number }} Order */

/**
 * The orders: a first wave that fits the stock, placed in bursts so the rate line has a shape,
 * then a steady trickle among which some do not fit the stock and one is for a SKU never seeded.
 * @param {string} prefix
 */
function orders(prefix) {
  const skus = ['mag-safe-phone-case', 'usb-c-cable', 'screen-protector', 'mag-safe-phone-case', 'usb-c-cable'];
  let n = 1001;
  const good = () => {
    const i = n - 1001;
    return { id: `${prefix}${n++}`, sku: /** @type {string} */ (skus[i % skus.length]), qty: 1 + (i % 3) };
  };
  const wave = Array.from({ length: 30 }, good);
  const odd = (/** @type {string} */ sku, /** @type {number} */ qty) => ({ id: `${prefix}${n++}`, sku, qty });
  const trickle = [
    good(),
    odd('wireless-charger', 12),
    good(),
    good(),
    odd('gift-card-50', 1),
    good(),
    odd('laptop-stand', 1),
    good(),
    odd('wireless-charger', 2),
    good(),
    good(),
    good(),
  ];
  return { wave, trickle };
}

/** @type {Array<() => Promise<void>>} */
const cleanups = [];
async function cleanup() {
  for (const c of cleanups.reverse()) await c().catch((err) => say(`cleanup: ${err}`));
}

/** Runs `node scripts/start.mjs` (the `npm start` launcher) and resolves with its URLs once ready. */
async function startPipeline() {
  say(`starting throwaway Redis and a ${NODES}-node RabbitMQ cluster (this takes a while)…`);
  const servers = await startLocalServers({ rabbitNodes: NODES });
  cleanups.push(() => servers.stop());
  const ports = {
    GATEWAY_PORT: await freePort(),
    DASHBOARD_PORT: await freePort(),
    PROCESSOR_PORT: await freePort(),
    NOTIFIER_PORT: await freePort(),
  };
  const env = {
    ...process.env,
    REDIS_URL: servers.redisUrl,
    RABBITMQ_URLS: servers.rabbitmqUrls.join(','),
    LOG_LEVEL: 'warn',
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
  };
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'start.mjs')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  cleanups.push(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000)]);
  });
  const gateway = `http://127.0.0.1:${ports.GATEWAY_PORT}`;
  const dashboard = `http://127.0.0.1:${ports.DASHBOARD_PORT}`;
  try {
    await Promise.all([
      ready(gateway),
      ready(dashboard),
      ready(`http://127.0.0.1:${ports.PROCESSOR_PORT}`),
      ready(`http://127.0.0.1:${ports.NOTIFIER_PORT}`),
    ]);
  } catch (err) {
    process.stderr.write(output);
    throw err;
  }
  return { gateway, dashboard, redisUrl: servers.redisUrl };
}

async function main() {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (install the Debian package chromium, or set CHROMIUM)`);
  const given = process.env.GATEWAY_URL && process.env.DASHBOARD_URL;
  const { gateway, dashboard, redisUrl } = given
    ? { gateway: String(process.env.GATEWAY_URL), dashboard: String(process.env.DASHBOARD_URL), redisUrl: process.env.REDIS_URL }
    : await startPipeline();
  // Fresh ids on running services, so the orders are new rather than replays of an earlier run.
  const prefix = given ? `shot${Date.now().toString(36).slice(-4)}-` : 'order';

  if (redisUrl) {
    const redis = new Redis(redisUrl);
    await redis.mset(Object.fromEntries(Object.entries(STOCK).map(([sku, units]) => [keys.inventory(sku), String(units)])));
    redis.disconnect();
  }

  const profile = mkdtempSync(path.join(tmpdir(), 'dashboard-shot-'));
  cleanups.push(async () => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: WIDTH, height: HEIGHT },
    colorScheme: 'light',
  });
  cleanups.push(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (err) => say(`page error: ${err.message}`));
  await page.goto(`${dashboard}/`);
  await page.locator('#status[data-state="live"]').waitFor({ timeout: 30_000 });

  const { wave, trickle } = orders(prefix);
  say(`placing ${wave.length + trickle.length} orders through ${gateway}…`);
  const post = (/** @type {Order} */ o) =>
    fetch(`${gateway}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(o) }).then(
      (r) => r.status,
    );
  const bursts = [2, 4, 7, 5, 3, 6, 3];
  let placed = 0;
  for (const size of bursts) {
    const statuses = await Promise.all(wave.slice(placed, placed + size).map(post));
    if (statuses.some((s) => s !== 202)) say(`unexpected answers: ${statuses.join(',')}`);
    placed += size;
    await sleep(1000);
  }
  for (const o of trickle) {
    const status = await post(o);
    if (status !== 202) say(`unexpected answer ${status} for ${o.id}`);
    await sleep(350);
  }
  // A client that retries: answered from the stored response, counted as a duplicate.
  const last = /** @type {Order} */ (trickle.at(-1));
  await post(last);
  await post(/** @type {Order} */ (trickle.at(-3)));

  if (!given) {
    const total = placed + trickle.length;
    // @ts-expect-error the function runs in the page, which has a document
    await page.waitForFunction((n) => document.getElementById('accepted')?.textContent === String(n), total, { timeout: 60_000 });
  }
  await page.locator(`#recent tr[data-id="${last.id}"] td.notification`, { hasText: 'sent' }).waitFor({ timeout: 60_000 });
  await page.locator('#brokers .pill.ok', { hasText: 'up' }).first().waitFor({ timeout: 15_000 });
  // Taken while the rates still show the trickle.

  mkdirSync(path.dirname(OUT), { recursive: true });
  await page.screenshot({ path: OUT });
  say(`saved ${path.relative(ROOT, OUT)} (${WIDTH}x${HEIGHT})`);
}

let code = 0;
try {
  await main();
} catch (err) {
  process.stderr.write(`[screenshot] ${err instanceof Error ? err.message : err}\n`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
