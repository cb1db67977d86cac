// The order processor against real Redis and RabbitMQ: it decides each order once, publishes the
// outcome (again on a redelivery), and dead-letters what can never succeed.
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DEAD_LETTER_HEADERS,
  PublishError,
  RETRY_COUNT_HEADER,
  acceptOrders,
  connectBroker,
  createLogger,
  createRedis,
  encodeEvent,
  exchanges,
  keys,
  loadConfig,
  makeEvent,
  queues,
  redisReady,
  routingKeys,
  type Broker,
  type Order,
  type RedisClient,
} from '@order-pipeline/shared';
import { drainQueue, openTopologyChannel, takeAtLeast } from '../../test/helpers/broker.js';
import { startRedis } from '../../scripts/local-servers.mjs';
import { waitFor } from '../../test/helpers/processes.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type RunningProcessor } from '../src/app.js';
import { handleOrderPlaced } from '../src/processor.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('order-processor-test', process.env.TEST_LOG_LEVEL ?? 'silent');
const config = loadConfig('order-processor', {
  REDIS_URL: redisUrl,
  RABBITMQ_URLS: rabbitmqUrls.join(','),
  PREFETCH: '20',
  LOG_LEVEL: 'silent',
  // Not the default: the keys' expiry shows the processor passes its own retention.
  ORDER_RETENTION_DAYS: '2',
});
const MAX_ATTEMPTS = 3;

/** The events of history:<id>, oldest first. */
async function historyEvents(id: string): Promise<unknown[]> {
  return (await redis.lrange(keys.history(id), 0, -1)).map((e) => (JSON.parse(e) as { event: string }).event);
}

/** The key expires about ORDER_RETENTION_DAYS (2) from now: it was first written a moment ago. */
async function expectRetention(key: string): Promise<void> {
  const ttl = await redis.pttl(key);
  expect(ttl).toBeGreaterThan(2 * 86_400_000 - 60_000);
  expect(ttl).toBeLessThanOrEqual(2 * 86_400_000);
}
const backoffMs = (attempt: number) => 50 * attempt;

let redis: RedisClient;
let broker: Broker;
let amqp: ChannelModel;
let ch: Channel;
let app: RunningProcessor;

const startApp = () => start({ config, redis, broker, log, port: 0, host: '127.0.0.1', maxAttempts: MAX_ATTEMPTS, backoffMs });

