/// <reference lib="dom" />
// The live page in a real browser (Debian's Chromium, headless, through playwright-core): the
// gateway, processor, notifier and dashboard run in-process against the real Redis and RabbitMQ;
// orders placed over HTTP must show up on the open page without a reload.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import {
  createLogger,
  createRedis,
  keys,
  loadConfig,
  redisReady,
  waitForBroker,
  type Broker,
  type RedisClient,
  type RunningService,
} from '@order-pipeline/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start as startGateway } from '../../api-gateway/src/app.js';
import { start as startNotifier } from '../../notifier/src/app.js';
import { start as startProcessor } from '../../order-processor/src/app.js';
import { newBroker } from '../../test/helpers/broker.js';
import { freePort } from '../../test/helpers/processes.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start as startDashboard } from '../src/app.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`[page test] skipped: no Chromium at ${CHROMIUM} (install the Debian package chromium)`);

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('dashboard', 'silent');
const env = { REDIS_URL: redisUrl, RABBITMQ_URLS: rabbitmqUrls.join(','), LOG_LEVEL: 'silent' };
const SKU = 'live-widget';
/** An operator-written key that would run script if the page ever treated it as markup. */
const HOSTILE_SKU = '<img src=x onerror="document.title=1">';
/** Waits in the browser: generous, the machine is shared. */
const PAGE_WAIT_MS = 15_000;

let redis: RedisClient;
const brokers: Broker[] = [];
const services: RunningService[] = [];
let dashboard: RunningService;
let dashboardPort = 0;
let gateway = '';
let profile = '';
let context: BrowserContext;
let page: Page;
/** Console errors and uncaught page errors seen so far. */
const errors: string[] = [];

async function startDash(port: number): Promise<RunningService> {
  const broker = newBroker(loadConfig('dashboard', env), log, 'page-test-dashboard');
  brokers.push(broker);
  await waitForBroker(broker, 20_000);
  return startDashboard({ config: loadConfig('dashboard', env), redis, broker, log, port, host: '127.0.0.1' });
}

