// GET /orders and the history of GET /orders/{id} in-process against real Redis and RabbitMQ:
// orders recorded by the same scripts the services run, listed newest first from the indexes,
// each once across pages (also while new orders arrive), by sku, status or both; bad queries get
// 400 and write nothing; orders past the retention are skipped and pruned. Every answer is checked
// against the OpenAPI document.
import { randomUUID } from 'node:crypto';
import {
  acceptOrders,
  cancelOrder,
  claimOrders,
  createLogger,
  createRedis,
  keys,
  loadConfig,
  redisReady,
  reserveOrder,
  type Broker,
  type Config,
  type Order,
  type RedisClient,
} from '@order-pipeline/shared';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { newBroker } from '../../test/helpers/broker.js';
import { freePort } from '../../test/helpers/processes.js';
import { expectDocumented } from '../../test/helpers/openapi.js';
import { resetAll, resetRedis, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('api-gateway', 'silent');
const config: Config = loadConfig('api-gateway', {
  REDIS_URL: redisUrl,
  RABBITMQ_URLS: rabbitmqUrls.join(','),
  LOG_LEVEL: 'silent',
  ORDER_RETENTION_DAYS: '1',
});
const DAY = 86_400_000;

let redis: RedisClient;
let gwRedis: RedisClient;
let broker: Broker;
let gw: Gateway;

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = createRedis({ url: redisUrl });
  gwRedis = createRedis({ url: redisUrl }, { log });
  broker = newBroker(config, log, 'gateway-list-test');
  await Promise.all([redisReady(redis), redisReady(gwRedis), broker.connection.connect({ timeout: 20_000 })]);
  gw = await start({ config, redis: gwRedis, broker, log, port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await gw?.stop();
  await broker?.close();
  gwRedis?.disconnect();
  redis?.disconnect();
});

beforeEach(() => resetRedis(redisUrl));

interface Page {
  items: { id: string; sku: string; status: string }[];
  next: string | null;
}

async function get(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(gw.address + path);
  const text = await res.text();
  expectDocumented({ method: 'GET', path, status: res.status, headers: res.headers, body: text });
  return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
}

/** Every page of `query` (`limit` per page), following `next`; `between` runs between pages. */
async function allPages(query: string, between?: () => Promise<void>): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let n = 0; n < 100; n++) {
    const sep = query ? '&' : '';
    const r = await get(`/orders?${query}${cursor ? `${sep}cursor=${cursor}` : ''}`);
    expect(r.status).toBe(200);
    const page = r.body as unknown as Page;
    ids.push(...page.items.map((i) => i.id));
    if (page.next === null) return ids;
    cursor = page.next;
    await between?.();
  }
  throw new Error('more than 100 pages');
}

/** Records the orders as the gateway does (one acceptance batch at `at`, so they share a score). */
async function accept(orders: Order[], at: Date): Promise<void> {
  const claims = orders.map((o) => ({ id: o.id, fingerprint: 'fp', token: randomUUID() }));
  await claimOrders(redis, 5000, claims);
  const acceptances = orders.map((o, i) => ({ ...o, token: claims[i]?.token ?? '', fingerprint: 'fp', response: '{}' }));
  const replies = await acceptOrders(redis, 60, at, acceptances, DAY);
  expect(replies.every((r) => r.outcome === 'accepted')).toBe(true);
}

