// Cancellation decided once by the processor, against real Redis and RabbitMQ: the race matrix of a
// cancel against its order's placement (before, after, redelivered, several at once, of a final
// order, after a crash between the script and the publish), and the stock it leaves.
import type { Channel, ChannelModel, GetMessage, Message } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  PublishError,
  acceptOrders,
  cancelOrder,
  connectBroker,
  createLogger,
  createRedis,
  encodeEvent,
  exchanges,
  expireOrder,
  keys,
  loadConfig,
  makeEvent,
  queues,
  redisReady,
  reserveOrder,
  routingKeys,
  type Broker,
  type EventType,
  type Order,
  type RedisClient,
} from '@order-pipeline/shared';
import { drainQueue, openTopologyChannel } from '../../test/helpers/broker.js';
import { waitFor } from '../../test/helpers/processes.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type RunningProcessor } from '../src/app.js';
import { handleOrderMessage } from '../src/processor.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('order-processor-test', process.env.TEST_LOG_LEVEL ?? 'silent');
const config = loadConfig('order-processor', {
  REDIS_URL: redisUrl,
  RABBITMQ_URLS: rabbitmqUrls.join(','),
  PREFETCH: '20',
  LOG_LEVEL: 'silent',
});

let redis: RedisClient;
let broker: Broker;
let amqp: ChannelModel;
let ch: Channel;
let app: RunningProcessor | undefined;

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = createRedis(config.redis);
  await redisReady(redis);
  broker = await connectBroker({
    urls: config.rabbitmqUrls,
    queueType: config.queueType,
    log,
    publishTimeoutMs: 5000,
    name: 'cancel-test',
  });
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, config.queueType));
});

afterAll(async () => {
  await app?.stop();
  await broker?.close();
  await amqp?.close().catch(() => undefined);
  await redis?.quit();
});

beforeEach(async () => {
  await redis.flushdb();
  for (const q of [queues.orders, queues.notifier, queues.ordersDlq, queues.notifierDlq]) await ch.purgeQueue(q);
});

const deps = () => ({ redis, broker, log });

/** A delivery of the event as the consumer hands it over (only the content is read). */
function delivery(type: EventType, order: Order, cancelReason?: string): Message {
  const { content, options } = encodeEvent(makeEvent(type, order, undefined, { cancelReason }));
  return { content, properties: options, fields: { routingKey: type } } as unknown as Message;
}
const placed = (order: Order) => handleOrderMessage(deps(), delivery(routingKeys.placed, order));
const cancelled = (order: Order, reason?: string) => handleOrderMessage(deps(), delivery(routingKeys.cancelRequested, order, reason));

/** The gateway's acceptance: order:<id> with status accepted (no idempotency record: ours). */
async function accept(order: Order): Promise<void> {
  const [r] = await acceptOrders(redis, 60, new Date(), [{ ...order, token: 'tok', fingerprint: 'fp', response: '{}' }]);
  expect(r).toEqual({ outcome: 'accepted' });
}

const stock = async (sku: string) => Number(await redis.get(keys.inventory(sku)));
const hash = (id: string) => redis.hgetall(keys.order(id));
const cancelCount = async () => Number((await redis.get(keys.stats.cancelled)) ?? 0);
const published = async (): Promise<string[]> =>
  (await drainQueue(ch, queues.notifier)).map((m: GetMessage) => m.properties.messageId as string);

