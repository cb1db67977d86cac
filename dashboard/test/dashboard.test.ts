// The dashboard in-process against real Redis and RabbitMQ: figures seeded straight into Redis and
// messages published to the real queues, read back through GET /metrics as JSON and as Prometheus text.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Agent, request, type IncomingMessage } from 'node:http';
import { connect as connectSocket } from 'node:net';
import vm from 'node:vm';
import { connect, type ChannelModel } from 'amqplib';
import {
  createLogger,
  createRedis,
  encodeEvent,
  exchanges,
  keys,
  loadConfig,
  makeEvent,
  OPENAPI_TEXT,
  queues,
  redisReady,
  routingKeys,
  waitForBroker,
  type Broker,
  type Config,
  type RedisClient,
} from '@order-pipeline/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBroker } from '../../test/helpers/broker.js';
import { checkedFetch } from '../../test/helpers/openapi.js';
import { freePort, waitFor } from '../../test/helpers/processes.js';
import { PROMETHEUS_ACCEPT, samples } from '../../test/helpers/prometheus.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Dashboard } from '../src/app.js';
import type { Figures } from '../src/figures.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('dashboard', 'silent');
const config: Config = loadConfig('dashboard', { REDIS_URL: redisUrl, RABBITMQ_URLS: rabbitmqUrls.join(','), LOG_LEVEL: 'silent' });

const ALL_QUEUES = Object.values(queues);
/** Every answer in this file is also checked against the OpenAPI document (shared/openapi.json). */
const fetch = checkedFetch;

let seed: RedisClient; // the test's own writer
let dashRedis: RedisClient;
let broker: Broker;
let dash: Dashboard;
let amqp: ChannelModel | undefined;
const cleanups: (() => Promise<unknown>)[] = [];

async function getJson(
  base: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ res: Response; body: Record<string, unknown> }> {
  const res = await fetch(base + path, { headers: { Accept: 'application/json', ...headers } });
  return { res, body: (await res.json()) as Record<string, unknown> };
}

async function figures(query = '', base = dash.address): Promise<Figures> {
  const res = await fetch(`${base}/metrics${query}`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return (await res.json()) as Figures;
}

/** Polls the JSON figures until `ok` holds for them (up to 15 s). */
function figuresWhen(what: string, ok: (f: Figures) => boolean): Promise<Figures> {
  return waitFor(
    what,
    async () => {
      const f = await figures();
      return ok(f) ? f : undefined;
    },
    15_000,
  );
}

async function commandCalls(redis: RedisClient, command: string): Promise<number> {
  const info = await redis.info('commandstats');
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  seed = createRedis({ url: redisUrl });
  dashRedis = createRedis({ url: redisUrl }, { log });
  broker = newBroker(config, log, 'dashboard-test');
  await Promise.all([redisReady(seed), redisReady(dashRedis), broker.connection.connect({ timeout: 20_000 })]);

  await seed.mset(
    keys.stats.accepted,
    '3',
    keys.stats.duplicates,
    '1',
    keys.processedCount,
    '2',
    keys.stats.rejected,
    '1',
    keys.stats.notificationsSent,
    '2',
    keys.stats.notificationsFailed,
    '1',
    keys.stats.cancelled,
    '2',
    keys.inventory('mag-safe-phone-case'),
    '98',
    keys.inventory('usb-c-cable'),
    '0',
  );
  await seed.hset(keys.notification('dash-1'), { status: 'sent', attempts: '1', channel: 'log', sentAt: new Date().toISOString() });
  await seed.hset(keys.notification('dash-2'), { status: 'failed', attempts: '5', channel: 'log', lastError: 'webhook answered 500' });

  dash = await start({ config, redis: dashRedis, broker, log, port: 0, host: '127.0.0.1' });
  // The dashboard's channel declares the topology in its setup; wait until the queues can be read.
  await figuresWhen('the queues readable', (f) => f.queues !== null);
});

