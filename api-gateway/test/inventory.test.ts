// The Inventory API in-process against real Redis and RabbitMQ: every row of GET/PUT
// /inventory/{sku}, POST /inventory/{sku}/adjust (with its Idempotency-Key) and GET /inventory,
// each answer checked against the OpenAPI document, each refusal shown to write nothing.
import { randomUUID } from 'node:crypto';
import {
  createLogger,
  createRedis,
  keys,
  loadConfig,
  redisReady,
  reserveOrder,
  type Broker,
  type Config,
  type RedisClient,
} from '@order-pipeline/shared';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBroker } from '../../test/helpers/broker.js';
import { expectDocumented } from '../../test/helpers/openapi.js';
import { freePort } from '../../test/helpers/processes.js';
import { resetAll, resetRedis, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';
import { MAX_BODY_BYTES } from '../src/body.js';
import { MAX_SCAN_COUNT, scanCount } from '../src/inventory.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('api-gateway', 'silent');
const config: Config = loadConfig('api-gateway', {
  REDIS_URL: redisUrl,
  RABBITMQ_URLS: rabbitmqUrls.join(','),
  LOG_LEVEL: 'silent',
});

let redis: RedisClient; // the test's own view of Redis
let gwRedis: RedisClient;
let broker: Broker;
let gw: Gateway;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = createRedis({ url: redisUrl });
  gwRedis = createRedis({ url: redisUrl }, { log });
  broker = newBroker(config, log, 'inventory-test');
  await Promise.all([redisReady(redis), redisReady(gwRedis), broker.connection.connect({ timeout: 20_000 })]);
  gw = await start({ config, redis: gwRedis, broker, log, port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await gw?.stop();
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await broker?.close();
  gwRedis?.disconnect();
  redis?.disconnect();
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

function send(method: 'PUT' | 'POST', path: string, body: unknown, headers: Record<string, string> = {}, base?: string): Promise<Reply> {
  return request(
    path,
    { method, headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) },
    base,
  );
}
const put = (sku: string, body: unknown, headers?: Record<string, string>) => send('PUT', `/inventory/${sku}`, body, headers);
const adjust = (sku: string, body: unknown, headers?: Record<string, string>, base?: string) =>
  send('POST', `/inventory/${sku}/adjust`, body, headers, base);

function expectProblem(r: Reply, status: number, type?: string): void {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ status, type: type === undefined ? expect.stringMatching(/^\/problems\/[a-z-]+$/) : `/problems/${type}` });
}

const newSku = (name: string) => `inv-${name}-${randomUUID().slice(0, 8)}`;

/** Commands that write (and scripts, which may): bad input must reach none of them. */
async function writeCalls(): Promise<number> {
  const info = await redis.info('commandstats');
  let calls = 0;
  for (const m of info.matchAll(/^cmdstat_(?:set|incrby|decrby|del|eval|evalsha|setex|incr):calls=(\d+)/gm)) calls += Number(m[1]);
  return calls;
}
async function snapshot(): Promise<[number, number]> {
  return [await redis.dbsize(), await writeCalls()];
}