async function post(id: string, sku: string, qty: number): Promise<number> {
  const res = await fetch(`${gateway}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id, sku, qty }),
  });
  return res.status;
}

const text = (selector: string) => page.locator(selector).first().textContent({ timeout: PAGE_WAIT_MS });
const count = async (selector: string) => Number(((await text(selector)) ?? '').replace(/,/g, ''));

describe.skipIf(!haveChromium)('the live page in Chromium', () => {
  beforeAll(async () => {
    await resetAll(redisUrl, rabbitmqUrls);
    redis = createRedis({ url: redisUrl });
    await redisReady(redis);
    await redis.mset(keys.inventory(SKU), '10', keys.inventory(HOSTILE_SKU), '3');

    const make = async (service: 'api-gateway' | 'order-processor' | 'notifier') => {
      const config = loadConfig(service, env);
      const broker = newBroker(config, log, `page-test-${service}`);
      brokers.push(broker);
      await waitForBroker(broker, 20_000);
      return { config, redis, broker, log, port: 0, host: '127.0.0.1' };
    };
    const [gw, proc, notif] = await Promise.all([make('api-gateway'), make('order-processor'), make('notifier')]);
    const g = await startGateway(gw);
    gateway = g.address;
    services.push(g, await startProcessor(proc), await startNotifier(notif));
    dashboardPort = await freePort();
    dashboard = await startDash(dashboardPort);

    profile = mkdtempSync(path.join(tmpdir(), 'dashboard-page-'));
    context = await chromium.launchPersistentContext(profile, {
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
      viewport: { width: 1366, height: 768 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (err) => errors.push(`page: ${err.message}`));
  }, 90_000);

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    if (profile) rmSync(profile, { recursive: true, force: true });
    await dashboard?.stop();
    for (const s of services.reverse()) await s.stop().catch(() => undefined);
    for (const b of brokers) await b.close().catch(() => undefined);
    redis?.disconnect();
  });

  it('shows orders placed while it is open, without a reload and without errors', async () => {
    await page.goto(`http://127.0.0.1:${dashboardPort}/`);
    await page.locator('#status[data-state="live"]').waitFor({ timeout: PAGE_WAIT_MS });
    await page.locator('#accepted').waitFor({ timeout: PAGE_WAIT_MS });
    expect(await count('#accepted')).toBe(0);
    expect(await text(`#inventory tr[data-sku="${SKU}"] td.num`)).toBe('10');
    expect(await text('#redis')).toBe('Redis up');
    // One entry per configured node, the dashboard's own among them.
    expect(await page.locator('#brokers li').count()).toBe(rabbitmqUrls.length);
    await page.locator('#brokers li .pill.info', { hasText: 'connected' }).waitFor({ timeout: PAGE_WAIT_MS });
    await page.locator('#brokers li .pill.ok', { hasText: 'up' }).first().waitFor({ timeout: PAGE_WAIT_MS });
    // Marks this document: a reload would lose the mark.
    await page.evaluate(() => ((window as unknown as { mark: number }).mark = 42));

    expect(await post('live-1', SKU, 3)).toBe(202);
    expect(await post('live-2', SKU, 50)).toBe(202);
    expect(await post('live-3', 'live-never-seeded', 1)).toBe(202);
    expect(await post('live-1', SKU, 3)).toBe(200);

    await page.waitForFunction(() => document.getElementById('accepted')?.textContent === '3', undefined, { timeout: PAGE_WAIT_MS });
    await page.waitForFunction((sku) => document.querySelector(`#inventory tr[data-sku="${sku}"] td.num`)?.textContent === '7', SKU, {
      timeout: PAGE_WAIT_MS,
    });
    const row = (id: string) => page.locator(`#recent tr[data-id="${id}"]`);
    await row('live-1').locator('td.status', { hasText: 'created' }).waitFor({ timeout: PAGE_WAIT_MS });
    await row('live-1').locator('td.notification', { hasText: 'sent' }).waitFor({ timeout: PAGE_WAIT_MS });
    await row('live-2').locator('td.status', { hasText: 'rejected: out of stock' }).waitFor({ timeout: PAGE_WAIT_MS });
    await row('live-3').locator('td.status', { hasText: 'rejected: unknown sku' }).waitFor({ timeout: PAGE_WAIT_MS });
    await page.waitForFunction(() => document.getElementById('duplicates')?.textContent === '1', undefined, { timeout: PAGE_WAIT_MS });
    expect(await count('#rejected')).toBe(2);
    // Newest first.
    expect(await page.locator('#recent tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.id))).toEqual([
      'live-3',
      'live-2',
      'live-1',
    ]);

    expect(await page.evaluate(() => (window as unknown as { mark?: number }).mark)).toBe(42);
    expect(errors).toEqual([]);
  });

  it('shows an operator-written SKU as text, never as markup', async () => {
    const cells = await page.locator('#inventory td.sku').allTextContents();
    expect(cells).toContain(HOSTILE_SKU);
    expect(await page.locator('#inventory img').count()).toBe(0);
    expect(await page.title()).toBe('Order pipeline');
  });

  it("shows a clicked order's history, follows its changes, and shows a client-written reason as text", async () => {
    const history = () =>
      page
        .locator('#history tr')
        .evaluateAll((rows) => rows.map((r) => [(r as HTMLElement).dataset.event, r.querySelector('td.details')?.textContent ?? '']));
    await page.locator('#recent tr[data-id="live-1"]').click();
    await page.locator('#history-panel:not([hidden])').waitFor({ timeout: PAGE_WAIT_MS });
    expect(await text('#history-id')).toBe('live-1');
    await page.locator('#history tr[data-event="notification_sent"]').waitFor({ timeout: PAGE_WAIT_MS });
    // The gateway records the acceptance after the broker confirm: the processor may come first.
    expect((await history()).map(([e]) => e).sort()).toEqual(['accepted', 'created', 'notification_sent']);
    expect(await page.locator('#recent tr.selected').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.id))).toEqual([
      'live-1',
    ]);

    // A cancel with a hostile reason: the open panel follows, and shows the reason as text.
    const reason = '<img src=x onerror="document.title=2">';
    const res = await fetch(`${gateway}/orders/live-1/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason }),
    });
    expect(res.status).toBe(202);
    await page.locator('#history tr[data-event="cancelled"]').waitFor({ timeout: PAGE_WAIT_MS });
    const rows = await history();
    expect(rows.find(([e]) => e === 'cancel_requested')?.[1]).toBe(`reason ${reason}`);
    expect(rows.find(([e]) => e === 'cancelled')?.[1]).toBe(`reason ${reason}, units 3`);
    expect(await page.locator('#history img').count()).toBe(0);
    expect(await page.title()).toBe('Order pipeline');
    expect(errors).toEqual([]);
  });

  it('shows a dead-lettered message prominently', async () => {
    const { queues } = await import('@order-pipeline/shared');
    const broker = brokers[0] as Broker;
    await broker.publish('', queues.ordersDlq, Buffer.from('{}'), { persistent: true });
    await page.locator('#dlq-alert', { hasText: queues.ordersDlq }).waitFor({ timeout: PAGE_WAIT_MS });
    await page.locator(`#queues tr.alert[data-queue="${queues.ordersDlq}"]`).waitFor({ timeout: PAGE_WAIT_MS });
  });

  it('says it is reconnecting when the stream drops, and goes live again by itself', async () => {
    const before = errors.length;
    const stopped = Date.now();
    await dashboard.stop();
    // The stop must not wait on the open event stream.
    expect(Date.now() - stopped).toBeLessThan(5000);
    await page.locator('#status[data-state="reconnecting"]', { hasText: 'Reconnecting' }).waitFor({ timeout: PAGE_WAIT_MS });

    dashboard = await startDash(dashboardPort);
    await page.locator('#status[data-state="live"]').waitFor({ timeout: PAGE_WAIT_MS });
    expect(await count('#accepted')).toBe(3);
    // While the server was gone the browser may log its failed reconnects; nothing else.
    expect(errors.slice(before).filter((e) => !/\/events|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE/.test(e))).toEqual([]);
    expect(await page.evaluate(() => (window as unknown as { mark?: number }).mark)).toBe(42);
  });

  describe('with auth on', () => {
    const SECRET = 'page-test-secret-of-at-least-32-bytes!!';
    let authed: RunningService;
    let base = '';
    const viewer = () =>
      new SignJWT({ scope: 'orders:read' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('viewer')
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(SECRET));

    beforeAll(async () => {
      const authEnv = { ...env, AUTH_JWT_SECRET: SECRET };
      const broker = newBroker(loadConfig('dashboard', authEnv), log, 'page-test-dashboard-auth');
      brokers.push(broker);
      await waitForBroker(broker, 20_000);
      authed = await startDashboard({ config: loadConfig('dashboard', authEnv), redis, broker, log, port: 0, host: '127.0.0.1' });
      base = authed.address;
    });

    afterAll(async () => {
      await authed?.stop();
    });

    it('takes ?token= out of the address into sessionStorage and goes live with it', async () => {
      const tab = await context.newPage();
      const jwt = await viewer();
      await tab.goto(`${base}/?token=${jwt}&view=1`);
      await tab.locator('#status[data-state="live"]').waitFor({ timeout: PAGE_WAIT_MS });
      expect(new URL(tab.url()).search).toBe('?view=1');
      expect(await tab.evaluate(() => sessionStorage.getItem('token'))).toBe(jwt);
      expect(await tab.locator('#login').isHidden()).toBe(true);
      // Its history fetch carries the token too; the hostile reason stays text.
      await tab.locator('#recent tr[data-id="live-1"]').click();
      await tab.locator('#history tr[data-event="cancel_requested"]').waitFor({ timeout: PAGE_WAIT_MS });
      expect(await tab.locator('#history img, #inventory img').count()).toBe(0);
      await tab.close();
    });

    it('asks for a token in its login field, says when one is refused, and goes live with a good one', async () => {
      const tab = await context.newPage();
      await tab.goto(`${base}/`);
      await tab.locator('#login:not([hidden])').waitFor({ timeout: PAGE_WAIT_MS });
      await tab.fill('#login-token', 'not-a-token');
      await tab.click('#login button');
      await tab.locator('#login-error', { hasText: 'refused' }).waitFor({ timeout: PAGE_WAIT_MS });
      expect(await tab.evaluate(() => sessionStorage.getItem('token'))).toBeNull();
      await tab.fill('#login-token', await viewer());
      await tab.click('#login button');
      await tab.locator('#status[data-state="live"]').waitFor({ timeout: PAGE_WAIT_MS });
      expect(await tab.locator('#inventory td.sku').allTextContents()).toContain(HOSTILE_SKU);
      expect(await tab.locator('#inventory img').count()).toBe(0);
      expect(await tab.title()).toBe('Order pipeline');
      await tab.close();
    });
  });
});