/** 250 orders over 25 acceptance batches (10 per ms), three skus; some created, rejected or cancelled. */
async function seed(): Promise<{ orders: Order[]; status: Map<string, string>; newestFirst: string[] }> {
  await redis.set(keys.inventory('ls-a'), 1_000_000);
  await redis.set(keys.inventory('ls-b'), 1_000_000);
  const base = Date.now() - 60_000;
  const orders: Order[] = [];
  const status = new Map<string, string>();
  const byScore: { id: string; score: number }[] = [];
  for (let b = 0; b < 25; b++) {
    const batch = Array.from({ length: 10 }, (_, i) => {
      const n = b * 10 + i;
      return { id: `ls:${String(n).padStart(3, '0')}`, sku: ['ls-a', 'ls-b', 'ls-c'][n % 3] ?? 'ls-a', qty: 1 };
    });
    const at = new Date(base + b);
    await accept(batch, at);
    for (const o of batch) {
      orders.push(o);
      byScore.push({ id: o.id, score: at.getTime() });
      status.set(o.id, 'accepted');
    }
  }
  for (const [n, o] of orders.entries()) {
    if (n % 5 === 4) continue; // left accepted
    const r = await reserveOrder(redis, o, new Date(), DAY);
    status.set(o.id, r.outcome === 'created' ? 'created' : 'rejected');
    if (n % 7 === 0 && r.outcome === 'created') {
      await cancelOrder(redis, o, undefined, new Date(), DAY);
      status.set(o.id, 'cancelled');
    }
  }
  byScore.sort((x, y) => y.score - x.score || (x.id < y.id ? 1 : -1));
  return { orders, status, newestFirst: byScore.map((e) => e.id) };
}

describe('GET /orders', () => {
  it('lists 250 orders once each, newest first, across pages, while new orders arrive', async () => {
    const { newestFirst } = await seed();
    let added = 0;
    const ids = await allPages('limit=37', async () => {
      await accept([{ id: `ls-new-${added++}`, sku: 'ls-a', qty: 1 }], new Date());
    });
    expect(ids).toEqual(newestFirst);
    expect(added).toBe(6);
    // The default page is 20, and the newest order comes first.
    const first = await get('/orders');
    const page = first.body as unknown as Page;
    expect(page.items).toHaveLength(20);
    expect(page.items[0]?.id).toBe(`ls-new-${added - 1}`);
    expect(page.next).toEqual(expect.any(String));
  });

  it('filters by sku, by status, and by both, each newest first', async () => {
    const { orders, status, newestFirst } = await seed();
    const skuOf = new Map(orders.map((o) => [o.id, o.sku]));
    for (const sku of ['ls-a', 'ls-c']) {
      expect(await allPages(`sku=${sku}&limit=100`)).toEqual(newestFirst.filter((id) => skuOf.get(id) === sku));
    }
    for (const s of ['accepted', 'created', 'rejected', 'cancelled', 'expired']) {
      expect(await allPages(`status=${s}&limit=50`)).toEqual(newestFirst.filter((id) => status.get(id) === s));
    }
    const both = newestFirst.filter((id) => skuOf.get(id) === 'ls-b' && status.get(id) === 'created');
    expect(both.length).toBeGreaterThan(0);
    expect(await allPages('sku=ls-b&status=created&limit=100')).toEqual(both);
    expect(await allPages('sku=ls-c&status=created')).toEqual([]);
    // An item is the order's view, as GET /orders/{id} shows it without the history.
    const r = await get('/orders?sku=ls-a&limit=1');
    const [item] = (r.body as unknown as Page).items;
    const one = await get(`/orders/${item?.id ?? ''}`);
    const { history, ...view } = one.body;
    expect(item).toEqual(view);
    expect(history).toEqual(expect.any(Array));
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=1.5', 'limit'],
    ['limit=5&limit=6', 'limit'],
    ['status=cancelling', 'status'],
    ['status=nope', 'status'],
    ['sku=has%20space', 'sku'],
    [`sku=${'x'.repeat(65)}`, 'sku'],
    ['cursor=***', 'cursor'],
    [`cursor=${Buffer.from('["x","a"]').toString('base64url')}`, 'cursor'],
    ['colour=red', 'colour'],
  ])('?%s gets 400 invalid-query naming %s, and writes nothing', async (query, name) => {
    await seed();
    // An index entry past the retention, which a listing would prune: a refused query must not.
    await redis.zadd(keys.ordersIndex, 1, 'ls-ancient');
    const before = { size: await redis.dbsize(), index: await redis.zcard(keys.ordersIndex) };
    const r = await get(`/orders?${query}`);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ type: '/problems/invalid-query', errors: [{ path: name }] });
    expect({ size: await redis.dbsize(), index: await redis.zcard(keys.ordersIndex) }).toEqual(before);
  });

  it('skips and prunes the entries of orders past the retention, or whose keys are gone', async () => {
    const fresh = [
      { id: 'ret-1', sku: 'ret', qty: 1 },
      { id: 'ret-2', sku: 'ret', qty: 1 },
    ];
    await accept(fresh, new Date());
    // An order accepted longer ago than the retention (1 day here): its keys are gone by now.
    const old = Date.now() - DAY - 1000;
    for (const key of [keys.ordersIndex, keys.ordersBySku('ret'), keys.ordersByStatus('accepted')]) await redis.zadd(key, old, 'ret-old');
    // An order whose keys vanished early (deleted by hand): only its entries remain.
    await redis.del(keys.order('ret-2'), keys.history('ret-2'));
    expect(await allPages('sku=ret')).toEqual(['ret-1']);
    expect(await redis.zrange(keys.ordersBySku('ret'), 0, -1)).toEqual(['ret-1']);
    expect(await allPages('')).toEqual(['ret-1']);
    expect(await redis.zrange(keys.ordersIndex, 0, -1)).toEqual(['ret-1']);
    expect(await allPages('status=accepted')).toEqual(['ret-1']);
    expect(await redis.zrange(keys.ordersByStatus('accepted'), 0, -1)).toEqual(['ret-1']);
    // The kept order expires a retention after its acceptance.
    const ttl = await redis.pttl(keys.order('ret-1'));
    expect(ttl).toBeGreaterThan(DAY - 60_000);
    expect(ttl).toBeLessThanOrEqual(DAY);
  });
});

