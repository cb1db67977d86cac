// POST /orders/{id}/cancel in-process against real Redis and RabbitMQ: every row of its table,
// each answer checked against the OpenAPI document, with its side effects (the order hash, the
// order.cancel_requested messages in orders.queue). Bad input changes nothing.
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import {
  applyTopology,
  cancelOrder,
  createLogger,
  createRedis,
  expireOrder,
  keys,
  loadConfig,
  queues,
  redisReady,
  reserveOrder,
  type Broker,
  type Config,
  type RedisClient,
} from '@order-pipeline/shared';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cutRedisAfterConfirm, drainQueue, newBroker, openTopologyChannel } from '../../test/helpers/broker.js';
import { expectDocumented } from '../../test/helpers/openapi.js';
import { freePort } from '../../test/helpers/processes.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('api-gateway', 'silent');
const config: Config = loadConfig('api-gateway', {
  REDIS_URL: redisUrl,
  RABBITMQ_URLS: rabbitmqUrls.join(','),
  PUBLISH_TIMEOUT_MS: '2000',
  LOG_LEVEL: 'silent',
});

let redis: RedisClient;
let gwRedis: RedisClient;
let broker: Broker;
let gw: Gateway;
let amqp: ChannelModel;
let ch: Channel;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = createRedis({ url: redisUrl });
  gwRedis = createRedis({ url: redisUrl }, { log });
  broker = newBroker(config, log, 'gateway-cancel-test');
  await Promise.all([redisReady(redis), redisReady(gwRedis), broker.connection.connect({ timeout: 20_000 })]);
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, config.queueType));
  gw = await start({ config, redis: gwRedis, broker, log, port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await gw?.stop();
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await amqp?.close().catch(() => undefined);
  await broker?.close();
  gwRedis?.disconnect();
  redis?.disconnect();
});

const takeMessages = (): Promise<GetMessage[]> => drainQueue(ch, queues.orders);

beforeEach(async () => {
  await takeMessages();
});

interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** Every answer is also checked against the OpenAPI document (shared/openapi.json). */
async function request(path: string, init: RequestInit = {}, base = gw.address): Promise<Reply> {
  const res = await fetch(base + path, init);
  const text = await res.text();
  expectDocumented({ method: init.method ?? 'GET', path, status: res.status, headers: res.headers, body: text });
  return {
    status: res.status,
    headers: res.headers,
    body: /json/.test(res.headers.get('content-type') ?? '') ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

/** POST /orders/{id}/cancel; `body` undefined sends no body (and no Content-Type). */
function cancel(id: string, body?: unknown, opts: { base?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const init: RequestInit = { method: 'POST' };
  if (body !== undefined) {
    init.headers = { 'content-type': 'application/json', ...opts.headers };
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  } else if (opts.headers) init.headers = opts.headers;
  return request(`/orders/${encodeURIComponent(id)}/cancel`, init, opts.base);
}

async function place(order: { id: string; sku: string; qty: number; email?: string }): Promise<void> {
  const r = await request('/orders', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(order) });
  expect(r.status).toBe(202);
  expect(await takeMessages()).toHaveLength(1);
}

function expectProblem(r: Reply, status: number, slug: string): void {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ status, type: `/problems/${slug}`, title: expect.any(String), detail: expect.any(String) });
}

async function scriptCalls(): Promise<number> {
  const info = await redis.info('commandstats');
  let calls = 0;
  for (const m of info.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+)/gm)) calls += Number(m[1]);
  return calls;
}

/** What a refused request must leave alone: the keys, the order hash, the scripts run. */
async function snapshot(id: string): Promise<unknown> {
  return { size: await redis.dbsize(), order: await redis.hgetall(keys.order(id)), scripts: await scriptCalls() };
}

const bodyOf = (m: GetMessage) => JSON.parse(m.content.toString('utf8')) as Record<string, unknown>;

