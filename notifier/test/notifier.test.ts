// The notifier against real Redis and RabbitMQ, sending to a real local HTTP receiver: each
// notification is sent once, failures are retried with growing delays and end in the DLQ.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Channel, ChannelModel, GetMessage, Message } from 'amqplib';
import { pino } from 'pino';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DEAD_LETTER_HEADERS,
  RETRY_COUNT_HEADER,
  claimNotification,
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
  trace,
  type Broker,
  type Order,
  type RedisClient,
  type RejectReason,
} from '@order-pipeline/shared';
import { drainQueue, openTopologyChannel, takeAtLeast } from '../../test/helpers/broker.js';
import { waitFor } from '../../test/helpers/processes.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type RunningNotifier } from '../src/app.js';
import { LEASE_RECHECK_MS, UnrecordedSends, handleOutcome } from '../src/notifier.js';
import { webhookIdOf } from '../src/senders.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('notifier-test', process.env.TEST_LOG_LEVEL ?? 'silent');
const MAX_ATTEMPTS = 4;
// The webhook's retry schedule, compressed: attempt n+1 waits SCHEDULE[n] (plus up to 10% jitter).
const SCHEDULE = '0,150ms,300ms,600ms';
const backoffMs = (attempt: number) => 150 * 2 ** (attempt - 1);
const SECRET = `whsec_${Buffer.alloc(32, 5).toString('base64')}`;