describe('GET /orders without Redis', () => {
  it('answers 503 with Retry-After', async () => {
    const deadRedis = createRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { log, overrides: { retryStrategy: () => null } });
    const other = await start({ config, redis: deadRedis, broker, log, port: 0, host: '127.0.0.1' });
    try {
      const res = await fetch(`${other.address}/orders?limit=5`);
      const text = await res.text();
      expectDocumented({ method: 'GET', path: '/orders?limit=5', status: res.status, headers: res.headers, body: text });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
    } finally {
      await other.stop();
      deadRedis.disconnect();
    }
  });
});

describe('GET /orders/{id} history', () => {
  it('shows each change once, oldest first, however often the processor got the messages', async () => {
    await redis.set(keys.inventory('hist-sku'), 5);
    const order = { id: 'hist:1', sku: 'hist-sku', qty: 2 };
    const at = new Date();
    await accept([order], at);
    const decided = new Date(at.getTime() + 10);
    await reserveOrder(redis, order, decided, DAY);
    await reserveOrder(redis, order, decided, DAY);
    const cancelled = new Date(at.getTime() + 20);
    await cancelOrder(redis, order, 'changed my mind', cancelled, DAY);
    await cancelOrder(redis, order, 'changed my mind', cancelled, DAY);
    const r = await get('/orders/hist:1');
    expect(r.status).toBe(200);
    expect(r.body.history).toEqual([
      { at: at.toISOString(), event: 'accepted' },
      { at: decided.toISOString(), event: 'created' },
      { at: cancelled.toISOString(), event: 'cancelled', reason: 'changed my mind', units: 2 },
    ]);
    // Another order whose id starts with this one's reads nothing of it.
    await accept([{ id: 'hist:1:2', sku: 'hist-sku', qty: 1 }], at);
    expect((await get('/orders/hist:1:2')).body.history).toEqual([{ at: at.toISOString(), event: 'accepted' }]);
  });
});
