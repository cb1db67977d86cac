// The gateway in-process against real Redis and RabbitMQ: every row of the SPEC's POST /orders
// table, with its side effects (idempotency record, order hash, messages in orders.queue).
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import {
  applyTopology,
  claimOrders,
  createLogger,
  createRedis,
  exchanges,
  keys,
  loadConfig,
  OPENAPI_TEXT,
  queues,
  redisReady,
  type Broker,
  type Config,
  type RedisClient,
} from '@order-pipeline/shared';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cutRedisAfterConfirm, drainQueue, newBroker, openTopologyChannel, wrapPublish } from '../../test/helpers/broker.js';
import { expectDocumented } from '../../test/helpers/openapi.js';
import { freePort, waitFor } from '../../test/helpers/processes.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';
import { fingerprint } from '../src/orders.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('api-gateway', 'silent');
const config: Config = loadConfig('api-gateway', {
  REDIS_URL: redisUrl,
  RABBITMQ_URLS: rabbitmqUrls.join(','),
  PUBLISH_TIMEOUT_MS: '2000',
  LOG_LEVEL: 'silent',
});

let redis: RedisClient; // the test's own view of Redis
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
  broker = newBroker(config, log, 'gateway-test');
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

/** Takes every message now in orders.queue (each test starts from an empty queue). */
const takeMessages = (): Promise<GetMessage[]> => drainQueue(ch, queues.orders);

beforeEach(async () => {
  await takeMessages();
});

interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  ms: number;
}

/** Every answer is also checked against the OpenAPI document (shared/openapi.json). */
async function request(path: string, init: RequestInit = {}, base = gw.address): Promise<Reply> {
  const started = Date.now();
  const res = await fetch(base + path, init);
  const text = await res.text();
  expectDocumented({ method: init.method ?? 'GET', path, status: res.status, headers: res.headers, body: text });
  return {
    status: res.status,
    headers: res.headers,
    body: /json/.test(res.headers.get('content-type') ?? '') ? (JSON.parse(text) as Record<string, unknown>) : {},
    ms: Date.now() - started,
  };
}

function postOrder(body: unknown, opts: { base?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return request(
    '/orders',
    {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...opts.headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    },
    opts.base,
  );
}

function expectProblem(r: Reply, status: number): void {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({
    status,
    type: expect.stringMatching(/^\/problems\/[a-z-]+$/),
    title: expect.any(String),
    detail: expect.any(String),
  });
}

async function idempRecord(id: string): Promise<Record<string, unknown> | null> {
  const raw = await redis.get(keys.idempotency(id));
  return raw === null ? null : (JSON.parse(raw) as Record<string, unknown>);
}

/** Lua script runs so far (claim, accept, release...): bad input must not reach any of them. */
async function scriptCalls(): Promise<number> {
  const info = await redis.info('commandstats');
  let calls = 0;
  for (const m of info.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+)/gm)) calls += Number(m[1]);
  return calls;
}