describe('GET /inventory/{sku}', () => {
  it('answers the level operators set with redis-cli SET', async () => {
    const sku = newSku('get');
    await redis.set(keys.inventory(sku), '100');
    const r = await request(`/inventory/${sku}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ sku, available: 100 });
  });

  it('answers 404 for a SKU never stocked, 400 for one that cannot be a SKU', async () => {
    expectProblem(await request(`/inventory/${newSku('none')}`), 404, 'sku-not-found');
    for (const bad of ['bad%20sku', 'a'.repeat(65), 'x%2Fy', 'caf%C3%A9']) {
      const r = await request(`/inventory/${bad}`);
      expectProblem(r, 400, 'invalid-sku');
      expect(r.body.errors).toEqual([{ path: 'sku', message: expect.any(String) }]);
    }
    expect((await request(`/inventory/${'a'.repeat(64)}`)).status).toBe(404);
  });

  it('answers 500 for a level that is not a whole number (written by something else)', async () => {
    const sku = newSku('junk');
    await redis.set(keys.inventory(sku), '12.5');
    expectProblem(await request(`/inventory/${sku}`), 500, 'internal-server-error');
  });
});

describe('PUT /inventory/{sku}', () => {
  it('stocks a new SKU with 200, then replaces its level with 200, as a plain integer string', async () => {
    const sku = newSku('put');
    const created = await put(sku, { available: 100 });
    expect(created.status).toBe(200);
    expect(created.body).toEqual({ sku, available: 100 });
    expect(await redis.get(keys.inventory(sku))).toBe('100');

    const replaced = await put(sku, { available: 0 }, { 'content-type': 'application/json; charset=utf-8' });
    expect(replaced.status).toBe(200);
    expect(replaced.headers.get('location')).toBeNull();
    expect(replaced.body).toEqual({ sku, available: 0 });
    expect(await redis.get(keys.inventory(sku))).toBe('0');

    expect((await put(sku, { available: 1_000_000_000 })).body).toEqual({ sku, available: 1_000_000_000 });
    // The processor's reserve script takes from what PUT set.
    await put(sku, { available: 5 });
    expect(await reserveOrder(redis, { id: `${sku}-o`, sku, qty: 5 }, new Date())).toEqual({ outcome: 'created' });
    expect((await request(`/inventory/${sku}`)).body).toEqual({ sku, available: 0 });
  });

  it.each<[string, unknown, string, string]>([
    ['truncated JSON', '{"available":', 'malformed-json', '/'],
    ['an empty body', '', 'malformed-json', '/'],
    ['a missing field', {}, 'invalid-inventory-level', '/available'],
    ['a negative level', { available: -1 }, 'invalid-inventory-level', '/available'],
    ['a level over 1e9', { available: 1_000_000_001 }, 'invalid-inventory-level', '/available'],
    ['a fraction', { available: 1.5 }, 'invalid-inventory-level', '/available'],
    ['a string', { available: '5' }, 'invalid-inventory-level', '/available'],
    ['an extra property', { available: 5, sku: 'x' }, 'invalid-inventory-level', '/sku'],
    ['an array', [{ available: 5 }], 'invalid-inventory-level', '/'],
    ['null', null, 'invalid-inventory-level', '/'],
  ])('%s gets 400 naming what is wrong, and writes nothing', async (_name, body, type, path) => {
    const sku = newSku('put-bad');
    await redis.set(keys.inventory(sku), '7');
    const before = await snapshot();
    const r = await put(sku, body);
    expectProblem(r, 400, type);
    expect(r.body.errors).toContainEqual({ path, message: expect.any(String) });
    expect(await snapshot()).toEqual(before);
    expect(await redis.get(keys.inventory(sku))).toBe('7');
  });

  it('a bad SKU, a wrong media type or a body over 16 KiB is refused and writes nothing', async () => {
    const sku = newSku('put-media');
    const before = await snapshot();
    expectProblem(await put('bad%20sku', { available: 1 }), 400, 'invalid-sku');
    expectProblem(await put(sku, { available: 1 }, { 'content-type': 'text/plain' }), 415, 'unsupported-media-type');
    expectProblem(await put(sku, { available: 1 }, { 'content-encoding': 'gzip' }), 415, 'unsupported-media-type');
    const big = JSON.stringify({ available: 1, pad: 'x'.repeat(MAX_BODY_BYTES) });
    expectProblem(await put(sku, big), 413, 'content-too-large');
    expect(await snapshot()).toEqual(before);
  });
});

describe('POST /inventory/{sku}/adjust', () => {
  it('adds and takes, answers the new level, and keeps inventory:<sku> a plain integer string', async () => {
    const sku = newSku('adj');
    await redis.set(keys.inventory(sku), '10');
    const added = await adjust(sku, { delta: 5 });
    expect(added.status).toBe(200);
    expect(added.headers.get('idempotent-replayed')).toBeNull();
    expect(added.body).toEqual({ sku, available: 15 });
    expect((await adjust(sku, { delta: -15 })).body).toEqual({ sku, available: 0 });
    expect(await redis.get(keys.inventory(sku))).toBe('0');
    // Without a key an adjustment is not idempotent: the same request twice applies twice.
    await adjust(sku, { delta: 2 });
    await adjust(sku, { delta: 2 });
    expect(await redis.get(keys.inventory(sku))).toBe('4');
  });

  it('never goes below 0 nor past 1e9: 409 with the level now, nothing changed', async () => {
    const sku = newSku('adj-bounds');
    await redis.set(keys.inventory(sku), '3');
    const before = await redis.dbsize();
    const low = await adjust(sku, { delta: -4 }, { 'idempotency-key': 'low-1' });
    expectProblem(low, 409, 'insufficient-stock');
    expect(low.body.available).toBe(3);
    await redis.set(keys.inventory(sku), '999999999');
    const high = await adjust(sku, { delta: 2 });
    expectProblem(high, 409, 'stock-limit-exceeded');
    expect(high.body.available).toBe(999_999_999);
    expect(await redis.get(keys.inventory(sku))).toBe('999999999');
    // A refusal stores nothing under its key: once the stock allows, the same request applies.
    expect(await redis.dbsize()).toBe(before);
    await redis.set(keys.inventory(sku), '4');
    expect((await adjust(sku, { delta: -4 }, { 'idempotency-key': 'low-1' })).body).toEqual({ sku, available: 0 });
  });

  it('refuses a SKU never stocked with 404, whatever the sign, and creates nothing', async () => {
    const sku = newSku('adj-none');
    const before = await redis.dbsize();
    expectProblem(await adjust(sku, { delta: 5 }, { 'idempotency-key': 'k' }), 404, 'sku-not-found');
    expectProblem(await adjust(sku, { delta: -5 }), 404, 'sku-not-found');
    expect(await redis.dbsize()).toBe(before);
  });

  it('answers 500 and changes nothing when the level is not a whole number', async () => {
    const sku = newSku('adj-junk');
    await redis.set(keys.inventory(sku), '1e3');
    expectProblem(await adjust(sku, { delta: 1 }), 500, 'internal-server-error');
    expect(await redis.get(keys.inventory(sku))).toBe('1e3');
  });

  describe('bad input gets a 4xx problem and writes nothing', () => {
    it.each<[string, unknown, string, string]>([
      ['truncated JSON', '{"delta":', 'malformed-json', '/'],
      ['plain text', 'add five', 'malformed-json', '/'],
      ['a zero delta', { delta: 0 }, 'invalid-adjustment', '/delta'],
      ['a missing delta', {}, 'invalid-adjustment', '/delta'],
      ['a fraction', { delta: 1.5 }, 'invalid-adjustment', '/delta'],
      ['a string', { delta: '1' }, 'invalid-adjustment', '/delta'],
      ['a delta over 1e9', { delta: 1_000_000_001 }, 'invalid-adjustment', '/delta'],
      ['a delta under -1e9', { delta: -1_000_000_001 }, 'invalid-adjustment', '/delta'],
      ['an extra property', { delta: 1, reason: 'x' }, 'invalid-adjustment', '/reason'],
      ['an array', [{ delta: 1 }], 'invalid-adjustment', '/'],
    ])('%s', async (_name, body, type, path) => {
      const sku = newSku('adj-bad');
      await redis.set(keys.inventory(sku), '7');
      const before = await snapshot();
      const r = await adjust(sku, body, { 'idempotency-key': 'bad-body' });
      expectProblem(r, 400, type);
      expect(r.body.errors).toContainEqual({ path, message: expect.any(String) });
      expect(await snapshot()).toEqual(before);
    });

    it('a zero delta is named as such', async () => {
      const sku = newSku('adj-zero');
      await redis.set(keys.inventory(sku), '7');
      expect((await adjust(sku, { delta: 0 })).body.errors).toEqual([{ path: '/delta', message: 'must not be 0' }]);
    });

    it.each([
      ['empty', ''],
      ['an empty string item', '""'],
      ['a colon', 'a:b'],
      ['a space', 'a b'],
      ['an unbalanced quote', '"k1'],
      ['a quoted colon', '"a:b"'],
      ['129 characters', 'k'.repeat(129)],
      ['two keys', 'k1, k2'],
      ['a byte sequence', ':azE=:'],
    ])('an Idempotency-Key that is %s gets 400', async (_name, key) => {
      const sku = newSku('adj-key');
      await redis.set(keys.inventory(sku), '7');
      const before = await snapshot();
      const r = await adjust(sku, { delta: 1 }, { 'idempotency-key': key });
      expectProblem(r, 400, 'invalid-idempotency-key');
      expect(r.body.errors).toEqual([{ path: 'Idempotency-Key', message: expect.any(String) }]);
      expect(await snapshot()).toEqual(before);
    });

    it('the header given twice gets 400', async () => {
      const sku = newSku('adj-key2');
      await redis.set(keys.inventory(sku), '7');
      const headers = new Headers({ 'content-type': 'application/json' });
      headers.append('idempotency-key', 'k1');
      headers.append('idempotency-key', 'k1');
      const r = await request(`/inventory/${sku}/adjust`, { method: 'POST', headers, body: '{"delta":1}' });
      expectProblem(r, 400, 'invalid-idempotency-key');
      expect(await redis.get(keys.inventory(sku))).toBe('7');
    });

    it('a bad SKU, a wrong media type or a body over 16 KiB is refused', async () => {
      const sku = newSku('adj-media');
      await redis.set(keys.inventory(sku), '7');
      const before = await snapshot();
      expectProblem(await adjust('bad%20sku', { delta: 1 }), 400, 'invalid-sku');
      expectProblem(await adjust(sku, { delta: 1 }, { 'content-type': 'application/xml' }), 415, 'unsupported-media-type');
      expectProblem(await adjust(sku, { delta: 1 }, { 'content-type': 'application/json; charset=latin1' }), 415, 'unsupported-media-type');
      expectProblem(await adjust(sku, JSON.stringify({ delta: 1, pad: 'x'.repeat(MAX_BODY_BYTES) })), 413, 'content-too-large');
      expect(await snapshot()).toEqual(before);
    });
  });

  describe('with an Idempotency-Key', () => {
    it('the same key and body again answers the stored 200 with Idempotent-Replayed and applies nothing', async () => {
      const sku = newSku('idem');
      await redis.set(keys.inventory(sku), '10');
      const key = randomUUID();
      const first = await adjust(sku, { delta: -3 }, { 'idempotency-key': `"${key}"` });
      expect(first.status).toBe(200);
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      expect(first.body).toEqual({ sku, available: 7 });
      // The stock moves on; the replay is the answer the key got, in either header form.
      await redis.set(keys.inventory(sku), '50');
      for (const form of [key, `"${key}"`]) {
        const again = await adjust(sku, { delta: -3 }, { 'idempotency-key': form });
        expect(again.status).toBe(200);
        expect(again.headers.get('idempotent-replayed')).toBe('true');
        expect(again.body).toEqual(first.body);
      }
      expect(await redis.get(keys.inventory(sku))).toBe('50');
      // Kept for IDEMPOTENCY_TTL_SECONDS (24 h by default).
      const ttl = await redis.ttl(keys.inventoryIdempotency(sku, key));
      expect(ttl).toBeGreaterThan(config.idempotencyTtlSeconds - 10);
      expect(ttl).toBeLessThanOrEqual(config.idempotencyTtlSeconds);
    });

    it('the same key with another body gets 422 and applies nothing', async () => {
      const sku = newSku('idem-422');
      await redis.set(keys.inventory(sku), '10');
      await adjust(sku, { delta: -3 }, { 'idempotency-key': 'k-422' });
      const r = await adjust(sku, { delta: -4 }, { 'idempotency-key': 'k-422' });
      expectProblem(r, 422, 'idempotency-key-reused');
      expect(await redis.get(keys.inventory(sku))).toBe('7');
    });

    it('keys are per SKU: one key on two SKUs adjusts both', async () => {
      const [a, b] = [newSku('idem-a'), newSku('idem-b')];
      await redis.mset(keys.inventory(a), '5', keys.inventory(b), '5');
      expect((await adjust(a, { delta: 1 }, { 'idempotency-key': 'shared' })).body).toEqual({ sku: a, available: 6 });
      const other = await adjust(b, { delta: 2 }, { 'idempotency-key': 'shared' });
      expect(other.headers.get('idempotent-replayed')).toBeNull();
      expect(other.body).toEqual({ sku: b, available: 7 });
    });

    it('twenty concurrent requests with one key apply once: one 200, nineteen replays, no in-flight refusal', async () => {
      const sku = newSku('idem-race');
      await redis.set(keys.inventory(sku), '100');
      const replies = await Promise.all(Array.from({ length: 20 }, () => adjust(sku, { delta: -1 }, { 'idempotency-key': 'race' })));
      expect(replies.map((r) => r.status)).toEqual(Array(20).fill(200));
      expect(replies.filter((r) => r.headers.get('idempotent-replayed') === null)).toHaveLength(1);
      for (const r of replies) expect(r.body).toEqual({ sku, available: 99 });
      expect(await redis.get(keys.inventory(sku))).toBe('99');
    });
  });

  it('twenty concurrent -1 adjustments of a stock of 10 leave 0: ten 200, ten 409', async () => {
    const sku = newSku('race');
    await redis.set(keys.inventory(sku), '10');
    const replies = await Promise.all(Array.from({ length: 20 }, () => adjust(sku, { delta: -1 })));
    expect(replies.filter((r) => r.status === 200)).toHaveLength(10);
    const refused = replies.filter((r) => r.status === 409);
    expect(refused).toHaveLength(10);
    for (const r of refused) expect(r.body).toMatchObject({ type: '/problems/insufficient-stock', available: 0 });
    expect(
      replies
        .filter((r) => r.status === 200)
        .map((r) => r.body.available)
        .sort(),
    ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await redis.get(keys.inventory(sku))).toBe('0');
  });
});

describe('GET /inventory', () => {
  async function pageThrough(limit?: number): Promise<{ items: { sku: string; available: number }[]; pages: number[] }> {
    const items: { sku: string; available: number }[] = [];
    const pages: number[] = [];
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams();
      if (limit !== undefined) query.set('limit', String(limit));
      if (cursor !== null) query.set('cursor', cursor);
      const r = await request(`/inventory${query.size > 0 ? `?${query}` : ''}`);
      expect(r.status).toBe(200);
      const page = r.body as { items: { sku: string; available: number }[]; next: string | null };
      items.push(...page.items);
      pages.push(page.items.length);
      cursor = page.next;
    } while (cursor !== null && pages.length < 1000);
    return { items, pages };
  }

  /**
   * Ends a rehash of the keyspace that the writes above began. Every key lookup moves one bucket
   * to the new table, and a lookup inserts nothing, so it starts no new rehash: one EXISTS of 4096
   * keys finishes a table of a few hundred keys, where a fixed wait only hoped serverCron had.
   */
  async function finishRehash(): Promise<void> {
    await redis.exists(...Array.from({ length: 4096 }, (_, i) => `rehash-step-${i}`));
  }

  it('pages through 250 SKUs with SCAN, each listed once with its level, other keys left out', async () => {
    await resetRedis(redisUrl);
    const skus = Array.from({ length: 250 }, (_, i) => `scan-${i}`);
    await redis.mset(...skus.flatMap((s, i) => [keys.inventory(s), String(i)]));
    // Keys that are not SKUs with a level: other kinds of key, and inventory keys the API cannot show.
    for (let i = 0; i < 100; i += 1) await redis.set(keys.idempotency(`scan-order-${i}`), '{}');
    await redis.set(keys.inventory('not a sku'), '1');
    await redis.set(keys.inventory('scan-junk'), 'lots');
    await redis.set(keys.inventoryIdempotency('scan-0', 'k'), '{}');
    // SCAN may list a key twice while Redis grows its table: finish that first.
    await finishRehash();

    for (const limit of [7, 100, undefined]) {
      const { items, pages } = await pageThrough(limit);
      expect(items.map((i) => i.sku).sort()).toEqual([...skus].sort());
      for (const item of items) expect(item.available).toBe(Number(item.sku.slice('scan-'.length)));
      // Every page but the last aims at the limit; the last SCAN step is kept whole.
      const aim = limit ?? 20;
      expect(Math.max(...pages)).toBeLessThan(aim + 20);
      expect(pages.length).toBeGreaterThanOrEqual(Math.floor(250 / (aim + 20)));
    }
  });

  it('a page overshoots its limit by little: each SCAN step asks for what the page still lacks', async () => {
    await resetRedis(redisUrl);
    const skus = Array.from({ length: 32 }, (_, i) => `small-${i}`);
    await redis.mset(...skus.flatMap((s) => [keys.inventory(s), '1']));
    // A SCAN step while Redis grows its table visits both tables: finish that first.
    await finishRehash();
    // limit=1 asks for one slot per step: a page is one slot's chain (about 1 key, rarely over 4).
    // A fixed COUNT of 10 gave every page but the last 10 or more.
    const { items, pages } = await pageThrough(1);
    expect(items.map((i) => i.sku).sort()).toEqual([...skus].sort());
    expect(Math.max(...pages)).toBeLessThanOrEqual(7);
  });

  it('sizes SCAN steps by what the page lacks: doubling while it stays short, no more than the share of SKUs met says, capped', () => {
    // No SKU met yet: doubling.
    expect([0, 1, 2, 3].map((steps) => scanCount(5, { steps, visited: 5 * (2 ** steps - 1), matched: 0 }))).toEqual([5, 10, 20, 40]);
    // 70 SKUs in 100 slots, 30 missing: the 43 slots that should hold them, not 60.
    expect(scanCount(30, { steps: 1, visited: 100, matched: 70 })).toBe(43);
    // A few SKUs in many slots: still no more than doubling.
    expect(scanCount(6, { steps: 1, visited: 7, matched: 1 })).toBe(12);
    expect(scanCount(100, { steps: 4, visited: 1500, matched: 0 })).toBe(MAX_SCAN_COUNT);
  });

  it('an empty inventory is one empty page', async () => {
    await resetRedis(redisUrl);
    const r = await request('/inventory');
    expect(r.body).toEqual({ items: [], next: null });
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=abc', 'limit'],
    ['limit=1.5', 'limit'],
    ['limit=', 'limit'],
    ['limit=1&limit=2', 'limit'],
    ['cursor=abc', 'cursor'],
    ['cursor=-1', 'cursor'],
    ['cursor=007', 'cursor'],
    ['cursor=18446744073709551616', 'cursor'],
    ['cursor=1&cursor=2', 'cursor'],
    ['page=2', 'page'],
  ])('?%s gets 400 naming %s', async (query, path) => {
    const before = await snapshot();
    const r = await request(`/inventory?${query}`);
    expectProblem(r, 400, 'invalid-query');
    expect(r.body.errors).toContainEqual({ path, message: expect.any(String) });
    expect(await snapshot()).toEqual(before);
  });

  it('takes the largest cursor Redis could give', async () => {
    expect((await request('/inventory?cursor=18446744073709551615&limit=100')).status).toBe(200);
  });
});

describe('the Inventory API with Redis unreachable', () => {
  it('answers 503 with Retry-After on every endpoint', async () => {
    const deadRedis = createRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { log, overrides: { retryStrategy: () => null } });
    cleanups.push(async () => deadRedis.disconnect());
    const other = await start({ config, redis: deadRedis, broker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());
    const replies = [
      await request('/inventory/s', {}, other.address),
      await request('/inventory', {}, other.address),
      await send('PUT', '/inventory/s', { available: 1 }, {}, other.address),
      await adjust('s', { delta: 1 }, { 'idempotency-key': 'k' }, other.address),
    ];
    for (const r of replies) {
      expectProblem(r, 503, 'service-unavailable');
      expect(r.headers.get('retry-after')).toBe('1');
    }
  });
});

describe('inventory changes are logged', () => {
  it('PUT and an applied adjustment log the SKU, the change and who sent it; a replay logs no change', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const other = await start({ config, redis: gwRedis, broker, log: pino({ level: 'info' }, sink), port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());
    const sku = newSku('log');
    await send('PUT', `/inventory/${sku}`, { available: 4 }, { 'user-agent': 'stock-tool/1' }, other.address);
    await send('PUT', `/inventory/${sku}`, { available: 9 }, {}, other.address);
    await adjust(sku, { delta: -2 }, { 'idempotency-key': 'log-1', 'user-agent': 'stock-tool/1' }, other.address);
    await adjust(sku, { delta: -2 }, { 'idempotency-key': 'log-1' }, other.address);
    const changes = lines.filter((l) => l.sku === sku && (l.msg === 'inventory level set' || l.msg === 'inventory adjusted'));
    expect(changes).toEqual([
      expect.objectContaining({ kind: 'set', previous: null, available: 4, ip: expect.any(String), userAgent: 'stock-tool/1' }),
      expect.objectContaining({ kind: 'set', previous: '4', available: 9 }),
      expect.objectContaining({ kind: 'adjust', delta: -2, available: 7, idempotencyKey: 'log-1', userAgent: 'stock-tool/1' }),
    ]);
  });
});

describe('inventory metrics and documentation', () => {
  it('/metrics counts the levels written, by kind', async () => {
    const sku = newSku('metrics');
    const count = async (kind: string) => {
      const text = await (await fetch(`${gw.address}/metrics`)).text();
      return Number(new RegExp(`^gateway_inventory_changes_total\\{[^}]*kind="${kind}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1]);
    };
    const [set, adjusted] = [await count('set'), await count('adjust')];
    await put(sku, { available: 5 });
    await adjust(sku, { delta: 1 }, { 'idempotency-key': 'm' });
    await adjust(sku, { delta: 1 }, { 'idempotency-key': 'm' }); // a replay writes nothing
    await adjust(sku, { delta: -100 }); // nor does a refusal
    expect([await count('set'), await count('adjust')]).toEqual([set + 1, adjusted + 1]);
  });

  it('every inventory problem type resolves to a page on the gateway', async () => {
    for (const slug of ['invalid-sku', 'invalid-inventory-level', 'invalid-adjustment', 'invalid-idempotency-key', 'sku-not-found']) {
      expect((await request(`/problems/${slug}`)).status).toBe(200);
    }
    for (const slug of ['insufficient-stock', 'stock-limit-exceeded']) expect((await request(`/problems/${slug}`)).status).toBe(200);
  });

  it('wrong methods on the inventory paths get 405 with Allow', async () => {
    const r = await request('/inventory/s/adjust');
    expectProblem(r, 405, 'method-not-allowed');
    expect(r.headers.get('allow')).toBe('POST');
    expect((await request('/inventory', { method: 'DELETE' })).status).toBe(405);
  });
});