interface Received {
  at: number;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** A webhook receiver: records every POST and answers what the order's responder says. */
class Receiver {
  readonly received: Received[] = [];
  /** Status to answer for the nth POST (1-based) about an order; 200 when none is set. */
  readonly responders = new Map<string, (nth: number) => number>();
  private server?: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        // Every request must verify, by the standardwebhooks package, not by the sender's code.
        new Webhook(SECRET).verify(raw, req.headers as Record<string, string>);
        const body = JSON.parse(raw) as Record<string, unknown>;
        this.received.push({ at: Date.now(), headers: req.headers, body });
        const id = String(body.orderId);
        const status = this.responders.get(id)?.(this.of(id).length) ?? 200;
        res.writeHead(status, { 'Content-Type': 'text/plain' }).end(status < 300 ? 'ok' : 'receiver says no');
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/orders`;
  }

  of(orderId: string): Received[] {
    return this.received.filter((r) => r.body.orderId === orderId);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

const receiver = new Receiver();
let redis: RedisClient;
let broker: Broker;
let amqp: ChannelModel;
let ch: Channel;
let app: RunningNotifier;

function configFor(webhook: string | undefined) {
  return loadConfig('notifier', {
    REDIS_URL: redisUrl,
    RABBITMQ_URLS: rabbitmqUrls.join(','),
    PREFETCH: '20',
    LOG_LEVEL: 'silent',
    // Not the default: the records' expiry shows the notifier passes its own retention.
    ORDER_RETENTION_DAYS: '2',
    NOTIFY_RETRY_SCHEDULE: SCHEDULE,
    NOTIFY_WEBHOOK_SECRET: SECRET,
    // The breaker stays out of these tests (webhooks.test.ts has its own).
    NOTIFY_BREAKER_THRESHOLD: '1000',
    ...(webhook ? { NOTIFY_WEBHOOK_URL: webhook } : {}),
  });
}

const startApp = (webhook: string | undefined, logger = log) =>
  start({ config: configFor(webhook), redis, broker, log: logger, port: 0, host: '127.0.0.1', maxAttempts: MAX_ATTEMPTS, backoffMs });

/** notifier_notifications_total for one result. */
async function results(result: string): Promise<number> {
  const text = await (await fetch(`${app.address}/metrics`)).text();
  const m = new RegExp(`^notifier_notifications_total\\{[^}]*result="${result}"[^}]*\\} (\\d+)`, 'm').exec(text);
  return Number(m?.[1] ?? NaN);
}

function outcomeMessage(order: Order, reason?: RejectReason) {
  return encodeEvent(makeEvent(reason ? routingKeys.rejected : routingKeys.created, order, reason));
}

async function publishOutcome(order: Order, reason?: RejectReason): Promise<void> {
  const { content, options } = outcomeMessage(order, reason);
  await broker.publish(exchanges.topic, String(options.type), content, options);
}

const notification = (id: string) => redis.hgetall(keys.notification(id));
const history = async (id: string) => (await redis.lrange(keys.history(id), 0, -1)).map((e) => JSON.parse(e) as unknown);
const waitStatus = (id: string, status: string) =>
  waitFor(
    `notification ${id} ${status}`,
    async () => {
      const n = await notification(id);
      return n.status === status ? n : undefined;
    },
    15_000,
  );

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  await receiver.start();
  const config = configFor(receiver.url);
  redis = createRedis(config.redis);
  await redisReady(redis);
  broker = await connectBroker({
    urls: config.rabbitmqUrls,
    queueType: config.queueType,
    log,
    publishTimeoutMs: 5000,
    name: 'notifier-test',
  });
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, config.queueType));
  app = await startApp(receiver.url);
});

afterAll(async () => {
  await app?.stop();
  await broker?.close();
  await amqp?.close().catch(() => undefined);
  await redis?.quit();
  await receiver.close();
});

beforeEach(async () => {
  await redis.flushdb();
  await ch.purgeQueue(queues.notifierDlq);
});

describe('notifier', () => {
  it('sends an order.created notification to the webhook once and records it sent', async () => {
    await publishOutcome({ id: 'nt-created-1', sku: 'sku-a', qty: 2, email: 'buyer@example.com' });
    const n = await waitStatus('nt-created-1', 'sent');

    const posts = receiver.of('nt-created-1');
    expect(posts).toHaveLength(1);
    const [post] = posts as [Received];
    expect(post.headers['webhook-id']).toBe(webhookIdOf('nt-created-1', 'order.created'));
    expect(post.headers['idempotency-key']).toBe(post.headers['webhook-id']);
    expect(post.headers['content-type']).toBe('application/json');
    const notice = {
      orderId: 'nt-created-1',
      status: 'created',
      email: 'buyer@example.com',
      message: 'Order nt-created-1 confirmed: 2 x sku-a',
    };
    expect(post.body).toEqual({
      type: 'order.created',
      timestamp: expect.any(String),
      data: { ...notice, order: { id: 'nt-created-1', sku: 'sku-a', qty: 2, email: 'buyer@example.com' } },
      ...notice,
    });
    expect(n).toMatchObject({ status: 'sent', attempts: '1', channel: 'webhook' });
    expect(Date.parse(n.sentAt ?? '')).toBeGreaterThan(Date.now() - 60_000);
    expect(n.owner).toBeUndefined();
    expect(await redis.get(keys.stats.notificationsSent)).toBe('1');
    expect(await results('sent')).toBeGreaterThanOrEqual(1);
  });

  it('sends an order.rejected notification with its reason', async () => {
    await publishOutcome({ id: 'nt-rejected-1', sku: 'sku-b', qty: 1 }, 'out_of_stock');
    await waitStatus('nt-rejected-1', 'sent');

    const notice = {
      orderId: 'nt-rejected-1',
      status: 'rejected',
      reason: 'out_of_stock',
      message: 'Order nt-rejected-1 rejected: out_of_stock',
    };
    expect(receiver.of('nt-rejected-1').map((r) => r.body)).toEqual([
      {
        type: 'order.rejected',
        timestamp: expect.any(String),
        data: { ...notice, order: { id: 'nt-rejected-1', sku: 'sku-b', qty: 1 } },
        ...notice,
      },
    ]);
  });

  it('sends once when the same event is delivered twice', async () => {
    const alreadyBefore = await results('already_sent');
    const { content, options } = outcomeMessage({ id: 'nt-dup-1', sku: 'sku-a', qty: 1 });
    await broker.publish(exchanges.topic, routingKeys.created, content, options);
    await broker.publish(exchanges.topic, routingKeys.created, content, options);

    await waitFor(
      'the second copy absorbed',
      async () => ((await results('already_sent')) === alreadyBefore + 1 ? true : undefined),
      15_000,
    );
    expect(receiver.of('nt-dup-1')).toHaveLength(1);
    expect(await notification('nt-dup-1')).toMatchObject({ status: 'sent', attempts: '1' });
    expect(await redis.get(keys.stats.notificationsSent)).toBe('1');
    expect(await history('nt-dup-1')).toEqual([
      { at: expect.any(String), event: 'notification_sent', kind: 'outcome', channel: 'webhook', attempts: 1 },
    ]);
    // No order here (the notifier alone): the records are kept for the retention (2 days) from now.
    for (const key of [keys.notification('nt-dup-1'), keys.history('nt-dup-1')]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(2 * 86_400_000 - 60_000);
      expect(ttl).toBeLessThanOrEqual(2 * 86_400_000);
    }
  });

  it('retries a failing webhook with growing delays until it accepts', async () => {
    receiver.responders.set('nt-retry-1', (nth) => (nth <= 2 ? 500 : 200));
    const failedBefore = await results('failed_attempt');
    await publishOutcome({ id: 'nt-retry-1', sku: 'sku-a', qty: 1 });
    const n = await waitStatus('nt-retry-1', 'sent');

    expect(n).toMatchObject({ status: 'sent', attempts: '3', channel: 'webhook' });
    expect(n.lastError).toBeUndefined();
    const at = receiver.of('nt-retry-1').map((r) => r.at);
    expect(at).toHaveLength(3);
    const [t1, t2, t3] = at as [number, number, number];
    expect(t2 - t1).toBeGreaterThanOrEqual(backoffMs(1));
    expect(t3 - t2).toBeGreaterThan(t2 - t1);
    expect((await results('failed_attempt')) - failedBefore).toBe(2);
    // The failed attempts before the send add nothing: one entry, the send.
    expect(await history('nt-retry-1')).toEqual([
      { at: expect.any(String), event: 'notification_sent', kind: 'outcome', channel: 'webhook', attempts: 3 },
    ]);
  });

  it('marks the notification failed and dead-letters it when the webhook never accepts', async () => {
    receiver.responders.set('nt-fail-1', () => 500);
    await publishOutcome({ id: 'nt-fail-1', sku: 'sku-a', qty: 1 });

    const [dead] = (await takeAtLeast(ch, queues.notifierDlq, 1)) as [GetMessage];
    expect(dead.properties.messageId).toBe('nt-fail-1:order.created');
    expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('attempts_exhausted');
    const n = await notification('nt-fail-1');
    expect(n).toMatchObject({ status: 'failed', attempts: String(MAX_ATTEMPTS), channel: 'webhook' });
    expect(n.lastError).toContain('500');
    expect(receiver.of('nt-fail-1')).toHaveLength(MAX_ATTEMPTS);
    expect(await redis.get(keys.stats.notificationsFailed)).toBe('1');
    expect(await redis.get(keys.stats.notificationsSent)).toBeNull();
    expect(await history('nt-fail-1')).toEqual([
      {
        at: expect.any(String),
        event: 'notification_failed',
        kind: 'outcome',
        channel: 'webhook',
        attempts: MAX_ATTEMPTS,
        error: expect.stringContaining('500'),
      },
    ]);
  });

  it('waits out the lease of a sender that died mid-send, then sends once', async () => {
    const leaseMs = 1000;
    const claimedAt = Date.now();
    // A sender that claimed the notification and died before recording anything.
    const claim = await claimNotification(redis, 'nt-crash-1', 'dead-sender', leaseMs, 'webhook');
    expect(claim).toEqual({ outcome: 'claimed', attempts: 1 });
    await publishOutcome({ id: 'nt-crash-1', sku: 'sku-a', qty: 1 });
    const n = await waitStatus('nt-crash-1', 'sent');

    const posts = receiver.of('nt-crash-1');
    expect(posts).toHaveLength(1);
    // Redis's clock sets the lease; allow a little skew against this process's clock.
    expect((posts[0] as Received).at - claimedAt).toBeGreaterThanOrEqual(leaseMs - 50);
    expect(n).toMatchObject({ status: 'sent', attempts: '2' });
  });

  it('waits out a lease longer than all its attempts without counting them, and never dead-letters for it', async () => {
    const leaseMs = 3000;
    const heldBefore = await results('lease_held');
    await claimNotification(redis, 'nt-lease-2', 'dead-sender', leaseMs, 'webhook');
    await publishOutcome({ id: 'nt-lease-2', sku: 'sku-a', qty: 1 });
    const n = await waitStatus('nt-lease-2', 'sent');

    expect(n).toMatchObject({ status: 'sent', attempts: '2' });
    expect(receiver.of('nt-lease-2')).toHaveLength(1);
    // Looked at the lease more often than MAX_ATTEMPTS, none of it counted as a failed attempt.
    expect((await results('lease_held')) - heldBefore).toBeGreaterThan(MAX_ATTEMPTS);
    expect(await drainQueue(ch, queues.notifierDlq)).toEqual([]);
  });

  it('stops at once while a message waits out a lease, and the message is sent after the restart', async () => {
    await claimNotification(redis, 'nt-lease-3', 'dead-sender', 60_000, 'webhook');
    const heldBefore = await results('lease_held');
    await publishOutcome({ id: 'nt-lease-3', sku: 'sku-a', qty: 1 });
    await waitFor('the lease seen', async () => ((await results('lease_held')) > heldBefore ? true : undefined), 15_000);
    const started = Date.now();
    await app.stop();
    // Bounded by one look at the lease (LEASE_RECHECK_MS), not by the 60 s lease.
    expect(Date.now() - started).toBeLessThan(LEASE_RECHECK_MS + 1500);
    app = await startApp(receiver.url);
    // The dead sender's lease runs out.
    await redis.hset(keys.notification('nt-lease-3'), 'leaseUntil', 0);
    await waitStatus('nt-lease-3', 'sent');
    expect(receiver.of('nt-lease-3')).toHaveLength(1);
  });

  it('dead-letters a poison message at once without sending anything', async () => {
    const before = receiver.received.length;
    await broker.publish(exchanges.topic, routingKeys.created, Buffer.from('{"type":"order.created",'), {
      messageId: 'nt-poison-1:order.created',
      persistent: true,
      contentType: 'application/json',
    });

    const [dead] = (await takeAtLeast(ch, queues.notifierDlq, 1)) as [GetMessage];
    expect(dead.properties.messageId).toBe('nt-poison-1:order.created');
    expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('unparseable');
    expect(dead.properties.headers?.[RETRY_COUNT_HEADER]).toBeUndefined();
    expect(receiver.received.length).toBe(before);
  });

  it('dead-letters a schema failure and an unknown version at once with their reason, and keeps sending the next good one', async () => {
    const before = receiver.received.length;
    const good = makeEvent(routingKeys.created, { id: 'nt-poison-ok', sku: 'sku-a', qty: 1 });
    const poison = (messageId: string, body: unknown) =>
      broker.publish(exchanges.topic, routingKeys.created, Buffer.from(JSON.stringify(body)), {
        messageId,
        persistent: true,
        contentType: 'application/json',
      });
    await poison('nt-poison-2:order.created', { ...good, order: { id: 'nt-poison-2', sku: 'sku-a', qty: 0 } });
    await poison('nt-poison-3:order.created', { ...good, version: 7, order: { ...good.order, id: 'nt-poison-3' } });
    await publishOutcome(good.order);

    const dead = await takeAtLeast(ch, queues.notifierDlq, 2);
    const reasons = Object.fromEntries(dead.map((m) => [m.properties.messageId, m.properties.headers?.[DEAD_LETTER_HEADERS.reason]]));
    expect(reasons).toEqual({ 'nt-poison-2:order.created': 'invalid', 'nt-poison-3:order.created': 'unknown_version' });
    for (const m of dead) {
      expect(m.properties.headers?.[RETRY_COUNT_HEADER]).toBeUndefined();
      expect(m.properties.headers?.[DEAD_LETTER_HEADERS.queue]).toBe(queues.notifier);
      expect(String(m.properties.headers?.[DEAD_LETTER_HEADERS.error])).not.toBe('');
    }
    await waitStatus('nt-poison-ok', 'sent');
    expect(receiver.received.slice(before).map((r) => r.body.orderId)).toEqual(['nt-poison-ok']);
    expect(await redis.exists(keys.notification('nt-poison-2'), keys.notification('nt-poison-3'))).toBe(0);
  });

  it('records, rather than sends again, a notification it sent but could not record while Redis was down', async () => {
    const sent: string[] = [];
    const sender = { channel: 'webhook' as const, send: async (n: { orderId: string }) => void sent.push(n.orderId) };
    // A client whose first notifySent fails as during an outage (a fault real Redis cannot give on demand).
    let failNext = true;
    const flaky = new Proxy(redis, {
      get(target, prop, receiver) {
        if (prop === 'notifySent' && failNext) {
          return async () => {
            failNext = false;
            throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as RedisClient;
    const unrecorded = new UnrecordedSends();
    // No trace here: a span that records nothing.
    const span = trace.getTracer('notifier-test').startSpan('test');
    const deps = { redis: flaky, sender, log, leaseMs: 30_000, unrecorded };
    const { content, options } = outcomeMessage({ id: 'nt-unrec-1', sku: 'sku-a', qty: 1 });
    const msg = { content, properties: { ...options, headers: options.headers ?? {} }, fields: {} } as unknown as Message;

    await expect(handleOutcome(deps, msg, { attempt: 1, lastAttempt: false, span })).rejects.toThrow(/redis unavailable \(notifySent\)/);
    expect(unrecorded.size).toBe(1);
    expect(await notification('nt-unrec-1')).toMatchObject({ status: 'sending' });
    // The retry, while the first attempt's lease is still live: recorded without a second send.
    expect(await handleOutcome(deps, msg, { attempt: 2, lastAttempt: false, span })).toBe('sent');
    expect(sent).toEqual(['nt-unrec-1']);
    expect(unrecorded.size).toBe(0);
    expect(await notification('nt-unrec-1')).toMatchObject({ status: 'sent', attempts: '1' });
    expect(await handleOutcome(deps, msg, { attempt: 1, lastAttempt: false, span })).toBe('already_sent');
  });

  it('keeps at most its bound of unrecorded sends, dropping the oldest', () => {
    const u = new UnrecordedSends(2);
    u.add('a', 't1');
    u.add('b', 't2');
    u.add('c', 't3');
    expect([u.get('a'), u.get('b'), u.get('c'), u.size]).toEqual([undefined, 't2', 't3', 2]);
  });

  it('logs the notification when no webhook is configured', async () => {
    await app.stop();
    const lines: string[] = [];
    const captured = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    try {
      app = await startApp(undefined, captured);
      await publishOutcome({ id: 'nt-log-1', sku: 'sku-c', qty: 5, email: 'c@example.com' });
      const n = await waitStatus('nt-log-1', 'sent');

      expect(n).toMatchObject({ status: 'sent', attempts: '1', channel: 'log' });
      expect(receiver.of('nt-log-1')).toHaveLength(0);
      const sent = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'notification sent');
      expect(sent).toEqual([
        expect.objectContaining({
          orderId: 'nt-log-1',
          type: 'order.created',
          email: 'c@example.com',
          text: 'Order nt-log-1 confirmed: 5 x sku-c',
        }),
      ]);
    } finally {
      await app.stop();
      app = await startApp(receiver.url);
    }
  });
});

describe('the cancellation notice', () => {
  function cancelledMessage(order: Order, cancelReason?: string) {
    return encodeEvent(makeEvent(routingKeys.cancelled, order, undefined, { cancelReason }));
  }
  const cancellation = (id: string) => redis.hgetall(keys.cancellationNotification(id));
  const waitCancellation = (id: string, status: string) =>
    waitFor(
      `cancellation notice ${id} ${status}`,
      async () => {
        const n = await cancellation(id);
        return n.status === status ? n : undefined;
      },
      15_000,
    );

  it('is sent once besides the first outcome, in its own record, with type order.cancelled and its own Idempotency-Key', async () => {
    const order = { id: 'nt-cancel-1', sku: 'sku-a', qty: 2, email: 'c@example.com' };
    const alreadyBefore = await results('already_sent');
    await publishOutcome(order);
    await waitStatus(order.id, 'sent');
    const { content, options } = cancelledMessage(order, 'changed my mind');
    // Published twice, as a redelivered cancel does.
    await broker.publish(exchanges.topic, routingKeys.cancelled, content, options);
    await broker.publish(exchanges.topic, routingKeys.cancelled, content, options);
    const n = await waitCancellation(order.id, 'sent');
    await waitFor(
      'the second copy absorbed',
      async () => ((await results('already_sent')) === alreadyBefore + 1 ? true : undefined),
      15_000,
    );

    const posts = receiver.of(order.id);
    expect(posts.map((p) => [p.headers['webhook-id'], p.headers['idempotency-key'], p.body.type])).toEqual([
      [webhookIdOf(order.id, 'order.created'), webhookIdOf(order.id, 'order.created'), 'order.created'],
      [webhookIdOf(order.id, 'order.cancelled'), webhookIdOf(order.id, 'order.cancelled'), 'order.cancelled'],
    ]);
    expect(webhookIdOf(order.id, 'order.created')).not.toBe(webhookIdOf(order.id, 'order.cancelled'));
    const notice = {
      orderId: order.id,
      status: 'cancelled',
      reason: 'changed my mind',
      email: 'c@example.com',
      message: 'Order nt-cancel-1 cancelled: changed my mind',
    };
    expect(posts[1]?.body).toEqual({ type: 'order.cancelled', timestamp: expect.any(String), data: { ...notice, order }, ...notice });
    expect(n).toMatchObject({ status: 'sent', attempts: '1', channel: 'webhook' });
    // The first outcome's record is what it was.
    expect(await notification(order.id)).toMatchObject({ status: 'sent', attempts: '1' });
    expect(await redis.get(keys.stats.notificationsSent)).toBe('2');
  });

  it('is sent for an order cancelled before any outcome, and retried on its own attempts', async () => {
    const order = { id: 'nt-cancel-2', sku: 'sku-a', qty: 1 };
    receiver.responders.set(order.id, (nth) => (nth === 1 ? 503 : 200));
    const { content, options } = cancelledMessage(order);
    await broker.publish(exchanges.topic, routingKeys.cancelled, content, options);
    const n = await waitCancellation(order.id, 'sent');
    expect(n).toMatchObject({ attempts: '2' });
    expect(await redis.exists(keys.notification(order.id))).toBe(0);
    const posts = receiver.of(order.id);
    expect(posts.map((p) => [p.body.type, p.body.message, p.headers['webhook-id']])).toEqual([
      ['order.cancelled', 'Order nt-cancel-2 cancelled', webhookIdOf(order.id, 'order.cancelled')],
      ['order.cancelled', 'Order nt-cancel-2 cancelled', webhookIdOf(order.id, 'order.cancelled')],
    ]);
    // The same event on both attempts: the same body, signed afresh.
    expect(posts[1]?.body).toEqual(posts[0]?.body);
  });

  it('is not taken for sent when only the first outcome of the order was sent but unrecorded', async () => {
    const sent: string[] = [];
    const sender = {
      channel: 'webhook' as const,
      send: async (n: { orderId: string; type: string }) => void sent.push(`${n.orderId} ${n.type}`),
    };
    const unrecorded = new UnrecordedSends();
    unrecorded.add('nt-cancel-3', '2026-01-01T00:00:00.000Z');
    const span = trace.getTracer('notifier-test').startSpan('test');
    const { content, options } = cancelledMessage({ id: 'nt-cancel-3', sku: 'sku-a', qty: 1 });
    const msg = { content, properties: { ...options, headers: options.headers ?? {} }, fields: {} } as unknown as Message;
    expect(await handleOutcome({ redis, sender, log, leaseMs: 30_000, unrecorded }, msg, { attempt: 1, lastAttempt: false, span })).toBe(
      'sent',
    );
    expect(sent).toEqual(['nt-cancel-3 order.cancelled']);
    expect(await cancellation('nt-cancel-3')).toMatchObject({ status: 'sent', attempts: '1' });
    expect(await redis.exists(keys.notification('nt-cancel-3'))).toBe(0);
    expect(unrecorded.get('nt-cancel-3')).toBe('2026-01-01T00:00:00.000Z');
  });
});