describe('POST /orders', () => {
  it('a new order is accepted with 202, recorded and published once', async () => {
    const order = { id: 'gw-new-1', sku: 'mag-safe-phone-case', qty: 2, email: 'buyer@example.com' };
    const r = await postOrder(order, { headers: { 'content-type': 'application/json; charset=utf-8' } });

    expect(r.status).toBe(202);
    expect(r.headers.get('location')).toBe('/orders/gw-new-1');
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.body).toEqual({ ...order, status: 'accepted', message: 'Order received: gw-new-1' });

    const rec = await idempRecord(order.id);
    expect(rec).toMatchObject({ state: 'accepted', fp: fingerprint(order) });
    expect(JSON.parse(String(rec?.response))).toEqual(r.body);
    const ttl = await redis.ttl(keys.idempotency(order.id));
    expect(ttl).toBeGreaterThan(config.idempotencyTtlSeconds - 60);
    expect(ttl).toBeLessThanOrEqual(config.idempotencyTtlSeconds);

    const hash = await redis.hgetall(keys.order(order.id));
    expect(hash).toMatchObject({ id: order.id, sku: order.sku, qty: '2', email: order.email, status: 'accepted' });
    expect(hash.createdAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(await redis.get(keys.stats.accepted)).toBe('1');

    const msgs = await takeMessages();
    expect(msgs).toHaveLength(1);
    const m = msgs[0] as GetMessage;
    expect(m.fields.exchange).toBe(exchanges.direct);
    expect(m.fields.routingKey).toBe('order.placed');
    expect(m.properties.messageId).toBe('gw-new-1:order.placed');
    expect(m.properties.deliveryMode).toBe(2);
    expect(m.properties.contentType).toBe('application/json');
    expect(m.properties.headers?.['x-event-version']).toBe(1);
    expect(JSON.parse(m.content.toString())).toMatchObject({ type: 'order.placed', version: 1, order });
  });

  it('the same id and payload again is replayed with 200 and not published again', async () => {
    const order = { id: 'gw-replay-1', sku: 'sku-a', qty: 3 };
    const first = await postOrder(order);
    expect(first.status).toBe(202);
    const dupBefore = Number((await redis.get(keys.stats.duplicates)) ?? 0);

    // Same payload, other key order: the same order.
    const again = await postOrder('{"qty":3,"sku":"sku-a","id":"gw-replay-1"}');
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe('/orders/gw-replay-1');
    expect(again.body).toEqual({ ...order, status: 'accepted', message: 'Duplicate order: gw-replay-1', duplicate: true });

    expect(Number(await redis.get(keys.stats.duplicates))).toBe(dupBefore + 1);
    expect(await redis.get(keys.stats.accepted)).not.toBeNull();
    const msgs = await takeMessages();
    expect(msgs.map((m) => m.properties.messageId)).toEqual(['gw-replay-1:order.placed']);
  });

  it('the same id with a different payload is refused with 422 and nothing is published', async () => {
    const order = { id: 'gw-mismatch-1', sku: 'sku-a', qty: 1 };
    expect((await postOrder(order)).status).toBe(202);
    await takeMessages();
    const recBefore = await redis.get(keys.idempotency(order.id));

    const r = await postOrder({ ...order, qty: 5 });
    expectProblem(r, 422);
    expect(r.body.detail).toContain('gw-mismatch-1');
    expect(await redis.get(keys.idempotency(order.id))).toBe(recBefore);
    expect(await redis.hget(keys.order(order.id), 'qty')).toBe('1');
    expect(await takeMessages()).toHaveLength(0);
  });

  it('while the first request is in flight the same order gets 409 with Retry-After', async () => {
    const order = { id: 'gw-inflight-1', sku: 'sku-a', qty: 1 };
    // Another gateway's claim, between its claim and its publish.
    expect(await claimOrders(redis, 8000, [{ id: order.id, fingerprint: fingerprint(order), token: 'other-gateway' }])).toEqual([
      { outcome: 'claimed' },
    ]);

    const r = await postOrder(order);
    expectProblem(r, 409);
    const retryAfter = Number(r.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(7);
    expect(retryAfter).toBeLessThanOrEqual(8);
    expect(await idempRecord(order.id)).toMatchObject({ state: 'inflight', token: 'other-gateway' });
    expect(await redis.exists(keys.order(order.id))).toBe(0);
    expect(await takeMessages()).toHaveLength(0);
  });

  describe('bad input changes nothing', () => {
    async function snapshot(): Promise<[number, number]> {
      return [await redis.dbsize(), await scriptCalls()];
    }
    async function expectNothingChanged(before: [number, number]): Promise<void> {
      expect(await snapshot()).toEqual(before);
      expect(await takeMessages()).toHaveLength(0);
    }

    it.each([
      ['truncated JSON', '{"id":"gw-bad-json","sku":"s","qty":1'],
      ['an empty body', ''],
      ['plain text', 'order please'],
    ])('malformed JSON (%s) gets 400 with errors', async (_name, body) => {
      const before = await snapshot();
      const r = await postOrder(body);
      expectProblem(r, 400);
      expect(r.body.errors).toEqual([{ path: '/', message: expect.any(String) }]);
      await expectNothingChanged(before);
    });

    const valid = { id: 'gw-schema-1', sku: 'sku-a', qty: 1 };
    it.each([
      ['a missing sku', { id: valid.id, qty: 1 }, '/sku'],
      ['a missing id', { sku: 'sku-a', qty: 1 }, '/id'],
      ['an extra property', { ...valid, color: 'red' }, '/color'],
      ['qty 0', { ...valid, qty: 0 }, '/qty'],
      ['qty 1001', { ...valid, qty: 1001 }, '/qty'],
      ['qty 2.5', { ...valid, qty: 2.5 }, '/qty'],
      ['qty "2"', { ...valid, qty: '2' }, '/qty'],
      ['bad id characters', { ...valid, id: 'bad id!' }, '/id'],
      ['a 65-character id', { ...valid, id: 'a'.repeat(65) }, '/id'],
      ['an empty sku', { ...valid, sku: '' }, '/sku'],
      ['a bad email', { ...valid, email: 'not-an-email' }, '/email'],
      ['an array', [valid], '/'],
      ['null', null, '/'],
    ])('a schema violation (%s) gets 400 naming the field', async (_name, body, path) => {
      const before = await snapshot();
      const r = await postOrder(body);
      expectProblem(r, 400);
      const errors = r.body.errors as { path: string; message: string }[];
      expect(errors.length).toBeGreaterThan(0);
      expect(errors).toContainEqual({ path, message: expect.any(String) });
      await expectNothingChanged(before);
    });

    it('a 64-character id is at the limit and accepted', async () => {
      const id = 'b'.repeat(64);
      const r = await postOrder({ id, sku: 'sku-a', qty: 1000 });
      expect(r.status).toBe(202);
      expect((await takeMessages()).map((m) => m.properties.messageId)).toEqual([`${id}:order.placed`]);
    });

    it.each([
      ['text/plain', { 'content-type': 'text/plain' }],
      ['form data', { 'content-type': 'application/x-www-form-urlencoded' }],
      ['a non-UTF-8 charset', { 'content-type': 'application/json; charset=iso-8859-1' }],
      ['a compressed body', { 'content-type': 'application/json', 'content-encoding': 'gzip' }],
    ])('a wrong content type (%s) gets 415', async (_name, headers) => {
      const before = await snapshot();
      const r = await postOrder({ id: 'gw-415', sku: 'sku-a', qty: 1 }, { headers });
      expectProblem(r, 415);
      await expectNothingChanged(before);
    });

    it('no content type at all gets 415', async () => {
      const before = await snapshot();
      // A byte body: fetch adds no Content-Type of its own.
      const r = await request('/orders', { method: 'POST', body: new TextEncoder().encode('{"id":"gw-415b","sku":"s","qty":1}') });
      expectProblem(r, 415);
      await expectNothingChanged(before);
    });

    it('a body over 16 KiB gets 413, by Content-Length and when streamed', async () => {
      const before = await snapshot();
      const big = JSON.stringify({ id: 'gw-413', sku: 'sku-a', qty: 1 }) + ' '.repeat(16 * 1024);
      const declared = await postOrder(big);
      expectProblem(declared, 413);

      // Chunked: no Content-Length, the limit trips while reading.
      const chunk = new TextEncoder().encode(' '.repeat(4096));
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 0) controller.enqueue(new TextEncoder().encode('{"id":"gw-413b","sku":"s","qty":1}'));
          if (sent++ < 8) controller.enqueue(chunk);
          else controller.close();
        },
      });
      const streamed = await request('/orders', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: stream,
        duplex: 'half',
      } as RequestInit);
      expectProblem(streamed, 413);
      await expectNothingChanged(before);

      // The server is still answering on its connections.
      expect((await request('/healthz')).status).toBe(200);
    });

    it('a body of exactly 16 KiB is still accepted', async () => {
      const json = JSON.stringify({ id: 'gw-16k', sku: 'sku-a', qty: 1 });
      const r = await postOrder(json + ' '.repeat(16 * 1024 - Buffer.byteLength(json)));
      expect(r.status).toBe(202);
      expect(await takeMessages()).toHaveLength(1);
    });
  });

  it('the broker refusing the message (unroutable) gets 503, releases the id, and the retry is accepted', async () => {
    const order = { id: 'gw-unroutable-1', sku: 'sku-a', qty: 4 };
    await ch.deleteQueue(queues.orders);
    try {
      const r = await postOrder(order);
      expectProblem(r, 503);
      expect(r.headers.get('retry-after')).toBe('1');
      expect(await redis.exists(keys.idempotency(order.id), keys.order(order.id))).toBe(0);
    } finally {
      await applyTopology(ch, config.queueType);
    }
    expect(await takeMessages()).toHaveLength(0);

    const retry = await postOrder(order);
    expect(retry.status).toBe(202);
    expect(await idempRecord(order.id)).toMatchObject({ state: 'accepted' });
    expect((await takeMessages()).map((m) => m.properties.messageId)).toEqual(['gw-unroutable-1:order.placed']);
  });

  it('Redis failing between the confirm and the acceptance: 503, not 202; the retry is accepted once, from a record', async () => {
    const order = { id: 'gw-unrecorded-1', sku: 'sku-a', qty: 2 };
    const cut = await cutRedisAfterConfirm(broker, redis, redisUrl, log);
    cleanups.push(cut.close);
    const other = await start({ config, redis: cut.redis, broker: cut.broker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());

    cut.arm();
    const first = await postOrder(order, { base: other.address });
    // The message is in the broker, but a 202 would name an order GET cannot show yet.
    expectProblem(first, 503);
    expect(first.headers.get('retry-after')).toBe('1');
    expect(first.body.detail).toContain('retry shortly with the same id');
    expect((await request(`/orders/${order.id}`)).status).toBe(404);
    // The release failed on the cut connection too: the claim holds the id until its lease lapses.
    expect(await idempRecord(order.id)).toMatchObject({ state: 'inflight' });
    await redisReady(cut.redis);
    expect((await postOrder(order, { base: other.address })).status).toBe(409);

    await redis.pexpire(keys.idempotency(order.id), 1); // the lease, shortened rather than waited out
    await waitFor('the lease to lapse', async () => ((await redis.exists(keys.idempotency(order.id))) === 0 ? true : undefined), 5000);
    const retry = await postOrder(order, { base: other.address });
    // The answer's detail in the message: a 503 here says which step failed.
    expect(retry.status, JSON.stringify(retry.body)).toBe(202);
    const shown = await request(`/orders/${order.id}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ id: order.id, status: 'accepted', qty: 2 });
    expect((await redis.lrange(keys.history(order.id), 0, -1)).map((e) => (JSON.parse(e) as { event: string }).event)).toEqual([
      'accepted',
    ]);
    // Two copies of one payload in the broker: the processor decides the order once (its tests).
    expect((await takeMessages()).map((m) => m.properties.messageId)).toEqual([
      'gw-unrecorded-1:order.placed',
      'gw-unrecorded-1:order.placed',
    ]);
    expect((await postOrder(order)).status).toBe(200);
  });

  it('fifty concurrent copies of one order give one 202, the rest 200 or 409, and one message', async () => {
    const order = { id: 'gw-concurrent-1', sku: 'sku-a', qty: 1 };
    const acceptedBefore = Number((await redis.get(keys.stats.accepted)) ?? 0);
    const replies = await Promise.all(Array.from({ length: 50 }, () => postOrder(order)));
    const statuses = replies.map((r) => r.status);
    expect(statuses.filter((s) => s === 202)).toHaveLength(1);
    expect(statuses.filter((s) => s !== 202 && s !== 200 && s !== 409)).toEqual([]);
    for (const r of replies.filter((x) => x.status === 409)) expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(await redis.get(keys.stats.accepted))).toBe(acceptedBefore + 1);
    expect((await takeMessages()).map((m) => m.properties.messageId)).toEqual(['gw-concurrent-1:order.placed']);
  });

  it('an unreadable idempotency record gives that order a 500 and publishes nothing; orders sent with it are taken', async () => {
    await redis.set(keys.idempotency('gw-unreadable-1'), 'not json');
    // Sent together, so the claims share a script call.
    const [bad, ...good] = await Promise.all([
      postOrder({ id: 'gw-unreadable-1', sku: 'sku-a', qty: 1 }),
      postOrder({ id: 'gw-beside-unreadable-1', sku: 'sku-a', qty: 1 }),
      postOrder({ id: 'gw-beside-unreadable-2', sku: 'sku-a', qty: 1 }),
    ]);
    expectProblem(bad as Reply, 500);
    expect(bad?.body.detail).toContain('gw-unreadable-1');
    expect(good.map((r) => r.status)).toEqual([202, 202]);
    expect(await redis.get(keys.idempotency('gw-unreadable-1'))).toBe('not json');
    expect((await takeMessages()).map((m) => m.properties.messageId).sort()).toEqual([
      'gw-beside-unreadable-1:order.placed',
      'gw-beside-unreadable-2:order.placed',
    ]);
  });

  it('a gateway that died between claim and publish locks the id only until its lease lapses', async () => {
    const order = { id: 'gw-crashed-1', sku: 'sku-a', qty: 1 };
    expect(await claimOrders(redis, 400, [{ id: order.id, fingerprint: fingerprint(order), token: 'dead-gateway' }])).toEqual([
      { outcome: 'claimed' },
    ]);
    expect((await postOrder(order)).status).toBe(409);

    await waitFor('the lease to lapse', async () => ((await redis.pttl(keys.idempotency(order.id))) === -2 ? true : undefined), 10_000);
    const r = await postOrder(order);
    expect(r.status).toBe(202);
    expect((await takeMessages()).map((m) => m.properties.messageId)).toEqual(['gw-crashed-1:order.placed']);
  });

  it('two payloads of one id across a lapsed lease: exactly one 202, and only its payload is ever recorded', async () => {
    const id = 'gw-lapsed-1';
    const [first, second] = [
      { id, sku: 'sku-a', qty: 1 },
      { id, sku: 'sku-a', qty: 5 },
    ];
    // A gateway whose publishes wait until the test lets each go, so a request can sit between
    // its claim and its acceptance for as long as the test needs.
    const held: (() => void)[] = [];
    const gated = wrapPublish(broker, async (real, ...args) => {
      await new Promise<void>((resolve) => held.push(resolve));
      return real(...args);
    });
    const slow = await start({ config, redis: gwRedis, broker: gated, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => slow.stop());
    const publishesHeld = (n: number) => waitFor(`${n} publishes held`, async () => (held.length >= n ? true : undefined), 5000);
    const acceptedBefore = Number(await redis.get(keys.stats.accepted));

    const a = postOrder(first, { base: slow.address });
    await publishesHeld(1);
    // The first request's lease runs out while its publish waits (shortened rather than waited out).
    await redis.pexpire(keys.idempotency(id), 1);
    await waitFor('the lease to lapse', async () => ((await redis.exists(keys.idempotency(id))) === 0 ? true : undefined), 5000);
    const b = postOrder(second, { base: slow.address });
    await publishesHeld(2);
    // The first one's acceptance runs while the second holds the claim, then the second's.
    held[0]?.();
    const ra = await a;
    held[1]?.();
    const rb = await b;

    expect([ra.status, rb.status]).toEqual([409, 202]);
    expectProblem(ra, 409);
    expect(ra.body.title).toBe('Order Claim Lost');
    expect(ra.headers.get('retry-after')).toBe('1');
    expect(ra.body.detail).toContain(id);
    expect(rb.body).toMatchObject({ qty: 5 });
    // Only the 202's payload is recorded, in the order and in the idempotency record.
    expect(await redis.hgetall(keys.order(id))).toMatchObject({ qty: '5', status: 'accepted' });
    const rec = await idempRecord(id);
    expect(rec).toMatchObject({ state: 'accepted', fp: fingerprint(second) });
    expect(JSON.parse(String(rec?.response))).toMatchObject({ qty: 5 });
    expect(Number(await redis.get(keys.stats.accepted))).toBe(acceptedBefore + 1);
    // Both were published (the broker confirmed the first before its acceptance was refused): the
    // processor refuses the copy whose payload differs from the recorded one.
    expect((await takeMessages()).map((m) => (JSON.parse(m.content.toString()) as { order: { qty: number } }).order.qty)).toEqual([1, 5]);
    // A retry of the refused payload is told the id is taken by another payload.
    expectProblem(await postOrder(first, { base: slow.address }), 422);
  });
});

describe('POST /orders with a dependency down', () => {
  it('with the broker unreachable it answers 503 at once and writes nothing; readiness names the broker', async () => {
    const deadBroker = newBroker(config, log, 'gateway-test-dead-broker', [`amqp://guest:guest@127.0.0.1:${await freePort()}`]);
    cleanups.push(() => deadBroker.close());
    const other = await start({ config, redis: gwRedis, broker: deadBroker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());

    const before = [await redis.dbsize(), await scriptCalls()];
    const r = await postOrder({ id: 'gw-nobroker-1', sku: 'sku-a', qty: 1 }, { base: other.address });
    expectProblem(r, 503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(r.ms).toBeLessThan(1000);
    // Refused before the claim: not even a script ran.
    expect([await redis.dbsize(), await scriptCalls()]).toEqual(before);
    expect(await takeMessages()).toHaveLength(0);

    const ready = await request('/readyz', {}, other.address);
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({ status: 'not ready', down: ['broker'] });
    expect((await request('/healthz', {}, other.address)).status).toBe(200);
  });

  it('with Redis unreachable it answers 503 and publishes nothing; readiness names Redis', async () => {
    const deadRedis = createRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { log, overrides: { retryStrategy: () => null } });
    cleanups.push(async () => deadRedis.disconnect());
    const other = await start({ config, redis: deadRedis, broker, log, port: 0, host: '127.0.0.1' });
    cleanups.push(() => other.stop());

    const r = await postOrder({ id: 'gw-noredis-1', sku: 'sku-a', qty: 1 }, { base: other.address });
    expectProblem(r, 503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(await takeMessages()).toHaveLength(0);
    expect(await redis.exists(keys.idempotency('gw-noredis-1'))).toBe(0);

    const got = await request('/orders/gw-new-1', {}, other.address);
    expectProblem(got, 503);

    const ready = await request('/readyz', {}, other.address);
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({ status: 'not ready', down: ['redis'] });
  });
});

describe('GET /orders/{id}', () => {
  it('shows an accepted order with its fields as numbers and strings, and its history: accepted once however often it is replayed', async () => {
    const order = { id: 'gw-get-1', sku: 'sku-a', qty: 7, email: 'get@example.com' };
    expect((await postOrder(order)).status).toBe(202);
    expect((await postOrder(order)).status).toBe(200);
    expect((await postOrder(order)).status).toBe(200);
    const r = await request('/orders/gw-get-1');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      ...order,
      status: 'accepted',
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      history: [{ at: r.body.createdAt, event: 'accepted' }],
    });
  });

  it('shows the reason of a rejected order and its notification', async () => {
    const at = '2026-01-01T00:00:00.000Z';
    await redis.hset(keys.order('gw-get-2'), {
      id: 'gw-get-2',
      sku: 'sku-b',
      qty: '3',
      status: 'rejected',
      reason: 'out_of_stock',
      createdAt: at,
      updatedAt: at,
    });
    await redis.hset(keys.notification('gw-get-2'), { status: 'sent', attempts: '2', channel: 'log', sentAt: at });
    const r = await request('/orders/gw-get-2');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      id: 'gw-get-2',
      sku: 'sku-b',
      qty: 3,
      status: 'rejected',
      reason: 'out_of_stock',
      notification: { status: 'sent', attempts: 2, sentAt: at },
      notifications: { rejected: { status: 'sent', attempts: 2, sentAt: at } },
      createdAt: at,
      updatedAt: at,
      // Written by hand here, not by the scripts: no history.
      history: [],
    });
  });

  it('answers 404 problem for an unknown id and 400 for a malformed one', async () => {
    const missing = await request('/orders/gw-never-placed');
    expectProblem(missing, 404);
    const bad = await request(`/orders/${encodeURIComponent('bad id!')}`);
    expectProblem(bad, 400);
  });
});

