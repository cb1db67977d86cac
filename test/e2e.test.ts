// The README's story, played against the four real processes (built as `npm start` runs them)
// on real Redis and RabbitMQ: seed stock, order, repeat, conflict, run out, bad input, a crowd
// of clients on one id, the notification and the dashboard's figures. Every answer is also
// checked against the OpenAPI document (shared/openapi.json).
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_TEXT, keys, queues } from '@order-pipeline/shared';
import { checkedFetch } from './helpers/openapi.js';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { SERVICES, freePort, startService, waitFor } from './helpers/processes.js';
import { PROMETHEUS_ACCEPT } from './helpers/prometheus.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();
const SKU = 'mag-safe-phone-case';
/** Every request of this file: the answer must be as the OpenAPI document describes it. */
const fetch = checkedFetch;

let redis: Redis;
let pipeline: Pipeline;
let gateway = '';
let dashboard = '';
/** Replays answered so far (200): what the dashboard's duplicates figure must show. */
let replays = 0;

interface OrderView {
  id: string;
  sku: string;
  qty: number;
  status: string;
  reason?: string;
  notification?: { status: string; attempts: number; sentAt?: string };
  history?: { at: string; event: string; kind?: string }[];
}

function post(body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${gateway}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Any request to the gateway, JSON-encoding an object body. */
function send(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  return fetch(`${gateway}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

/** Deliveries the processor has handled so far (its consumer_handle_seconds count, summed). */
async function processorHandled(): Promise<number> {
  const text = await (await fetch(`${pipeline.base['order-processor']}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('consumer_handle_seconds_count'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

async function getOrder(id: string): Promise<OrderView | undefined> {
  const res = await fetch(`${gateway}/orders/${id}`);
  return res.status === 200 ? ((await res.json()) as OrderView) : undefined;
}

/** Waits until the order is decided and its notification recorded as sent. */
function settled(id: string): Promise<OrderView> {
  return waitFor(`order ${id} decided and notified`, async () => {
    const o = await getOrder(id);
    return o && o.status !== 'accepted' && o.notification?.status === 'sent' ? o : undefined;
  });
}

/** Every key with its value: what "writes nothing" is checked against. */
async function snapshot(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const k of found) {
      const type = await redis.type(k);
      out[k] =
        type === 'hash'
          ? JSON.stringify(await redis.hgetall(k))
          : type === 'list'
            ? JSON.stringify(await redis.lrange(k, 0, -1))
            : type === 'zset'
              ? JSON.stringify(await redis.zrange(k, 0, -1, 'WITHSCORES'))
              : String(await redis.get(k));
    }
  } while (cursor !== '0');
  return out;
}

describe('the pipeline, end to end, as the README tells it', () => {
  beforeAll(async () => {
    await resetAll(redisUrl, rabbitmqUrls);
    redis = new Redis(redisUrl);
    pipeline = await startPipeline({ redisUrl, rabbitmqUrls });
    gateway = pipeline.base['api-gateway'];
    dashboard = pipeline.base.dashboard;
  }, 90_000);

  afterAll(async () => {
    // Graceful shutdown: every service exits 0 on SIGTERM.
    const codes = await pipeline.stop();
    redis?.disconnect();
    expect(codes).toEqual({ 'api-gateway': 0, 'order-processor': 0, notifier: 0, dashboard: 0 });
  }, 30_000);

  it('accepts an order once stock is seeded, and processes and notifies it', async () => {
    await redis.set(keys.inventory(SKU), 100);
    const res = await post({ id: 'order123', sku: SKU, qty: 2 });
    expect(res.status).toBe(202);
    expect(res.headers.get('location')).toBe('/orders/order123');
    expect(await res.json()).toEqual({ id: 'order123', sku: SKU, qty: 2, status: 'accepted', message: 'Order received: order123' });

    const order = await settled('order123');
    expect(order).toMatchObject({ id: 'order123', sku: SKU, qty: 2, status: 'created', notification: { status: 'sent', attempts: 1 } });
    expect(await redis.get(keys.inventory(SKU))).toBe('98');
    expect(await redis.get(keys.processedCount)).toBe('1');
    expect(await redis.hget(keys.notification('order123'), 'status')).toBe('sent');
  });

  it('replays the same order as a duplicate and never applies it twice', async () => {
    const res = await post({ id: 'order123', sku: SKU, qty: 2 });
    expect(res.status).toBe(200);
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    replays++;
    expect(await res.json()).toMatchObject({ id: 'order123', duplicate: true, message: 'Duplicate order: order123', status: 'accepted' });
    expect(await redis.get(keys.inventory(SKU))).toBe('98');
  });

  it('refuses the same id with another payload (422) and changes nothing', async () => {
    const before = await snapshot();
    const res = await post({ id: 'order123', sku: SKU, qty: 3 });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(await snapshot()).toEqual(before);
  });

  it('rejects an order that exceeds the stock, notifies it, and leaves the stock alone', async () => {
    await redis.set(keys.inventory('last-units'), 5);
    expect((await post({ id: 'too-many', sku: 'last-units', qty: 6 })).status).toBe(202);
    const order = await settled('too-many');
    expect(order).toMatchObject({ status: 'rejected', reason: 'out_of_stock' });
    expect(await redis.get(keys.inventory('last-units'))).toBe('5');

    expect((await post({ id: 'just-enough', sku: 'last-units', qty: 5 })).status).toBe(202);
    expect(await settled('just-enough')).toMatchObject({ status: 'created' });
    expect(await redis.get(keys.inventory('last-units'))).toBe('0');
  });

  it('rejects an unknown SKU without creating its inventory key', async () => {
    expect((await post({ id: 'mystery', sku: 'no-such-sku', qty: 1 })).status).toBe(202);
    expect(await settled('mystery')).toMatchObject({ status: 'rejected', reason: 'unknown_sku' });
    expect(await redis.exists(keys.inventory('no-such-sku'))).toBe(0);
  });

  it('answers every kind of bad input with a 4xx problem and writes nothing', async () => {
    const before = await snapshot();
    const cases: { name: string; res: () => Promise<Response>; status: number }[] = [
      { name: 'malformed JSON', res: () => post('{"id": "x",'), status: 400 },
      { name: 'missing qty', res: () => post({ id: 'bad1', sku: SKU }), status: 400 },
      { name: 'extra property', res: () => post({ id: 'bad2', sku: SKU, qty: 1, price: 3 }), status: 400 },
      { name: 'qty 0', res: () => post({ id: 'bad3', sku: SKU, qty: 0 }), status: 400 },
      { name: 'qty 1001', res: () => post({ id: 'bad4', sku: SKU, qty: 1001 }), status: 400 },
      { name: 'fractional qty', res: () => post({ id: 'bad5', sku: SKU, qty: 1.5 }), status: 400 },
      { name: 'qty as string', res: () => post({ id: 'bad6', sku: SKU, qty: '1' }), status: 400 },
      { name: 'id with a space', res: () => post({ id: 'bad 7', sku: SKU, qty: 1 }), status: 400 },
      { name: 'id of 65 characters', res: () => post({ id: 'x'.repeat(65), sku: SKU, qty: 1 }), status: 400 },
      { name: 'bad email', res: () => post({ id: 'bad8', sku: SKU, qty: 1, email: 'not-an-email' }), status: 400 },
      { name: 'array body', res: () => post('[1,2]'), status: 400 },
      { name: 'wrong content type', res: () => post({ id: 'bad9', sku: SKU, qty: 1 }, { 'content-type': 'text/plain' }), status: 415 },
      { name: 'body over 16 KiB', res: () => post({ id: 'bad10', sku: SKU, qty: 1, pad: 'x'.repeat(17 * 1024) }), status: 413 },
      // POST /orders/{id}/cancel
      { name: 'cancel: malformed id', res: () => send('POST', '/orders/bad%20id/cancel', {}), status: 400 },
      { name: 'cancel: id of 65 characters', res: () => send('POST', `/orders/${'x'.repeat(65)}/cancel`, {}), status: 400 },
      { name: 'cancel: unknown id', res: () => send('POST', '/orders/never-placed/cancel', {}), status: 404 },
      { name: 'cancel: malformed JSON', res: () => send('POST', '/orders/order123/cancel', '{"reason":'), status: 400 },
      { name: 'cancel: empty reason', res: () => send('POST', '/orders/order123/cancel', { reason: '' }), status: 400 },
      {
        name: 'cancel: reason of 201 characters',
        res: () => send('POST', '/orders/order123/cancel', { reason: 'r'.repeat(201) }),
        status: 400,
      },
      { name: 'cancel: reason not a string', res: () => send('POST', '/orders/order123/cancel', { reason: 7 }), status: 400 },
      { name: 'cancel: extra property', res: () => send('POST', '/orders/order123/cancel', { reason: 'x', force: true }), status: 400 },
      {
        name: 'cancel: wrong content type',
        res: () => send('POST', '/orders/order123/cancel', { reason: 'x' }, { 'content-type': 'text/plain' }),
        status: 415,
      },
      {
        name: 'cancel: body over 16 KiB',
        res: () => send('POST', '/orders/order123/cancel', { reason: 'x', pad: 'x'.repeat(17 * 1024) }),
        status: 413,
      },
      // The inventory API
      { name: 'inventory: malformed SKU', res: () => send('GET', '/inventory/bad%20sku'), status: 400 },
      { name: 'inventory: never stocked', res: () => send('GET', '/inventory/never-stocked'), status: 404 },
      { name: 'inventory: limit 0', res: () => send('GET', '/inventory?limit=0'), status: 400 },
      { name: 'inventory: limit 101', res: () => send('GET', '/inventory?limit=101'), status: 400 },
      { name: 'inventory: cursor not a cursor', res: () => send('GET', '/inventory?cursor=abc'), status: 400 },
      { name: 'inventory: unknown parameter', res: () => send('GET', '/inventory?sku=x'), status: 400 },
      { name: 'put: malformed SKU', res: () => send('PUT', '/inventory/bad%20sku', { available: 1 }), status: 400 },
      { name: 'put: negative level', res: () => send('PUT', `/inventory/${SKU}`, { available: -1 }), status: 400 },
      { name: 'put: level over 1e9', res: () => send('PUT', `/inventory/${SKU}`, { available: 1_000_000_001 }), status: 400 },
      { name: 'put: fractional level', res: () => send('PUT', `/inventory/${SKU}`, { available: 1.5 }), status: 400 },
      { name: 'put: level as string', res: () => send('PUT', `/inventory/${SKU}`, { available: '5' }), status: 400 },
      { name: 'put: malformed JSON', res: () => send('PUT', `/inventory/${SKU}`, '{"available":'), status: 400 },
      {
        name: 'put: wrong content type',
        res: () => send('PUT', `/inventory/${SKU}`, { available: 1 }, { 'content-type': 'text/plain' }),
        status: 415,
      },
      {
        name: 'put: body over 16 KiB',
        res: () => send('PUT', `/inventory/${SKU}`, { available: 1, pad: 'x'.repeat(17 * 1024) }),
        status: 413,
      },
      { name: 'adjust: delta 0', res: () => send('POST', `/inventory/${SKU}/adjust`, { delta: 0 }), status: 400 },
      { name: 'adjust: fractional delta', res: () => send('POST', `/inventory/${SKU}/adjust`, { delta: 0.5 }), status: 400 },
      { name: 'adjust: missing delta', res: () => send('POST', `/inventory/${SKU}/adjust`, {}), status: 400 },
      { name: 'adjust: below zero', res: () => send('POST', `/inventory/${SKU}/adjust`, { delta: -1_000_000 }), status: 409 },
      { name: 'adjust: never stocked', res: () => send('POST', '/inventory/never-stocked/adjust', { delta: 5 }), status: 404 },
      {
        name: 'adjust: malformed Idempotency-Key',
        res: () => send('POST', `/inventory/${SKU}/adjust`, { delta: 1 }, { 'idempotency-key': 'a b' }),
        status: 400,
      },
      {
        name: 'adjust: Idempotency-Key of 129 characters',
        res: () => send('POST', `/inventory/${SKU}/adjust`, { delta: 1 }, { 'idempotency-key': 'k'.repeat(129) }),
        status: 400,
      },
      {
        name: 'adjust: wrong content type',
        res: () => send('POST', `/inventory/${SKU}/adjust`, { delta: 1 }, { 'content-type': 'text/plain' }),
        status: 415,
      },
    ];
    const handledBefore = await processorHandled();
    // The orders of the tests before this one were handled: the figure is really read.
    expect(handledBefore).toBeGreaterThan(0);
    for (const c of cases) {
      const res = await c.res();
      expect(res.status, c.name).toBe(c.status);
      expect(res.headers.get('content-type'), c.name).toContain('application/problem+json');
      const body = (await res.json()) as { status: number; title: string; detail: string; errors?: unknown[] };
      expect(body.status, c.name).toBe(c.status);
      expect(body.detail, c.name).toBeTruthy();
      // A bad body, query or SKU says which part is wrong; a bad order id in the path is the whole answer.
      if (c.status === 400 && body.title !== 'Invalid Order Id') expect(body.errors?.length ?? 0, c.name).toBeGreaterThan(0);
    }
    // A message published by mistake would reach the processor within this pause.
    await new Promise((r) => setTimeout(r, 500));
    expect(await snapshot()).toEqual(before);
    expect(await processorHandled()).toBe(handledBefore);
  });

  it('takes one order when many clients send the same id at once', async () => {
    await redis.set(keys.inventory('crowd-sku'), 50);
    const answers = await Promise.all(Array.from({ length: 40 }, () => post({ id: 'crowd-1', sku: 'crowd-sku', qty: 1 })));
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 202)).toHaveLength(1);
    expect(statuses.every((s) => s === 202 || s === 200 || s === 409)).toBe(true);
    replays += statuses.filter((s) => s === 200).length;
    await settled('crowd-1');
    expect(await redis.get(keys.inventory('crowd-sku'))).toBe('49');
  });

  it("shows the dashboard's figures as JSON, as Prometheus text and as a page", async () => {
    const processed = Number(await redis.get(keys.processedCount));
    const res = await fetch(`${dashboard}/metrics?sku=${SKU}&order_id=order123`);
    expect(res.status).toBe(200);
    const m = (await res.json()) as Record<string, unknown> & {
      orders: Record<string, number>;
      inventory: Record<string, number>;
      queues: Record<string, { messages: number; consumers: number }>;
    };
    expect(m.processed_orders_count).toBe(processed);
    expect(m.inventory_level).toBe(98);
    expect(m.notification_status).toBe('sent');
    expect(m.orders).toMatchObject({ duplicates: replays, created: processed, rejected: 2 });
    expect(m.orders.accepted).toBe(5);
    expect(m.inventory).toMatchObject({ [SKU]: 98, 'last-units': 0, 'crowd-sku': 49 });
    expect(m.queues[queues.orders]).toMatchObject({ consumers: 1 });
    expect(m.queues[queues.notifier]).toMatchObject({ consumers: 1 });

    const unknown = (await (await fetch(`${dashboard}/metrics?order_id=nobody`)).json()) as Record<string, unknown>;
    expect(unknown.notification_status).toBeNull();

    const prom = await fetch(`${dashboard}/metrics`, { headers: { accept: PROMETHEUS_ACCEPT } });
    expect(prom.headers.get('content-type')).toMatch(/text\/plain|openmetrics/);
    expect(await prom.text()).toMatch(new RegExp(`sku="${SKU}"\\} 98`));

    const page = await fetch(`${dashboard}/`);
    expect(page.headers.get('content-type')).toContain('text/html');
    // The page's script is a file of its own (the CSP allows no inline script).
    expect(await page.text()).toContain('<script src="/app.js"></script>');
    expect(await (await fetch(`${dashboard}/app.js`)).text()).toContain("new EventSource('/events')");
  });

  it('serves the order and its notification at GET /orders/{id}, and 404 for an unknown id', async () => {
    const o = await getOrder('order123');
    expect(o).toMatchObject({ id: 'order123', sku: SKU, qty: 2, status: 'created', notification: { status: 'sent', attempts: 1 } });
    expect(typeof o?.notification?.sentAt).toBe('string');
    // Its history: each change once (the replay and the refused 422 above added nothing). The
    // gateway records the acceptance after the confirm, so the processor (and even the notifier)
    // may come first.
    const events = (o?.history ?? []).map((e) => e.event);
    expect(events.sort()).toEqual(['accepted', 'created', 'notification_sent']);
    // And it is listed, under its sku and its status.
    const listed = (await (await fetch(`${gateway}/orders?sku=${SKU}&status=created`)).json()) as { items: { id: string }[] };
    expect(listed.items.map((i) => i.id)).toContain('order123');
    const missing = await fetch(`${gateway}/orders/nobody`);
    expect(missing.status).toBe(404);
  });

  it('serves its contract: the OpenAPI document, and on every service the ops endpoints and the problem pages', async () => {
    for (const base of [gateway, dashboard]) expect(await (await fetch(`${base}/openapi.json`)).text()).toBe(OPENAPI_TEXT);
    for (const service of SERVICES) {
      const base = pipeline.base[service];
      expect((await fetch(`${base}/healthz`)).status, service).toBe(200);
      expect((await fetch(`${base}/readyz`)).status, service).toBe(200);
      expect((await fetch(`${base}/metrics`)).status, service).toBe(200);
      // A problem's type is relative: it resolves to a page on the service that answered.
      const missing = await fetch(`${base}/no-such-route`);
      const { type } = (await missing.json()) as { type: string };
      expect(type, service).toBe('/problems/not-found');
      const page = await fetch(new URL(type, missing.url));
      expect(page.status, service).toBe(200);
      expect(await page.text(), service).toContain('<h1>Not Found</h1>');
    }
  });

  it('stops a service at start with one line naming a malformed variable', async () => {
    const p = startService('api-gateway', {
      REDIS_URL: redisUrl,
      RABBITMQ_URLS: rabbitmqUrls.join(','),
      PUBLISH_TIMEOUT_MS: 'soon',
      GATEWAY_PORT: String(await freePort()),
    });
    expect(await p.exited).toBe(1);
    const lines = p.output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('PUBLISH_TIMEOUT_MS');
  });
});