describe('POST /orders/{id}/cancel', () => {
  it('an accepted order: 202 cancelling with Location once order.cancel_requested is confirmed; the request is recorded', async () => {
    const order = { id: 'gc-new-1', sku: 'sku-a', qty: 2, email: 'c@example.com' };
    await place(order);
    const r = await cancel(order.id, { reason: 'ordered by mistake' });
    expect(r.status).toBe(202);
    expect(r.headers.get('location')).toBe('/orders/gc-new-1');
    expect(r.body).toEqual({
      id: order.id,
      status: 'cancelling',
      reason: 'ordered by mistake',
      message: 'Cancellation requested: gc-new-1',
    });

    const out = await takeMessages();
    expect(out.map((m) => m.properties.messageId)).toEqual(['gc-new-1:order.cancel_requested']);
    expect(out[0]?.properties.deliveryMode).toBe(2);
    expect(bodyOf(out[0] as GetMessage)).toMatchObject({
      type: 'order.cancel_requested',
      order,
      cancelReason: 'ordered by mistake',
    });
    const h = await redis.hgetall(keys.order(order.id));
    expect(h).toMatchObject({ status: 'accepted', cancelReason: 'ordered by mistake' });
    expect(Date.parse(h.cancelRequestedAt ?? '')).toBeGreaterThan(0);

    const got = await request('/orders/gc-new-1');
    expect(got.body).toMatchObject({ status: 'cancelling', cancelReason: 'ordered by mistake', cancelRequestedAt: h.cancelRequestedAt });
  });

  it('Redis failing between the confirm and the record: 503, not 202; the retry publishes again and is recorded', async () => {
    const order = { id: 'gc-unrecorded-1', sku: 'sku-a', qty: 1 };
    await place(order);
    const cut = await cutRedisAfterConfirm(broker, redis, redisUrl, log);
    cleanups.push(cut.close);
    const other = await start({ config, redis: cut.redis, broker: cut.broker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());

    cut.arm();
    const first = await cancel(order.id, { reason: 'twice' }, { base: other.address });
    // The broker holds the request, but a 202 would stand for a cancellation GET does not show.
    expectProblem(first, 503, 'service-unavailable');
    expect(first.headers.get('retry-after')).toBe('1');
    expect((await request(`/orders/${order.id}`)).body.status).toBe('accepted');
    await redisReady(cut.redis);
    const retry = await cancel(order.id, { reason: 'twice' }, { base: other.address });
    expect(retry.status).toBe(202);
    expect((await request(`/orders/${order.id}`)).body).toMatchObject({ status: 'cancelling', cancelReason: 'twice' });
    // Two requests in the broker: the processor cancels once (cancel-9.lua; its tests).
    expect((await takeMessages()).map((m) => m.properties.messageId)).toEqual([
      'gc-unrecorded-1:order.cancel_requested',
      'gc-unrecorded-1:order.cancel_requested',
    ]);
  });

  it.each<[string, unknown]>([
    ['no body and no Content-Type', undefined],
    ['an empty JSON body', ''],
    ['an empty object', {}],
  ])('with %s: 202 without a reason', async (_name, body) => {
    const id = `gc-empty-${Math.random().toString(36).slice(2)}`;
    await place({ id, sku: 'sku-a', qty: 1 });
    const r = await cancel(id, body);
    expect(r.status).toBe(202);
    expect(r.body).toEqual({ id, status: 'cancelling', message: `Cancellation requested: ${id}` });
    const [m] = await takeMessages();
    expect(bodyOf(m as GetMessage).cancelReason).toBeUndefined();
    expect((await redis.hgetall(keys.order(id))).cancelReason).toBeUndefined();
  });

  it('a created order can be cancelled (202)', async () => {
    const order = { id: 'gc-created-1', sku: 'sku-c', qty: 1 };
    await place(order);
    await redis.set(keys.inventory('sku-c'), '5');
    expect(await reserveOrder(redis, order, new Date())).toEqual({ outcome: 'created' });
    expect((await cancel(order.id)).status).toBe(202);
    expect(await takeMessages()).toHaveLength(1);
    expect((await request('/orders/gc-created-1')).body.status).toBe('cancelling');
  });

  it('cancelling again is 200 Idempotent-Replayed (cancelling, then cancelled) and publishes nothing', async () => {
    const order = { id: 'gc-again-1', sku: 'sku-a', qty: 3 };
    await place(order);
    expect((await cancel(order.id, { reason: 'first' })).status).toBe(202);
    expect(await takeMessages()).toHaveLength(1);

    const again = await cancel(order.id, { reason: 'second' });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe('/orders/gc-again-1');
    expect(again.body).toEqual({
      id: order.id,
      status: 'cancelling',
      reason: 'first',
      message: 'Cancellation already requested: gc-again-1',
      duplicate: true,
    });
    expect(await takeMessages()).toHaveLength(0);

    // The processor decides it.
    expect(await cancelOrder(redis, order, 'first', new Date())).toEqual({ outcome: 'cancelled', units: 0 });
    const done = await cancel(order.id);
    expect(done.status).toBe(200);
    expect(done.headers.get('idempotent-replayed')).toBe('true');
    expect(done.body).toMatchObject({
      status: 'cancelled',
      reason: 'first',
      message: 'Order already cancelled: gc-again-1',
      duplicate: true,
    });
    expect(await takeMessages()).toHaveLength(0);
    const got = await request('/orders/gc-again-1');
    expect(got.body).toMatchObject({ status: 'cancelled', cancelReason: 'first', cancelledAt: expect.any(String) });
  });

  it('ten concurrent cancels of one order: one 202, the rest 200 cancelling, at least one message', async () => {
    const order = { id: 'gc-concurrent-1', sku: 'sku-a', qty: 1 };
    await place(order);
    const replies = await Promise.all(Array.from({ length: 10 }, () => cancel(order.id, { reason: 'hurry' })));
    expect(replies.filter((r) => r.status === 202)).toHaveLength(1);
    const others = replies.filter((r) => r.status !== 202);
    for (const r of others) expect([r.status, r.body.status]).toEqual([200, 'cancelling']);
    const out = await takeMessages();
    expect(out.length).toBeGreaterThanOrEqual(1);
    expect(new Set(out.map((m) => m.properties.messageId))).toEqual(new Set(['gc-concurrent-1:order.cancel_requested']));
  });

  it.each(['rejected', 'expired'] as const)('a %s order is 409 order-not-cancellable; nothing is written or published', async (final) => {
    const order = { id: `gc-${final}-1`, sku: 'sku-none', qty: 1 };
    await place(order);
    if (final === 'rejected') expect(await reserveOrder(redis, order, new Date())).toMatchObject({ outcome: 'rejected' });
    else expect(await expireOrder(redis, order, new Date())).toEqual({ outcome: 'expired' });
    const before = await snapshot(order.id);
    const r = await cancel(order.id, { reason: 'late' });
    expectProblem(r, 409, 'order-not-cancellable');
    expect(await snapshot(order.id)).toEqual(before);
    expect(await takeMessages()).toHaveLength(0);
  });

  it('an unknown id is 404, a malformed one 400; nothing is written or published', async () => {
    const before = await snapshot('gc-never');
    expectProblem(await cancel('gc-never'), 404, 'order-not-found');
    expectProblem(await cancel('bad id!'), 400, 'invalid-order-id');
    expect(await snapshot('gc-never')).toEqual(before);
    expect(await takeMessages()).toHaveLength(0);
  });

  describe('bad input changes nothing', () => {
    const id = 'gc-bad-1';
    beforeAll(async () => {
      await place({ id, sku: 'sku-a', qty: 1 });
    });

    it.each([
      ['truncated JSON', '{"reason":"x"', 'malformed-json'],
      ['plain text', 'stop it', 'malformed-json'],
      ['an empty reason', { reason: '' }, 'invalid-cancel-request'],
      ['a 201-character reason', { reason: 'r'.repeat(201) }, 'invalid-cancel-request'],
      ['a reason that is not a string', { reason: 5 }, 'invalid-cancel-request'],
      ['an extra property', { reason: 'x', qty: 0 }, 'invalid-cancel-request'],
      ['an array', ['x'], 'invalid-cancel-request'],
      ['null', null, 'invalid-cancel-request'],
    ])('%s gets 400 with errors', async (_name, body, slug) => {
      const before = await snapshot(id);
      const r = await cancel(id, body);
      expectProblem(r, 400, slug);
      expect((r.body.errors as unknown[]).length).toBeGreaterThan(0);
      expect(await snapshot(id)).toEqual(before);
      expect(await takeMessages()).toHaveLength(0);
    });

    it('a 200-character reason is at the limit and taken', async () => {
      const other = 'gc-limit-1';
      await place({ id: other, sku: 'sku-a', qty: 1 });
      const r = await cancel(other, { reason: 'r'.repeat(200) });
      expect(r.status).toBe(202);
      expect(await takeMessages()).toHaveLength(1);
    });

    it.each([
      ['text/plain', { 'content-type': 'text/plain' }],
      ['a non-UTF-8 charset', { 'content-type': 'application/json; charset=iso-8859-1' }],
      ['a compressed body', { 'content-type': 'application/json', 'content-encoding': 'gzip' }],
    ])('a body with a wrong content type (%s) gets 415', async (_name, headers) => {
      const before = await snapshot(id);
      expectProblem(await cancel(id, { reason: 'x' }, { headers }), 415, 'unsupported-media-type');
      expect(await snapshot(id)).toEqual(before);
      expect(await takeMessages()).toHaveLength(0);
    });

    it('a body over 16 KiB gets 413', async () => {
      const before = await snapshot(id);
      expectProblem(await cancel(id, JSON.stringify({ reason: 'x' }) + ' '.repeat(16 * 1024)), 413, 'content-too-large');
      expect(await snapshot(id)).toEqual(before);
      expect(await takeMessages()).toHaveLength(0);
    });
  });

  it('the broker refusing the message (unroutable) gets 503 and records nothing; the retry is 202', async () => {
    const order = { id: 'gc-unroutable-1', sku: 'sku-a', qty: 1 };
    await place(order);
    const before = await redis.hgetall(keys.order(order.id));
    await ch.deleteQueue(queues.orders);
    try {
      const r = await cancel(order.id, { reason: 'x' });
      expectProblem(r, 503, 'service-unavailable');
      expect(r.headers.get('retry-after')).toBe('1');
      expect(await redis.hgetall(keys.order(order.id))).toEqual(before);
    } finally {
      await applyTopology(ch, config.queueType);
    }
    expect((await cancel(order.id, { reason: 'x' })).status).toBe(202);
    expect((await takeMessages()).map((m) => m.properties.messageId)).toEqual(['gc-unroutable-1:order.cancel_requested']);
  });

  it('with the broker unreachable: 503 at once, nothing read or written', async () => {
    await place({ id: 'gc-nobroker-1', sku: 'sku-a', qty: 1 });
    const deadBroker = newBroker(config, log, 'gateway-cancel-dead-broker', [`amqp://guest:guest@127.0.0.1:${await freePort()}`]);
    cleanups.push(() => deadBroker.close());
    const other = await start({ config, redis: gwRedis, broker: deadBroker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());
    const before = await snapshot('gc-nobroker-1');
    const r = await cancel('gc-nobroker-1', undefined, { base: other.address });
    expectProblem(r, 503, 'service-unavailable');
    expect(r.headers.get('retry-after')).toBe('1');
    expect(await snapshot('gc-nobroker-1')).toEqual(before);
    expect(await takeMessages()).toHaveLength(0);
  });

  it('with Redis unreachable: 503 and nothing published', async () => {
    const deadRedis = createRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { log, overrides: { retryStrategy: () => null } });
    cleanups.push(async () => deadRedis.disconnect());
    const other = await start({ config, redis: deadRedis, broker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());
    const r = await cancel('gc-noredis-1', { reason: 'x' }, { base: other.address });
    expectProblem(r, 503, 'service-unavailable');
    expect(r.headers.get('retry-after')).toBe('1');
    expect(await takeMessages()).toHaveLength(0);
  });

  it('/metrics counts cancels by outcome', async () => {
    const text = await (await fetch(`${gw.address}/metrics`)).text();
    const count = (result: string) =>
      Number(new RegExp(`^gateway_cancels_total\\{[^}]*result="${result}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1]);
    expect(count('accepted')).toBeGreaterThanOrEqual(5);
    expect(count('replayed')).toBeGreaterThanOrEqual(10);
    expect(count('not_cancellable')).toBe(2);
    expect(count('not_found')).toBe(1);
    expect(count('invalid')).toBeGreaterThanOrEqual(12);
    expect(count('unavailable')).toBeGreaterThanOrEqual(1);
  });
});

describe('GET /orders/{id} after a cancellation', () => {
  it('shows every notification by event: the first outcome and the cancellation, each its own record', async () => {
    const at = '2026-01-01T00:00:00.000Z';
    await redis.hset(keys.order('gc-get-1'), {
      id: 'gc-get-1',
      sku: 'sku-b',
      qty: '3',
      status: 'cancelled',
      cancelReason: 'too slow',
      cancelRequestedAt: at,
      cancelledAt: at,
      createdAt: at,
      updatedAt: at,
    });
    await redis.hset(keys.notification('gc-get-1'), { status: 'sent', attempts: '1', channel: 'log', sentAt: at });
    await redis.hset(keys.cancellationNotification('gc-get-1'), { status: 'sending', attempts: '2', channel: 'log' });
    const r = await request('/orders/gc-get-1');
    expect(r.body).toEqual({
      id: 'gc-get-1',
      sku: 'sku-b',
      qty: 3,
      status: 'cancelled',
      cancelReason: 'too slow',
      cancelRequestedAt: at,
      cancelledAt: at,
      notification: { status: 'sent', attempts: 1, sentAt: at },
      notifications: { created: { status: 'sent', attempts: 1, sentAt: at }, cancelled: { status: 'sending', attempts: 2 } },
      createdAt: at,
      updatedAt: at,
      history: [],
    });
  });
});