describe('operations endpoints', () => {
  it('/healthz and /readyz answer 200 while Redis and the broker are up', async () => {
    const health = await request('/healthz');
    expect(health.status).toBe(200);
    const ready = await request('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready' });
  });

  it('/metrics counts orders by outcome and times publish confirms', async () => {
    const res = await fetch(`${gw.address}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const count = (result: string) =>
      Number(new RegExp(`^gateway_orders_total\\{[^}]*result="${result}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1]);
    expect(count('accepted')).toBeGreaterThanOrEqual(5);
    expect(count('replayed')).toBeGreaterThanOrEqual(1);
    expect(count('mismatch')).toBe(1);
    expect(count('invalid')).toBeGreaterThanOrEqual(10);
    expect(count('unavailable')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^gateway_publish_confirm_seconds_count\{[^}]*outcome="confirmed"[^}]*\} [1-9]/m);
  });

  it('/metrics is documented Prometheus text', async () => {
    expect((await request('/metrics')).status).toBe(200);
  });

  it('serves the OpenAPI document it validates POST /orders with', async () => {
    const res = await fetch(`${gw.address}/openapi.json`);
    const text = await res.text();
    expectDocumented({ method: 'GET', path: '/openapi.json', status: res.status, headers: res.headers, body: text });
    expect(text).toBe(OPENAPI_TEXT);
  });

  it("every problem's type resolves to a page on the gateway", async () => {
    const problem = await request('/orders/gw-never-placed');
    const page = await fetch(new URL(String(problem.body.type), `${gw.address}/orders/gw-never-placed`));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await page.text()).toContain('<h1>Order Not Found</h1>');
    expect((await request('/problems/no-such-problem')).status).toBe(404);
  });

  it('unknown routes get 404 and wrong methods 405, as problems', async () => {
    expectProblem(await request('/nope'), 404);
    const wrong = await request('/orders', { method: 'DELETE' });
    expectProblem(wrong, 405);
    expect(wrong.headers.get('allow')).toContain('POST');
    expectProblem(await request('/orders/gw-get-1', { method: 'PUT' }), 405);
    // A method no route implements: 501, also as a problem (not Koa's plain-text default).
    expectProblem(await request('/orders', { method: 'PROPFIND' }), 501);
  });
});