afterAll(async () => {
  await dash?.stop();
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await amqp?.close().catch(() => undefined);
  await broker?.close();
  seed?.disconnect();
  dashRedis?.disconnect();
});

describe('GET /metrics as JSON', () => {
  it('answers JSON by default with the counters, the inventory and every queue', async () => {
    const res = await fetch(`${dash.address}/metrics`, { headers: { Accept: '*/*' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('vary')).toMatch(/accept/i);
    const body = (await res.json()) as Figures;
    expect(body).toEqual({
      processed_orders_count: 2,
      orders: { accepted: 3, duplicates: 1, created: 2, rejected: 1, cancelled: 2 },
      notifications: { sent: 2, failed: 1 },
      inventory: { 'mag-safe-phone-case': 98, 'usb-c-cable': 0 },
      queues: Object.fromEntries(ALL_QUEUES.map((q) => [q, { messages: 0, consumers: 0 }])),
      generatedAt: expect.any(String),
    });
    expect(Math.abs(Date.parse(body.generatedAt) - Date.now())).toBeLessThan(60_000);
  });

  it('gives the stock of ?sku=, and null for a SKU without a stock key', async () => {
    expect((await figures('?sku=mag-safe-phone-case')).inventory_level).toBe(98);
    expect((await figures('?sku=usb-c-cable')).inventory_level).toBe(0);
    const unknown = await figures('?sku=no-such-sku');
    expect(unknown).toHaveProperty('inventory_level', null);
    expect(unknown).not.toHaveProperty('notification_status');
  });

  it('gives the notification status of ?order_id=, and null for an order without one', async () => {
    expect((await figures('?order_id=dash-1')).notification_status).toBe('sent');
    expect((await figures('?order_id=dash-2')).notification_status).toBe('failed');
    const unknown = await figures('?order_id=dash-never-seen');
    expect(unknown).toHaveProperty('notification_status', null);
    expect(unknown).not.toHaveProperty('inventory_level');
    const both = await figures('?sku=mag-safe-phone-case&order_id=dash-1');
    expect([both.inventory_level, both.notification_status]).toEqual([98, 'sent']);
  });

  it.each([
    ['?sku=bad%20sku', 'sku'],
    ['?sku=', 'sku'],
    ['?sku=a&sku=b', 'sku'],
    [`?order_id=${'x'.repeat(65)}`, 'order_id'],
    ['?order_id=%3Cscript%3E', 'order_id'],
  ])('rejects %s with a 400 problem naming the parameter', async (query, param) => {
    const res = await fetch(`${dash.address}/metrics${query}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const body = (await res.json()) as { status: number; errors: { path: string }[] };
    expect(body.status).toBe(400);
    expect(body.errors.map((e) => e.path)).toEqual([param]);
  });

  it('lists more than a thousand inventory keys through several SCAN pages, never KEYS', async () => {
    const bulk: string[] = [];
    let units = 0;
    for (let i = 0; i < 1500; i++) {
      bulk.push(keys.inventory(`dash-bulk-${String(i).padStart(4, '0')}`), String(i % 50));
      units += i % 50;
    }
    await seed.mset(...bulk);
    // Keys the pattern must skip, and values that are not whole numbers.
    await seed.mset('dash-other:1', '5', 'inventoryx:1', '5', keys.inventory('dash-broken'), 'many', keys.inventory('dash-half'), '12.5');

    const scansBefore = await commandCalls(seed, 'scan');
    const keysBefore = await commandCalls(seed, 'keys');
    const f = await figures();
    const scans = (await commandCalls(seed, 'scan')) - scansBefore;

    expect(scans).toBeGreaterThan(1);
    expect(await commandCalls(seed, 'keys')).toBe(keysBefore);
    const skus = Object.keys(f.inventory);
    expect(skus).toHaveLength(1500 + 2);
    expect(f.inventory['dash-bulk-1499']).toBe(1499 % 50);
    const bulkUnits = Object.entries(f.inventory)
      .filter(([sku]) => sku.startsWith('dash-bulk-'))
      .reduce((sum, [, n]) => sum + n, 0);
    expect(bulkUnits).toBe(units);
    expect(f.inventory).not.toHaveProperty('dash-broken');
    expect(f.inventory_invalid).toEqual({ 'dash-broken': 'many', 'dash-half': '12.5' });
    expect([...skus].sort()).toEqual(skus);
  });
});

describe('GET /metrics as Prometheus text', () => {
  it("answers Prometheus's Accept header with gauges of the same figures", async () => {
    const res = await fetch(`${dash.address}/metrics`, { headers: { Accept: PROMETHEUS_ACCEPT } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = samples(await res.text());
    expect(s.get('pipeline_orders{state="accepted"}')).toBe(3);
    expect(s.get('pipeline_orders{state="duplicates"}')).toBe(1);
    expect(s.get('pipeline_orders{state="created"}')).toBe(2);
    expect(s.get('pipeline_orders{state="rejected"}')).toBe(1);
    expect(s.get('pipeline_orders{state="cancelled"}')).toBe(2);
    expect(s.get('pipeline_notifications{status="sent"}')).toBe(2);
    expect(s.get('pipeline_notifications{status="failed"}')).toBe(1);
    expect(s.get('pipeline_inventory_units{sku="mag-safe-phone-case"}')).toBe(98);
    expect(s.get('pipeline_inventory_units{sku="dash-bulk-0049"}')).toBe(49);
    expect(s.get('pipeline_inventory_invalid_keys')).toBe(2);
    expect(s.get('pipeline_queues_up')).toBe(1);
    for (const q of ALL_QUEUES) expect(s.get(`pipeline_queue_messages{queue="${q}"}`)).toBe(0);
    // The dashboard's own process metrics ride along.
    expect([...s.keys()].some((k) => k.startsWith('process_cpu_user_seconds_total{'))).toBe(true);
  });

  it('answers JSON to a client that ranks JSON first', async () => {
    const res = await fetch(`${dash.address}/metrics`, { headers: { Accept: 'application/json, text/plain;q=0.5' } });
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as Figures).orders.accepted).toBe(3);
  });
});

describe('queue depths', () => {
  it('reflect messages published to orders.queue and consumers attached to notifier.queue', async () => {
    for (let i = 1; i <= 3; i++) {
      const { content, options } = encodeEvent(makeEvent(routingKeys.placed, { id: `dash-q-${i}`, sku: 'mag-safe-phone-case', qty: 1 }));
      await broker.publish(exchanges.direct, routingKeys.placed, content, options);
    }
    amqp = await connect(rabbitmqUrls[0] as string);
    const ch = await amqp.createChannel();
    await ch.consume(queues.notifier, () => undefined);

    const f = await figuresWhen(
      '3 messages in orders.queue and a consumer on notifier.queue',
      (v) => v.queues?.[queues.orders]?.messages === 3 && v.queues?.[queues.notifier]?.consumers === 1,
    );
    expect(f.queues?.[queues.orders]).toEqual({ messages: 3, consumers: 0 });
    expect(f.queues?.[queues.notifier]).toEqual({ messages: 0, consumers: 1 });

    const text = await (await fetch(`${dash.address}/metrics`, { headers: { Accept: PROMETHEUS_ACCEPT } })).text();
    expect(samples(text).get(`pipeline_queue_messages{queue="${queues.orders}"}`)).toBe(3);
    expect(samples(text).get(`pipeline_queue_consumers{queue="${queues.notifier}"}`)).toBe(1);
  });

  it('come back after a queue is deleted by hand (the topology is declared again)', async () => {
    if (!amqp) amqp = await connect(rabbitmqUrls[0] as string);
    const ch = await amqp.createChannel();
    await ch.deleteQueue(queues.ordersDlq);
    await ch.close();
    // The passive check of the missing queue fails and makes the broker close the dashboard's
    // channel; a reconnect declares the topology again.
    expect((await figures()).queues).toBeNull();
    const f = await figuresWhen('the queues readable again', (v) => v.queues !== null);
    expect(f.queues?.[queues.ordersDlq]).toEqual({ messages: 0, consumers: 0 });
    expect(Object.keys(f.queues ?? {})).toEqual(ALL_QUEUES);
  });
});

describe('GET /', () => {
  it('serves a page whose script, a file of its origin, listens to /events and is allowed by its CSP', async () => {
    const res = await fetch(`${dash.address}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    // No inline script: the CSP allows only the script file of this origin.
    expect(html).not.toMatch(/<script>/);
    expect(html).toContain('<script src="/app.js"></script>');
    const js = await fetch(`${dash.address}/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(js.headers.get('x-content-type-options')).toBe('nosniff');
    const script = await js.text();
    const style = /<style>([\s\S]*)<\/style>/.exec(html)?.[1];
    expect(script).toContain("new EventSource('/events')");
    for (const id of ['totals', 'recent', 'inventory', 'queues', 'brokers', 'status', 'redis']) expect(html).toContain(`id="${id}"`);
    // A syntax error would leave the page blank in a browser.
    expect(() => new vm.Script(script)).not.toThrow();
    // No string from Redis may be parsed as markup.
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    const csp = res.headers.get('content-security-policy') ?? '';
    const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(csp).toContain(`style-src ${hash(style as string)}`);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it('sends the security headers on every answer, problems included', async () => {
    for (const path of ['/', '/app.js', '/metrics', '/healthz', '/openapi.json', '/orders/nope/history', '/no-such-page']) {
      const res = await fetch(`${dash.address}${path}`);
      await res.arrayBuffer();
      expect(res.headers.get('x-content-type-options'), path).toBe('nosniff');
      expect(res.headers.get('referrer-policy'), path).toBe('no-referrer');
      expect(res.headers.get('content-security-policy'), path).toContain("frame-ancestors 'none'");
    }
  });
});

describe('the contract', () => {
  it('serves the OpenAPI document, and a page for the type of each problem it answers', async () => {
    const doc = await fetch(`${dash.address}/openapi.json`);
    expect(await doc.text()).toBe(OPENAPI_TEXT);
    const problem = await fetch(`${dash.address}/metrics?sku=bad%20sku`);
    const { type } = (await problem.json()) as { type: string };
    expect(type).toBe('/problems/invalid-query');
    const page = await fetch(new URL(type, problem.url));
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<h1>Invalid Query</h1>');
    expect((await fetch(`${dash.address}/nope`)).status).toBe(404);
    expect((await fetch(`${dash.address}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});

describe('health and readiness', () => {
  it('is alive and ready while Redis and the broker are up', async () => {
    const health = await getJson(dash.address, '/healthz');
    expect([health.res.status, health.body]).toEqual([200, { status: 'ok' }]);
    const ready = await getJson(dash.address, '/readyz');
    expect([ready.res.status, ready.body]).toEqual([200, { status: 'ready' }]);
  });

  it('without a broker still answers the figures, with queues null, and is not ready', async () => {
    const deadBroker = newBroker(config, log, 'dashboard-test-nobroker', [`amqp://guest:guest@127.0.0.1:${await freePort()}`]);
    cleanups.push(() => deadBroker.close());
    const d = await start({ config, redis: dashRedis, broker: deadBroker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => d.stop());

    const f = await figures('?sku=mag-safe-phone-case', d.address);
    expect(f.queues).toBeNull();
    expect(f.orders.accepted).toBe(3);
    expect(f.inventory_level).toBe(98);
    const text = await (await fetch(`${d.address}/metrics`, { headers: { Accept: PROMETHEUS_ACCEPT } })).text();
    expect(samples(text).get('pipeline_queues_up')).toBe(0);
    const ready = await getJson(d.address, '/readyz');
    expect([ready.res.status, ready.body]).toEqual([503, { status: 'not ready', down: ['broker'] }]);
  });

  it('without Redis answers /metrics with a 503 problem and is not ready', async () => {
    const deadRedis = createRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { overrides: { retryStrategy: () => 1000 } });
    deadRedis.on('error', () => undefined);
    cleanups.push(async () => deadRedis.disconnect());
    const d = await start({ config, redis: deadRedis, broker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => d.stop());
    // The shared broker may still be reconnecting after an earlier test closed its channels: only
    // Redis is to be down here.
    await waitForBroker(broker, 20_000);

    const res = await fetch(`${d.address}/metrics`);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { detail: string }).detail).toMatch(/Redis/);
    const ready = await getJson(d.address, '/readyz');
    expect(ready.res.status).toBe(503);
    expect(ready.body.down).toEqual(['redis']);
  });
});

describe('GET /orders/{id}/history (the live page, on a click)', () => {
  it("gives the order's history oldest first, leaving out an entry that is not a JSON object", async () => {
    const at = '2030-01-01T00:00:00.000Z';
    await seed.hset(keys.order('dash-h:1'), { id: 'dash-h:1', sku: 's', qty: '1', status: 'created', createdAt: at });
    await seed.rpush(
      keys.history('dash-h:1'),
      JSON.stringify({ at, event: 'accepted' }),
      'not json',
      JSON.stringify({ at, event: 'created' }),
    );
    const { res, body } = await getJson(dash.address, '/orders/dash-h:1/history');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(body).toEqual({
      id: 'dash-h:1',
      history: [
        { at, event: 'accepted' },
        { at, event: 'created' },
      ],
    });
    // Another id that starts with this one has its own history (none here).
    expect((await fetch(`${dash.address}/orders/dash-h:1:x/history`)).status).toBe(404);
  });

  it('answers 404 for an unknown order and 400 for an id that cannot be one', async () => {
    const missing = await fetch(`${dash.address}/orders/dash-h-never/history`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { type: string }).type).toBe('/problems/order-not-found');
    const bad = await fetch(`${dash.address}/orders/${'x'.repeat(65)}/history`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { type: string }).type).toBe('/problems/invalid-order-id');
  });
});

describe('stop', () => {
  /** GET on 127.0.0.1:port through `agent`; resolves once the whole answer is read. */
  function get(port: number, path: string, agent: Agent): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('answers a request on a kept-alive connection with Connection: close and ends within the grace, as the other services', async () => {
    // Shorter than the dashboard's default (2 s), and well past the slow request's end (Redis is
    // paused for 300 ms) so that only the spare connection is left to cut.
    const graceMs = 1500;
    const d = await start({ config, redis: dashRedis, broker, log, port: 0, host: '127.0.0.1', stopGraceMs: graceMs });
    const port = Number(new URL(d.address).port);
    // A browser's spare connection: open, never a request, so never idle for the server to close.
    const spare = connectSocket(port, '127.0.0.1');
    spare.on('error', () => undefined);
    await once(spare, 'connect');
    const spareClosed = once(spare, 'close');
    // One kept-alive connection: a slow request (Redis paused) and one queued behind it on the same socket.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    await seed.call('CLIENT', 'PAUSE', '300', 'ALL');
    const first = get(port, '/metrics', agent);
    const second = get(port, '/healthz', agent).then(
      (res) => res.headers.connection,
      (err: NodeJS.ErrnoException) => err.code,
    );
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const stopped = d.stop().then(() => Date.now() - t0);

    expect((await first).headers.connection).toBe('keep-alive');
    // The queued request goes out once the first answer is read. It is answered with
    // Connection: close; or, if the server found the connection idle in that moment and closed it
    // first, it never reaches the server and the client sees the reset (and would go elsewhere).
    // Never a keep-alive answer from a stopping server.
    expect(['close', 'ECONNRESET']).toContain(await second);
    // The spare connection is cut at the grace given, not later.
    const took = await stopped;
    expect(took).toBeGreaterThanOrEqual(graceMs - 50);
    // The old stop cut at its own 2 s whatever the grace: this bound tells the two apart.
    expect(took).toBeLessThan(graceMs + 400);
    await spareClosed;
    agent.destroy();
  });
});