describe('a cancellation decided once', () => {
  it('before its placement is processed: the order is cancelled and the placement reserves nothing', async () => {
    const order = { id: 'cx-before-1', sku: 'sku-b', qty: 3 };
    await redis.set(keys.inventory('sku-b'), '10');
    await accept(order);

    const c = await cancelled(order, 'changed my mind');
    expect(c).toEqual({ cancel: { kind: 'cancelled', orderId: order.id, units: 0, status: 'cancelled', published: 'order.cancelled' } });
    const p = await placed(order);
    expect(p).toMatchObject({ placed: { kind: 'cancelled', status: 'cancelled' } });
    expect('placed' in p && p.placed.published).toBeUndefined();

    expect(await stock('sku-b')).toBe(10);
    expect(await redis.get(keys.processedCount)).toBeNull();
    const h = await hash(order.id);
    expect(h).toMatchObject({ status: 'cancelled', cancelReason: 'changed my mind' });
    expect(Date.parse(h.cancelledAt ?? '')).toBeGreaterThan(0);
    expect(h.updatedAt).toBe(h.cancelledAt);
    expect(await cancelCount()).toBe(1);
    expect(await published()).toEqual(['cx-before-1:order.cancelled']);
  });

  it('created, then cancelled before the placement was acked: its redelivery still publishes order.created, and reserves nothing', async () => {
    // The processor died after reserve-10.lua and before the outcome's confirm; the cancellation
    // was decided meanwhile. The receiver must still get the order.created that the reservation owes.
    const order = { id: 'cx-died-created-1', sku: 'sku-d', qty: 2 };
    await redis.set(keys.inventory('sku-d'), '10');
    await accept(order);
    expect(await reserveOrder(redis, order, new Date())).toEqual({ outcome: 'created' });
    expect(await cancelled(order)).toMatchObject({ cancel: { kind: 'refunded', units: 2 } });
    expect(await placed(order)).toMatchObject({ placed: { kind: 'cancelled', status: 'cancelled', published: 'order.created' } });
    expect(await stock('sku-d')).toBe(10);
    expect((await published()).sort()).toEqual(['cx-died-created-1:order.cancelled', 'cx-died-created-1:order.created']);
  });

  it('before the gateway recorded the order at all: the hash is filled in as cancelled, the placement reserves nothing', async () => {
    const order = { id: 'cx-nohash-1', sku: 'sku-n', qty: 2, email: 'n@example.com' };
    await redis.set(keys.inventory('sku-n'), '5');
    await cancelled(order);
    expect(await hash(order.id)).toMatchObject({ id: order.id, sku: 'sku-n', qty: '2', email: 'n@example.com', status: 'cancelled' });
    expect((await hash(order.id)).cancelReason).toBeUndefined();
    await placed(order);
    // The gateway's late acceptance keeps the processor's status.
    await accept(order);
    expect((await hash(order.id)).status).toBe('cancelled');
    expect(await stock('sku-n')).toBe(5);
    expect(await published()).toEqual(['cx-nohash-1:order.cancelled']);
  });

  it('after the order was created: its qty goes back to stock once, and a redelivered cancel changes nothing but publishes again', async () => {
    const order = { id: 'cx-after-1', sku: 'sku-a', qty: 4 };
    await redis.set(keys.inventory('sku-a'), '10');
    await accept(order);
    expect(await placed(order)).toMatchObject({ placed: { kind: 'created' } });
    expect(await stock('sku-a')).toBe(6);

    expect(await cancelled(order, 'first')).toMatchObject({ cancel: { kind: 'refunded', units: 4 } });
    expect(await stock('sku-a')).toBe(10);
    expect(await cancelled(order, 'second')).toMatchObject({
      cancel: { kind: 'already_cancelled', units: 0, published: 'order.cancelled' },
    });
    expect(await stock('sku-a')).toBe(10);
    // The first reason recorded stays.
    expect((await hash(order.id)).cancelReason).toBe('first');
    expect(await cancelCount()).toBe(1);
    expect(await redis.get(keys.processedCount)).toBe('1');
    // And a late copy of the placement reserves nothing; it publishes order.created again, as any
    // redelivery of a created order does (the notifier sends it once).
    await placed(order);
    expect(await stock('sku-a')).toBe(10);
    expect(await published()).toEqual([
      'cx-after-1:order.created',
      'cx-after-1:order.cancelled',
      'cx-after-1:order.cancelled',
      'cx-after-1:order.created',
    ]);
  });

  it.each(['rejected', 'expired'] as const)('of a %s order: nothing changes and nothing is published', async (final) => {
    const order = { id: `cx-${final}-1`, sku: 'sku-f', qty: 5 };
    await redis.set(keys.inventory('sku-f'), '2');
    await accept(order);
    if (final === 'rejected') expect(await placed(order)).toMatchObject({ placed: { status: 'rejected' } });
    else expect(await expireOrder(redis, order, new Date())).toEqual({ outcome: 'expired' });
    await drainQueue(ch, queues.notifier);
    const before = await hash(order.id);

    expect(await cancelled(order, 'too late')).toEqual({ cancel: { kind: 'not_cancellable', orderId: order.id, units: 0, status: final } });
    expect(await hash(order.id)).toEqual(before);
    expect(await stock('sku-f')).toBe(2);
    expect(await cancelCount()).toBe(0);
    expect(await published()).toEqual([]);
  });

  it('after a processor died between the script and the publish: the redelivery publishes order.cancelled and gives nothing back again', async () => {
    const order = { id: 'cx-crash-1', sku: 'sku-c', qty: 3 };
    await redis.set(keys.inventory('sku-c'), '10');
    await accept(order);
    await placed(order);
    await drainQueue(ch, queues.notifier);
    // The first delivery's script ran, then the process died: nothing was published, nothing acked.
    expect(await cancelOrder(redis, order, 'crash', new Date())).toEqual({ outcome: 'cancelled', units: 3 });
    expect(await published()).toEqual([]);

    expect(await cancelled(order, 'crash')).toMatchObject({ cancel: { kind: 'already_cancelled', published: 'order.cancelled' } });
    expect(await stock('sku-c')).toBe(10);
    expect(await cancelCount()).toBe(1);
    expect(await published()).toEqual(['cx-crash-1:order.cancelled']);
  });

  it('a real redelivery after a publish that failed past the script: order.cancelled published, stock back once', async () => {
    const order = { id: 'cx-redeliver-1', sku: 'sku-r', qty: 2 };
    await redis.set(keys.inventory('sku-r'), '10');
    await accept(order);
    await placed(order);
    await drainQueue(ch, queues.notifier);
    const { content, options } = encodeEvent(makeEvent(routingKeys.cancelRequested, order));
    await broker.publish(exchanges.direct, routingKeys.cancelRequested, content, options);
    const first = await waitFor(
      'the cancel on orders.queue',
      async () => (await ch.get(queues.orders, { noAck: false })) || undefined,
      15_000,
    );

    // A fake broker only to inject the fault: the script runs, then the publish fails.
    const dying = {
      publish: async () => {
        throw new PublishError('injected: channel closed before the confirm', 'closed');
      },
    };
    await expect(handleOrderMessage({ redis, broker: dying, log }, first)).rejects.toThrow(/injected/);
    expect(await stock('sku-r')).toBe(10);
    ch.nack(first, false, true);

    const again = await waitFor('the redelivered cancel', async () => (await ch.get(queues.orders, { noAck: false })) || undefined, 15_000);
    expect(again.fields.redelivered).toBe(true);
    expect(await handleOrderMessage(deps(), again)).toMatchObject({ cancel: { kind: 'already_cancelled', published: 'order.cancelled' } });
    ch.ack(again);
    expect(await stock('sku-r')).toBe(10);
    expect(await cancelCount()).toBe(1);
    expect(await published()).toEqual(['cx-redeliver-1:order.cancelled']);
  });

  it('refuses a copy whose payload differs from the recorded order (dead-lettered), changing nothing', async () => {
    const order = { id: 'cx-mismatch-1', sku: 'sku-m', qty: 3 };
    await redis.set(keys.inventory('sku-m'), '10');
    await accept(order);
    await placed(order);
    await expect(cancelled({ ...order, qty: 1 })).rejects.toThrow(/another payload/);
    expect(await stock('sku-m')).toBe(7);
    expect((await hash(order.id)).status).toBe('created');
  });
});