/** Sum of processor_orders_total over its outcomes, or one outcome's count. */
async function handled(outcome?: string): Promise<number> {
  const text = await (await fetch(`${app.address}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^processor_orders_total\{([^}]*)\} (\d+)/gm)) {
    if (outcome === undefined || (m[1] ?? '').includes(`outcome="${outcome}"`)) sum += Number(m[2]);
  }
  return sum;
}

function placedMessage(order: Order) {
  return encodeEvent(makeEvent(routingKeys.placed, order));
}

async function publishPlaced(order: Order): Promise<void> {
  const { content, options } = placedMessage(order);
  await broker.publish(exchanges.direct, routingKeys.placed, content, options);
}

/** Publishes the messages and waits until the processor has handled that many more. */
async function placeAndWait(publishes: (() => Promise<void>)[]): Promise<void> {
  const before = await handled();
  await Promise.all(publishes.map((p) => p()));
  await waitFor(
    `${publishes.length} orders handled`,
    async () => ((await handled()) >= before + publishes.length ? true : undefined),
    15_000,
  );
}

/** Takes every message now in the queue. */
const takeAll = (queue: string): Promise<GetMessage[]> => drainQueue(ch, queue);

const bodyOf = (m: GetMessage) => JSON.parse(m.content.toString('utf8')) as { type: string; order: Order; reason?: string };
const order = async (id: string) => redis.hgetall(keys.order(id));

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = createRedis(config.redis);
  await redisReady(redis);
  broker = await connectBroker({
    urls: config.rabbitmqUrls,
    queueType: config.queueType,
    log,
    publishTimeoutMs: 5000,
    name: 'processor-test',
  });
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, config.queueType));
  app = await startApp();
});

afterAll(async () => {
  await app?.stop();
  await broker?.close();
  await amqp?.close().catch(() => undefined);
  await redis?.quit();
});

beforeEach(async () => {
  await redis.flushdb();
  for (const q of [queues.notifier, queues.ordersDlq, queues.notifierDlq]) await ch.purgeQueue(q);
});

describe('order processor', () => {
  it('reserves stock for a placed order, records it created and publishes order.created', async () => {
    await redis.set(keys.inventory('sku-a'), '10');
    await placeAndWait([() => publishPlaced({ id: 'op-created-1', sku: 'sku-a', qty: 3, email: 'a@example.com' })]);

    expect(await redis.get(keys.inventory('sku-a'))).toBe('7');
    const o = await order('op-created-1');
    expect(o).toMatchObject({ status: 'created', id: 'op-created-1', sku: 'sku-a', qty: '3', email: 'a@example.com' });
    expect(o.createdAt).toBeTruthy();
    expect(await redis.get(keys.processedCount)).toBe('1');

    const out = await takeAll(queues.notifier);
    expect(out.map((m) => m.properties.messageId)).toEqual(['op-created-1:order.created']);
    const [msg] = out as [GetMessage];
    expect(msg.properties.deliveryMode).toBe(2);
    expect(msg.properties.headers?.['x-event-version']).toBe(1);
    expect(bodyOf(msg)).toMatchObject({
      type: 'order.created',
      order: { id: 'op-created-1', sku: 'sku-a', qty: 3, email: 'a@example.com' },
    });
    expect(await handled('created')).toBe(1);
  });

  it('rejects an unknown SKU without creating its inventory key', async () => {
    await placeAndWait([() => publishPlaced({ id: 'op-unknown-1', sku: 'no-such-sku', qty: 1 })]);

    expect(await order('op-unknown-1')).toMatchObject({ status: 'rejected', reason: 'unknown_sku' });
    expect(await redis.exists(keys.inventory('no-such-sku'))).toBe(0);
    expect(await redis.get(keys.processedCount)).toBeNull();
    expect(await redis.get(keys.stats.rejected)).toBe('1');
    const out = await takeAll(queues.notifier);
    expect(out.map((m) => m.properties.messageId)).toEqual(['op-unknown-1:order.rejected']);
    expect(bodyOf(out[0] as GetMessage)).toMatchObject({ type: 'order.rejected', reason: 'unknown_sku' });
  });

  it('rejects an order larger than the stock as out_of_stock and leaves the stock alone', async () => {
    await redis.set(keys.inventory('sku-low'), '2');
    await placeAndWait([() => publishPlaced({ id: 'op-oos-1', sku: 'sku-low', qty: 5 })]);

    expect(await order('op-oos-1')).toMatchObject({ status: 'rejected', reason: 'out_of_stock' });
    expect(await redis.get(keys.inventory('sku-low'))).toBe('2');
    expect(await redis.get(keys.processedCount)).toBeNull();
    const out = await takeAll(queues.notifier);
    expect(out.map((m) => bodyOf(m))).toMatchObject([{ type: 'order.rejected', reason: 'out_of_stock', order: { id: 'op-oos-1' } }]);
  });

  it('takes exactly-enough stock down to 0 and never below', async () => {
    await redis.set(keys.inventory('sku-exact'), '3');
    await placeAndWait([() => publishPlaced({ id: 'op-exact-1', sku: 'sku-exact', qty: 3 })]);
    expect(await order('op-exact-1')).toMatchObject({ status: 'created' });
    expect(await redis.get(keys.inventory('sku-exact'))).toBe('0');

    await placeAndWait([() => publishPlaced({ id: 'op-exact-2', sku: 'sku-exact', qty: 1 })]);
    expect(await order('op-exact-2')).toMatchObject({ status: 'rejected', reason: 'out_of_stock' });
    expect(await redis.get(keys.inventory('sku-exact'))).toBe('0');
  });

  it('reserves stock once for the same message delivered twice, and publishes the outcome for each copy', async () => {
    await redis.set(keys.inventory('sku-dup'), '10');
    const { content, options } = placedMessage({ id: 'op-dup-1', sku: 'sku-dup', qty: 4 });
    const copy = () => broker.publish(exchanges.direct, routingKeys.placed, content, options);
    const redeliveredBefore = await handled('redelivered');
    await placeAndWait([copy, copy]);

    expect(await redis.get(keys.inventory('sku-dup'))).toBe('6');
    expect(await redis.get(keys.processedCount)).toBe('1');
    expect(await order('op-dup-1')).toMatchObject({ status: 'created' });
    const out = await takeAll(queues.notifier);
    expect(out.map((m) => m.properties.messageId)).toEqual(['op-dup-1:order.created', 'op-dup-1:order.created']);
    expect((await handled('redelivered')) - redeliveredBefore).toBe(1);
    // One decision, one entry; the order is indexed as created, with the configured retention.
    expect(await historyEvents('op-dup-1')).toEqual(['created']);
    expect(await redis.zscore(keys.ordersByStatus('created'), 'op-dup-1')).not.toBeNull();
    await expectRetention(keys.order('op-dup-1'));
    await expectRetention(keys.history('op-dup-1'));
  });

  it('publishes the outcome on a redelivery after a crash between the Redis write and the confirm', async () => {
    await app.stop();
    try {
      await redis.set(keys.inventory('sku-crash'), '5');
      await publishPlaced({ id: 'op-crash-1', sku: 'sku-crash', qty: 1 });
      const first = await waitFor(
        'the order on orders.queue',
        async () => (await ch.get(queues.orders, { noAck: false })) || undefined,
        15_000,
      );

      // A fake broker only to inject the fault: the decision is stored, then the publish fails.
      const dying = {
        publish: async () => {
          throw new PublishError('injected: channel closed before the confirm', 'closed');
        },
      };
      await expect(handleOrderPlaced({ redis, broker: dying, log }, first)).rejects.toThrow(PublishError);
      expect(await redis.get(keys.inventory('sku-crash'))).toBe('4');
      expect(await takeAll(queues.notifier)).toEqual([]);
      ch.nack(first, false, true);
    } finally {
      app = await startApp();
    }

    await waitFor('the redelivery handled', async () => ((await handled()) >= 1 ? true : undefined), 15_000);
    expect(await handled('redelivered')).toBe(1);
    expect(await redis.get(keys.inventory('sku-crash'))).toBe('4');
    expect(await redis.get(keys.processedCount)).toBe('1');
    const out = await takeAll(queues.notifier);
    expect(out.map((m) => m.properties.messageId)).toEqual(['op-crash-1:order.created']);
    expect(await historyEvents('op-crash-1')).toEqual(['created']);
  });

  it('creates exactly as many of 50 concurrent orders as the stock allows', async () => {
    await redis.set(keys.inventory('sku-hot'), '20');
    const ids = Array.from({ length: 50 }, (_, i) => `op-conc-${i}`);
    await placeAndWait(ids.map((id) => () => publishPlaced({ id, sku: 'sku-hot', qty: 1 })));

    const statuses = await Promise.all(ids.map((id) => order(id)));
    expect(statuses.filter((o) => o.status === 'created')).toHaveLength(20);
    expect(statuses.filter((o) => o.status === 'rejected' && o.reason === 'out_of_stock')).toHaveLength(30);
    expect(await redis.get(keys.inventory('sku-hot'))).toBe('0');
    expect(await redis.get(keys.processedCount)).toBe('20');
    const out = await takeAll(queues.notifier);
    expect(out.filter((m) => m.properties.type === routingKeys.created)).toHaveLength(20);
    expect(out.filter((m) => m.properties.type === routingKeys.rejected)).toHaveLength(30);
  });

  it('dead-letters poison messages at once and keeps processing the next good one', async () => {
    const poison = async (messageId: string, body: string) =>
      broker.publish(exchanges.direct, routingKeys.placed, Buffer.from(body), {
        messageId,
        persistent: true,
        contentType: 'application/json',
      });
    const good = makeEvent(routingKeys.placed, { id: 'op-poison-ok', sku: 'sku-p', qty: 1 });
    await redis.set(keys.inventory('sku-p'), '1');
    await poison('op-poison-1:order.placed', 'this is not json');
    await poison('op-poison-2:order.placed', JSON.stringify({ ...good, order: { id: 'op-poison-2', qty: 'two' } }));
    await poison('op-poison-3:order.placed', JSON.stringify({ ...good, version: 2, order: { ...good.order, id: 'op-poison-3' } }));
    await placeAndWait([() => publishPlaced(good.order)]);

    const dead = await takeAtLeast(ch, queues.ordersDlq, 3);
    const reasons = Object.fromEntries(dead.map((m) => [m.properties.messageId, m.properties.headers?.[DEAD_LETTER_HEADERS.reason]]));
    expect(reasons).toEqual({
      'op-poison-1:order.placed': 'unparseable',
      'op-poison-2:order.placed': 'invalid',
      'op-poison-3:order.placed': 'unknown_version',
    });
    // At once: no retry copy came before the dead letter.
    for (const m of dead) expect(m.properties.headers?.[RETRY_COUNT_HEADER]).toBeUndefined();
    expect(await order('op-poison-ok')).toMatchObject({ status: 'created' });
    expect(await redis.exists(keys.order('op-poison-2'), keys.order('op-poison-3'))).toBe(0);
  });

  describe('a copy whose payload differs from the accepted order (another request under the same id)', () => {
    const accepted = { id: 'op-mismatch-1', sku: 'sku-mm', qty: 1, email: 'a@example.com' };
    const accept = async (o: Order) => {
      // The gateway's acceptance of the first payload; no claim is held, as after a lapsed lease.
      const [result] = await acceptOrders(redis, 60, new Date(), [{ ...o, token: 'gw-token', fingerprint: 'fp', response: '{}' }]);
      expect(result).toEqual({ outcome: 'accepted' });
    };

    it.each([
      ['qty', { ...accepted, qty: 3 }],
      ['sku', { ...accepted, sku: 'sku-mm-other' }],
      ['email', { id: accepted.id, sku: accepted.sku, qty: accepted.qty }],
    ])('differing in %s: reserves nothing, publishes nothing, dead-letters it as payload_mismatch', async (field, copy) => {
      await redis.set(keys.inventory('sku-mm'), '10');
      await redis.set(keys.inventory('sku-mm-other'), '10');
      await accept(accepted);
      const before = await order(accepted.id);

      await publishPlaced(copy);
      const [dead] = (await takeAtLeast(ch, queues.ordersDlq, 1)) as [GetMessage];
      expect(dead.properties.messageId).toBe('op-mismatch-1:order.placed');
      expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('payload_mismatch');
      expect(String(dead.properties.headers?.[DEAD_LETTER_HEADERS.error])).toContain(field);
      // At once: a retry cannot mend it.
      expect(dead.properties.headers?.[RETRY_COUNT_HEADER]).toBeUndefined();
      expect(await order(accepted.id)).toEqual(before);
      expect(await redis.get(keys.inventory('sku-mm'))).toBe('10');
      expect(await redis.get(keys.inventory('sku-mm-other'))).toBe('10');
      expect(await redis.get(keys.processedCount)).toBeNull();
      expect(await takeAll(queues.notifier)).toEqual([]);

      // The accepted payload's own copy is then decided as usual.
      await placeAndWait([() => publishPlaced(accepted)]);
      expect(await order(accepted.id)).toMatchObject({ status: 'created', qty: '1' });
      expect(await redis.get(keys.inventory('sku-mm'))).toBe('9');
    });

    it('a differing copy of an order decided before publishes no outcome with its own payload', async () => {
      await redis.set(keys.inventory('sku-mm'), '10');
      await placeAndWait([() => publishPlaced(accepted)]);
      expect((await takeAll(queues.notifier)).map((m) => bodyOf(m).order.qty)).toEqual([1]);

      await publishPlaced({ ...accepted, qty: 4 });
      const [dead] = (await takeAtLeast(ch, queues.ordersDlq, 1)) as [GetMessage];
      expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('payload_mismatch');
      expect(await redis.get(keys.inventory('sku-mm'))).toBe('9');
      expect(await takeAll(queues.notifier)).toEqual([]);
    });

    it('an aged differing copy does not expire the accepted order', async () => {
      await accept(accepted);
      const event = {
        ...makeEvent(routingKeys.placed, { ...accepted, qty: 2 }),
        occurredAt: new Date(Date.now() - config.orderTtlMs - 60_000).toISOString(),
      };
      const { content, options } = encodeEvent(event);
      await broker.publish(exchanges.direct, routingKeys.placed, content, options);
      const [dead] = (await takeAtLeast(ch, queues.ordersDlq, 1)) as [GetMessage];
      expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('payload_mismatch');
      expect(await order(accepted.id)).toMatchObject({ status: 'accepted', qty: '1' });
    });
  });

  it('retries an order whose inventory is not a whole number with backoff, then dead-letters it', async () => {
    await redis.set(keys.inventory('sku-bad'), 'abc');
    const started = Date.now();
    await publishPlaced({ id: 'op-bad-1', sku: 'sku-bad', qty: 1 });

    const [dead] = (await takeAtLeast(ch, queues.ordersDlq, 1)) as [GetMessage];
    const elapsed = Date.now() - started;
    const headers = dead.properties.headers ?? {};
    expect(dead.properties.messageId).toBe('op-bad-1:order.placed');
    expect(headers[DEAD_LETTER_HEADERS.reason]).toBe('attempts_exhausted');
    expect(String(headers[DEAD_LETTER_HEADERS.error])).toContain('not a whole number');
    expect(headers[RETRY_COUNT_HEADER]).toBe(MAX_ATTEMPTS - 1);
    // Waited backoff(1) + backoff(2) between the attempts.
    expect(elapsed).toBeGreaterThanOrEqual(backoffMs(1) + backoffMs(2));
    expect(await redis.get(keys.inventory('sku-bad'))).toBe('abc');
    expect(await redis.exists(keys.order('op-bad-1'))).toBe(0);
    expect(await takeAll(queues.notifier)).toEqual([]);
  });

  it('holds an order while Redis is down, pausing longer each time and counting no attempt, then decides it once', async () => {
    await app.stop();
    // Its own Redis (AOF on), killed and started again with its data: an outage of a few seconds,
    // longer than the attempts and backoffs of MAX_ATTEMPTS would last.
    const server = await startRedis({ appendonly: true });
    const own = createRedis({ url: server.url }, { overrides: { retryStrategy: () => 100 } });
    own.on('error', () => undefined);
    await redisReady(own);
    await own.set(keys.inventory('sku-down'), '5');
    // Counts the processor's reserve calls: the real client seen through a proxy, not a fake.
    const calls: number[] = [];
    const counted = new Proxy(own, {
      get(target, prop) {
        const value: unknown = Reflect.get(target, prop, target);
        if (typeof value !== 'function') return value;
        if (prop !== 'reserve') return (value as (...a: unknown[]) => unknown).bind(target);
        return (...args: unknown[]) => {
          calls.push(Date.now());
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const outage = await start({ config, redis: counted, broker, log, port: 0, host: '127.0.0.1', maxAttempts: 2, backoffMs });
    try {
      await server.kill();
      await publishPlaced({ id: 'op-down-1', sku: 'sku-down', qty: 2 });
      await waitFor('four tries during the outage', () => (calls.length >= 4 ? true : undefined), 20_000, 50);
      await server.start();
      const [created] = (await takeAtLeast(ch, queues.notifier, 1)) as [GetMessage];
      expect(created.properties.messageId).toBe('op-down-1:order.created');
      expect(await own.get(keys.inventory('sku-down'))).toBe('3');
      expect(await own.hget(keys.order('op-down-1'), 'status')).toBe('created');
    } finally {
      await outage.stop();
      own.disconnect();
      await server.stop();
      app = await startApp();
    }
    expect(await takeAll(queues.ordersDlq)).toEqual([]);
    // Each pause longer than the one before (250, 500, 1000 ms ...): no hot loop.
    const gaps = calls.slice(1, 4).map((t, i) => t - (calls[i] as number));
    expect(gaps[0]).toBeGreaterThanOrEqual(200);
    expect(gaps[1]).toBeGreaterThan(gaps[0] as number);
    expect(gaps[2]).toBeGreaterThan(gaps[1] as number);
  });

  describe('order expiry (ORDER_TTL_MS, default 15 minutes)', () => {
    const aged = (o: Order, ageMs = config.orderTtlMs + 60_000) => {
      const event = { ...makeEvent(routingKeys.placed, o), occurredAt: new Date(Date.now() - ageMs).toISOString() };
      return encodeEvent(event);
    };
    const publishAged = async (o: Order, ageMs?: number) => {
      const { content, options } = aged(o, ageMs);
      await broker.publish(exchanges.direct, routingKeys.placed, content, options);
    };

    it('dead-letters an order that waited longer than the TTL with reason expired, marks it expired and takes no stock', async () => {
      await redis.set(keys.inventory('sku-exp'), '5');
      const before = await handled('expired');
      await publishAged({ id: 'op-exp-1', sku: 'sku-exp', qty: 2 });

      const [dead] = (await takeAtLeast(ch, queues.ordersDlq, 1)) as [GetMessage];
      expect(dead.properties.messageId).toBe('op-exp-1:order.placed');
      expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('expired');
      expect(String(dead.properties.headers?.[DEAD_LETTER_HEADERS.error])).toContain('ORDER_TTL_MS');
      expect(await order('op-exp-1')).toMatchObject({ id: 'op-exp-1', sku: 'sku-exp', qty: '2', status: 'expired' });
      expect(await redis.get(keys.inventory('sku-exp'))).toBe('5');
      expect(await redis.get(keys.processedCount)).toBeNull();
      expect(await takeAll(queues.notifier)).toEqual([]);
      expect((await handled('expired')) - before).toBe(1);

      // A later copy of the same order (a duplicate publish, a replay) cannot reserve it any more.
      await placeAndWait([() => publishPlaced({ id: 'op-exp-1', sku: 'sku-exp', qty: 2 })]);
      expect(await order('op-exp-1')).toMatchObject({ status: 'expired' });
      expect(await redis.get(keys.inventory('sku-exp'))).toBe('5');
      expect(await takeAll(queues.notifier)).toEqual([]);
    });

    it('never expires a decided order: an old redelivered copy of a created order publishes its outcome again', async () => {
      await redis.set(keys.inventory('sku-exp2'), '5');
      await placeAndWait([() => publishPlaced({ id: 'op-exp-2', sku: 'sku-exp2', qty: 1 })]);
      await placeAndWait([() => publishAged({ id: 'op-exp-2', sku: 'sku-exp2', qty: 1 })]);
      expect(await order('op-exp-2')).toMatchObject({ status: 'created' });
      expect(await redis.get(keys.inventory('sku-exp2'))).toBe('4');
      expect((await takeAll(queues.notifier)).map((m) => m.properties.messageId)).toEqual([
        'op-exp-2:order.created',
        'op-exp-2:order.created',
      ]);
      expect(await drainQueue(ch, queues.ordersDlq)).toEqual([]);
    });

    it('processes an order that waited less than the TTL', async () => {
      await redis.set(keys.inventory('sku-exp3'), '5');
      await placeAndWait([() => publishAged({ id: 'op-exp-3', sku: 'sku-exp3', qty: 1 }, config.orderTtlMs - 60_000)]);
      expect(await order('op-exp-3')).toMatchObject({ status: 'created' });
    });
  });

  it("keeps the processor's status when the gateway records the order afterwards", async () => {
    await redis.set(keys.inventory('sku-late'), '5');
    await placeAndWait([() => publishPlaced({ id: 'op-late-1', sku: 'sku-late', qty: 2 })]);
    const decided = await order('op-late-1');
    expect(decided.status).toBe('created');

    const accepted = await acceptOrders(redis, 60, new Date(Date.now() + 1000), [
      { id: 'op-late-1', sku: 'sku-late', qty: 2, token: 'token-1', fingerprint: 'fp', response: '{}' },
    ]);
    expect(accepted).toEqual([{ outcome: 'accepted' }]);
    expect(await order('op-late-1')).toEqual(decided);
  });

  it('answers /readyz 200 and serves its metrics while running', async () => {
    const ready = await fetch(`${app.address}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
    const metrics = await (await fetch(`${app.address}/metrics`)).text();
    expect(metrics).toContain('processor_handle_seconds_bucket');
    expect(metrics).toMatch(/processor_orders_total\{outcome="rejected_unknown_sku"/);
  });
});