describe('the running processor', () => {
  beforeAll(async () => {
    app = await start({ config, redis, broker, log, port: 0, host: '127.0.0.1', maxAttempts: 3, backoffMs: () => 50 });
  });

  /** Sum of processor_cancellations_total (or of one outcome) and of processor_orders_total. */
  async function counts(): Promise<{ cancels: Record<string, number>; orders: number }> {
    const text = await (await fetch(`${app?.address}/metrics`)).text();
    const cancels: Record<string, number> = {};
    for (const m of text.matchAll(/^processor_cancellations_total\{[^}]*outcome="([^"]+)"[^}]*\} (\d+)/gm))
      cancels[m[1] as string] = Number(m[2]);
    let orders = 0;
    for (const m of text.matchAll(/^processor_orders_total\{[^}]*\} (\d+)/gm)) orders += Number(m[1]);
    return { cancels, orders };
  }
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

  async function publish(type: EventType, order: Order, reason?: string): Promise<void> {
    const { content, options } = encodeEvent(makeEvent(type, order, undefined, { cancelReason: reason }));
    await broker.publish(exchanges.direct, type, content, options);
  }

  it('consumes order.cancel_requested from orders.queue: several cancels of one created order at once give its stock back once', async () => {
    const order = { id: 'cx-many-1', sku: 'sku-many', qty: 7 };
    await redis.set(keys.inventory('sku-many'), '20');
    await accept(order);
    const before = await counts();
    await publish(routingKeys.placed, order);
    await waitFor('the placement handled', async () => ((await counts()).orders > before.orders ? true : undefined), 15_000);
    expect(await stock('sku-many')).toBe(13);

    await Promise.all(Array.from({ length: 6 }, (_, i) => publish(routingKeys.cancelRequested, order, `copy ${i}`)));
    await waitFor('6 cancels handled', async () => (sum((await counts()).cancels) >= sum(before.cancels) + 6 ? true : undefined), 15_000);

    const after = await counts();
    expect((after.cancels.refunded ?? 0) - (before.cancels.refunded ?? 0)).toBe(1);
    expect((after.cancels.already_cancelled ?? 0) - (before.cancels.already_cancelled ?? 0)).toBe(5);
    expect(await stock('sku-many')).toBe(20);
    expect(await cancelCount()).toBe(1);
    const out = await published();
    expect(out.filter((id) => id === 'cx-many-1:order.cancelled').length).toBeGreaterThanOrEqual(1);
    expect(out.filter((id) => id === 'cx-many-1:order.created')).toHaveLength(1);
  });

  it('whatever the interleaving of placements and cancels, stock = seeded - the qty of orders created and not cancelled', async () => {
    const SEED = 60;
    await redis.set(keys.inventory('sku-mix'), String(SEED));
    const orders = Array.from({ length: 24 }, (_, i) => ({ id: `cx-mix-${i}`, sku: 'sku-mix', qty: 1 + (i % 5) }));
    for (const o of orders) await accept(o);
    // Every third order is not cancelled; the others get one to three cancels, before or after their placement.
    const messages: (() => Promise<void>)[] = [];
    orders.forEach((o, i) => {
      messages.push(() => publish(routingKeys.placed, o));
      if (i % 3 !== 0) for (let k = 0; k <= i % 3; k++) messages.push(() => publish(routingKeys.cancelRequested, o));
    });
    // A fixed shuffle (seeded), so a failure can be replayed.
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = messages.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [messages[i], messages[j]] = [messages[j] as () => Promise<void>, messages[i] as () => Promise<void>];
    }
    const before = await counts();
    const cancels = messages.length - orders.length;
    await Promise.all(messages.map((m) => m()));
    await waitFor(
      'every message handled',
      async () => {
        const c = await counts();
        return c.orders >= before.orders + orders.length && sum(c.cancels) >= sum(before.cancels) + cancels ? true : undefined;
      },
      20_000,
    );

    const statuses = await Promise.all(orders.map(async (o) => (await hash(o.id)).status));
    let reserved = 0;
    orders.forEach((o, i) => {
      const status = statuses[i];
      if (i % 3 === 0) expect(['created', 'rejected']).toContain(status);
      else expect(status).toBe('cancelled');
      if (status === 'created') reserved += o.qty;
    });
    expect(await stock('sku-mix')).toBe(SEED - reserved);
    expect(await cancelCount()).toBe(orders.filter((_, i) => i % 3 !== 0).length);
    const out = await published();
    for (const [i, o] of orders.entries()) {
      if (i % 3 !== 0) expect(out, o.id).toContain(`${o.id}:order.cancelled`);
    }
  });
});
