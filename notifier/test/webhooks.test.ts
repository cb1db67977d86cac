// The webhook as a receiver sees it, against real Redis and RabbitMQ and a real local HTTP
// receiver that verifies every request with the standardwebhooks package (both secrets of a
// rotation): each row of the classification, Retry-After, a 410 endpoint, and a receiver down
// (503) for a minute that still gets every event exactly once.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Channel, ChannelModel, GetMessage } from 'amqplib';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DEAD_LETTER_HEADERS,
  connectBroker,
  createLogger,
  createRedis,
  delayQueueOf,
  encodeEvent,
  exchanges,
  keys,
  loadConfig,
  makeEvent,
  queues,
  redisReady,
  replayDeadLetters,
  routingKeys,
  type Broker,
  type Order,
  type RedisClient,
} from '@order-pipeline/shared';
import { drainQueue, openTopologyChannel, takeAtLeast } from '../../test/helpers/broker.js';
import { validatorAt } from '../../test/helpers/openapi.js';
import { waitFor } from '../../test/helpers/processes.js';
import { resetAll, resetBroker, testServers } from '../../test/helpers/servers.js';
import { start, type RunningNotifier } from '../src/app.js';
import { endpointHash } from '../src/delivery.js';
import { webhookIdOf } from '../src/senders.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('webhooks-test', process.env.TEST_LOG_LEVEL ?? 'silent');
// A rotation under way: the new secret first, the old one still signed with.
const NEW_SECRET = `whsec_${Buffer.alloc(32, 11).toString('base64')}`;
const OLD_SECRET = `whsec_${Buffer.alloc(24, 12).toString('base64')}`;
const SCHEDULE = '0,200ms,500ms,1s';
/** How long the receiver of the outage test answers 503: the minute. */
const DOWN_MS = 60_000;
const OUTAGE_SCHEDULE = '0,500ms,1s,2s,5s,10s,20s,40s';

interface Received {
  at: number;
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: { type: string; data: { orderId: string } };
  status: number;
}

type Answer = number | { status: number; headers?: Record<string, string> } | 'hang' | 'drop';

/** Verifies every request with both secrets; answers what the order's responder says (200 by default). */
class Receiver {
  readonly received: Received[] = [];
  readonly unverified: string[] = [];
  readonly responders = new Map<string, (nth: number) => Answer>();
  /** Answers every request while set (the outage). */
  everything?: () => Answer;
  private server?: Server;
  base = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      try {
        for (const secret of [NEW_SECRET, OLD_SECRET]) new Webhook(secret).verify(raw, req.headers as Record<string, string>);
      } catch (err) {
        this.unverified.push(`${String(req.headers['webhook-id'])}: ${(err as Error).message}`);
        res.writeHead(400).end('bad signature');
        return;
      }
      const body = JSON.parse(raw) as Received['body'];
      // The body and the id are what the OpenAPI document's `webhooks` says.
      if (!validBody(body) || !/^(outcome|cancelled)_[A-Za-z0-9_-]+$/.test(String(req.headers['webhook-id']))) {
        this.unverified.push(`${String(req.headers['webhook-id'])}: not as documented ${JSON.stringify(validBody.errors)}`);
      }
      const id = body.data.orderId;
      const nth = this.of(id).length + 1;
      const answer = this.everything?.() ?? this.responders.get(id)?.(nth) ?? 200;
      const status = typeof answer === 'number' ? answer : typeof answer === 'object' ? answer.status : 0;
      this.received.push({ at: Date.now(), path: req.url ?? '', headers: req.headers, raw, body, status });
      if (answer === 'drop') return void req.socket.destroy();
      // Longer than the notifier's timeout; the socket is closed with the server.
      if (answer === 'hang') return;
      const headers = typeof answer === 'object' ? (answer.headers ?? {}) : {};
      res.writeHead(status, { 'Content-Type': 'text/plain', ...headers }).end(status < 300 ? 'ok' : 'receiver says no');
    });
  }

  of(orderId: string): Received[] {
    return this.received.filter((r) => r.body.data.orderId === orderId);
  }

  /** 2xx answers by webhook-id. */
  delivered(): Map<string, number> {
    const m = new Map<string, number>();
    for (const r of this.received) {
      if (r.status >= 200 && r.status < 300) m.set(String(r.headers['webhook-id']), (m.get(String(r.headers['webhook-id'])) ?? 0) + 1);
    }
    return m;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

const validBody = validatorAt('/webhooks/orderNotification/post/requestBody/content/application~1json/schema');
const receiver = new Receiver();
let redis: RedisClient;
let broker: Broker;
let amqp: ChannelModel;
let ch: Channel;
const apps: RunningNotifier[] = [];

/** A notifier sending to `path` of the receiver; `webhookTimeoutMs` short for the timeout row, the default 5 s otherwise. */
function startApp(path: string, env: Record<string, string> = {}, webhookTimeoutMs = 5000): Promise<RunningNotifier> {
  const config = loadConfig('notifier', {
    REDIS_URL: redisUrl,
    RABBITMQ_URLS: rabbitmqUrls.join(','),
    PREFETCH: '50',
    LOG_LEVEL: 'silent',
    NOTIFY_WEBHOOK_URL: `${receiver.base}${path}`,
    NOTIFY_WEBHOOK_SECRET: `${NEW_SECRET} ${OLD_SECRET}`,
    NOTIFY_RETRY_SCHEDULE: SCHEDULE,
    NOTIFY_BREAKER_THRESHOLD: '1000',
    ...env,
  });
  return start({ config, redis, broker, log, port: 0, host: '127.0.0.1', webhookTimeoutMs }).then((app) => {
    apps.push(app);
    return app;
  });
}

async function stopApps(): Promise<void> {
  for (const app of apps.splice(0)) await app.stop();
}

async function metric(app: RunningNotifier, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${app.address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return Number(line?.split(' ').pop() ?? NaN);
}

async function publishOutcome(order: Order): Promise<void> {
  const { content, options } = encodeEvent(makeEvent(routingKeys.created, order));
  await broker.publish(exchanges.topic, routingKeys.created, content, options);
}

const record = (id: string) => redis.hgetall(keys.notification(id));
const waitStatus = (id: string, status: string, timeoutMs = 15_000) =>
  waitFor(
    `notification ${id} ${status}`,
    async () => {
      const n = await record(id);
      return n.status === status ? n : undefined;
    },
    timeoutMs,
  );

const delayQueues = [...new Set([SCHEDULE, OUTAGE_SCHEDULE, '0,2s'].flatMap((s) => s.split(',')))]
  .filter((d) => d !== '0')
  .map((d) => delayQueueOf(d.endsWith('ms') ? Number(d.slice(0, -2)) : Number(d.slice(0, -1)) * 1000));

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  await resetBroker(rabbitmqUrls, { queues: delayQueues });
  await receiver.start();
  redis = createRedis(loadConfig('notifier', { REDIS_URL: redisUrl }).redis);
  await redisReady(redis);
  broker = await connectBroker({ urls: rabbitmqUrls, queueType: 'quorum', log, publishTimeoutMs: 5000, name: 'webhooks-test' });
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, 'quorum'));
});

afterAll(async () => {
  await stopApps();
  await broker?.close();
  await amqp?.close().catch(() => undefined);
  await redis?.quit();
  await receiver.close();
  // Nothing of this file waits in a delay queue for the next file's notifier.queue.
  await resetBroker(rabbitmqUrls, { queues: delayQueues });
});

// Every request of every test verified and matched the document.
afterEach(() => {
  expect(receiver.unverified).toEqual([]);
});

beforeEach(async () => {
  await redis.flushdb();
  await ch.purgeQueue(queues.notifierDlq);
});

describe('each answer of the receiver', () => {
  beforeAll(async () => {
    await startApp('/hooks/orders', {}, 300);
  });
  afterAll(stopApps);

  it('is signed per Standard Webhooks: webhook-id per event, webhook-timestamp of the attempt, one v1 signature per secret', async () => {
    const order = { id: 'wh.sign:1', sku: 'sku-a', qty: 1 };
    await publishOutcome(order);
    await waitStatus(order.id, 'sent');
    const [post] = receiver.of(order.id) as [Received];
    expect(post.headers['webhook-id']).toBe(webhookIdOf(order.id, 'order.created'));
    expect(post.headers['webhook-id']).not.toContain('.');
    expect(post.headers['idempotency-key']).toBe(post.headers['webhook-id']);
    expect(Math.abs(Number(post.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(30);
    expect(
      String(post.headers['webhook-signature'])
        .split(' ')
        .map((s) => s.slice(0, 3)),
    ).toEqual(['v1,', 'v1,']);
    expect(JSON.parse(post.raw)).toMatchObject({
      type: 'order.created',
      timestamp: expect.any(String),
      data: { orderId: order.id, order },
    });
    // The receiver's check of the body against the document can fail.
    expect(validBody({ ...JSON.parse(post.raw), data: { orderId: order.id } })).toBe(false);
    expect(receiver.unverified).toEqual([]);
  });

  const retried: { name: string; id: string; first: Answer }[] = [
    { name: '408', id: 'wh-408', first: 408 },
    { name: '500', id: 'wh-500', first: 500 },
    { name: '503', id: 'wh-503', first: 503 },
    { name: 'a dropped connection', id: 'wh-drop', first: 'drop' },
    { name: 'no answer within the timeout', id: 'wh-hang', first: 'hang' },
  ];
  it.each(retried)('retries after $name, with the same webhook-id and body, then records it sent', async ({ id, first }) => {
    receiver.responders.set(id, (nth) => (nth === 1 ? first : 200));
    await publishOutcome({ id, sku: 'sku-a', qty: 1 });
    const n = await waitStatus(id, 'sent');
    const posts = receiver.of(id);
    expect(posts).toHaveLength(2);
    const [a, b] = posts as [Received, Received];
    expect(b.headers['webhook-id']).toBe(a.headers['webhook-id']);
    expect(b.raw).toBe(a.raw);
    // Attempt 2 waits the schedule's 200 ms (the timeout's attempt started 300 ms earlier still).
    expect(b.at - a.at).toBeGreaterThanOrEqual(200);
    expect(n).toMatchObject({ status: 'sent', attempts: '2' });
    expect(receiver.unverified).toEqual([]);
  });

  it('honours Retry-After (seconds) on a 429 by waiting at least that long', async () => {
    receiver.responders.set('wh-429', (nth) => (nth === 1 ? { status: 429, headers: { 'Retry-After': '1' } } : 200));
    await publishOutcome({ id: 'wh-429', sku: 'sku-a', qty: 1 });
    await waitStatus('wh-429', 'sent');
    const [a, b] = receiver.of('wh-429') as [Received, Received];
    // Not the schedule's 200 ms: the 1 s delay queue (Retry-After is never undercut by jitter).
    expect(b.at - a.at).toBeGreaterThanOrEqual(1000);
  });

  const final: { name: string; id: string; answer: Answer }[] = [
    { name: '400', id: 'wh-400', answer: 400 },
    { name: '404', id: 'wh-404', answer: 404 },
    { name: '422', id: 'wh-422', answer: 422 },
    { name: 'a redirect (not followed)', id: 'wh-301', answer: { status: 301, headers: { Location: '/hooks/elsewhere' } } },
  ];
  it.each(final)('gives up at once on $name: failed with the reason, dead-lettered, sent once', async ({ id, answer }) => {
    receiver.responders.set(id, () => answer);
    await publishOutcome({ id, sku: 'sku-a', qty: 1 });
    const [dead] = (await takeAtLeast(ch, queues.notifierDlq, 1)) as [GetMessage];
    expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('webhook_refused');
    const n = await waitStatus(id, 'failed');
    expect(n.lastError).toContain(String(typeof answer === 'object' ? answer.status : answer));
    expect(receiver.of(id)).toHaveLength(1);
    expect(receiver.received.filter((r) => r.path === '/hooks/elsewhere')).toEqual([]);
  });

  it('after the last attempt of the schedule: failed and dead-lettered as attempts_exhausted', async () => {
    receiver.responders.set('wh-down', () => 500);
    await publishOutcome({ id: 'wh-down', sku: 'sku-a', qty: 1 });
    const [dead] = (await takeAtLeast(ch, queues.notifierDlq, 1)) as [GetMessage];
    expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('attempts_exhausted');
    expect(await record('wh-down')).toMatchObject({ status: 'failed', attempts: '4' });
    const at = receiver.of('wh-down').map((r) => r.at);
    expect(at).toHaveLength(4);
    // 0, 200 ms, 500 ms, 1 s: each wait at least its delay.
    const gaps = at.slice(1).map((t, i) => t - (at[i] as number));
    expect(gaps.map((g, i) => g >= [200, 500, 1000][i]!)).toEqual([true, true, true]);
  });

  it('gives a replayed dead letter the whole schedule again', async () => {
    receiver.responders.set('wh-replay', () => 503);
    await publishOutcome({ id: 'wh-replay', sku: 'sku-a', qty: 1 });
    await waitStatus('wh-replay', 'failed');
    await waitFor('the dead letter', async () => ((await ch.checkQueue(queues.notifierDlq)).messageCount === 1 ? true : undefined));
    // Back up, but only from its third request after the replay: the replay must have attempts left.
    receiver.responders.set('wh-replay', (nth) => (nth <= 4 + 2 ? 503 : 200));
    const confirm = await amqp.createConfirmChannel();
    try {
      expect((await replayDeadLetters(confirm, queues.notifierDlq)).replayed).toHaveLength(1);
    } finally {
      await confirm.close();
    }
    const n = await waitStatus('wh-replay', 'sent');
    expect(receiver.of('wh-replay')).toHaveLength(4 + 3);
    expect(n).toMatchObject({ status: 'sent', attempts: '7' });
    expect(await drainQueue(ch, queues.notifierDlq)).toEqual([]);
  });
});

describe('a delivery waiting for its next attempt', () => {
  afterAll(stopApps);

  it('waits in the broker, not in the notifier: stopped meanwhile, a new notifier sends it', async () => {
    const first = await startApp('/hooks/restart');
    receiver.responders.set('wh-restart', (nth) => (nth === 1 ? 503 : 200));
    await publishOutcome({ id: 'wh-restart', sku: 'sku-a', qty: 1 });
    await waitFor('the first attempt', async () => (receiver.of('wh-restart').length === 1 ? true : undefined));
    await first.stop();
    // The 200 ms wait is over and nobody consumes: the copy is back in notifier.queue, held there.
    await waitFor('the copy back in notifier.queue', async () =>
      (await ch.checkQueue(queues.notifier)).messageCount === 1 ? true : undefined,
    );
    expect(await record('wh-restart')).toMatchObject({ status: 'sending', attempts: '1' });
    await startApp('/hooks/restart');
    expect(await waitStatus('wh-restart', 'sent')).toMatchObject({ attempts: '2' });
    expect(receiver.of('wh-restart').map((r) => r.status)).toEqual([503, 200]);
  });
});

describe('an endpoint that answers 410 Gone', () => {
  let app: RunningNotifier;
  beforeAll(async () => {
    app = await startApp('/hooks/gone');
  });
  afterAll(stopApps);

  it('is sent nothing more, by any notifier, until its flag is deleted', async () => {
    receiver.responders.set('wh-gone-1', () => 410);
    await publishOutcome({ id: 'wh-gone-1', sku: 'sku-a', qty: 1 });
    const [dead] = (await takeAtLeast(ch, queues.notifierDlq, 1)) as [GetMessage];
    expect(dead.properties.headers?.[DEAD_LETTER_HEADERS.reason]).toBe('endpoint_gone');
    expect((await waitStatus('wh-gone-1', 'failed')).lastError).toMatch(/gone.*410/);
    const flag = keys.webhookGone(endpointHash(`${receiver.base}/hooks/gone`));
    expect(JSON.parse((await redis.get(flag)) ?? '{}')).toMatchObject({ status: 410, url: `${receiver.base}/hooks/gone` });
    expect(await metric(app, 'notifier_webhook_endpoint_gone')).toBe(1);
    expect(await metric(app, 'notifier_notifications_total', 'result="endpoint_gone"')).toBe(1);

    // A second notifier (a replica, or this one restarted) reads the same flag: nothing is sent.
    const replica = await startApp('/hooks/gone');
    const before = receiver.received.length;
    await publishOutcome({ id: 'wh-gone-2', sku: 'sku-a', qty: 1 });
    await publishOutcome({ id: 'wh-gone-3', sku: 'sku-a', qty: 1 });
    const more = await takeAtLeast(ch, queues.notifierDlq, 2);
    expect(more.map((m) => m.properties.headers?.[DEAD_LETTER_HEADERS.reason])).toEqual(['endpoint_gone', 'endpoint_gone']);
    expect((await record('wh-gone-2')).lastError).toMatch(/410 Gone earlier/);
    expect(receiver.received.length).toBe(before);
    expect(await metric(replica, 'notifier_webhook_endpoint_gone')).toBe(1);

    // The operator deletes the flag once the endpoint is back: sending resumes.
    await redis.del(flag);
    await publishOutcome({ id: 'wh-gone-4', sku: 'sku-a', qty: 1 });
    await waitStatus('wh-gone-4', 'sent');
    expect(receiver.unverified).toEqual([]);
  });
});

describe('a receiver down (503) for a minute, then up', () => {
  let app: RunningNotifier;
  beforeAll(async () => {
    app = await startApp('/hooks/outage', {
      NOTIFY_RETRY_SCHEDULE: OUTAGE_SCHEDULE,
      NOTIFY_BREAKER_THRESHOLD: '3',
      NOTIFY_BREAKER_COOLDOWN: '2s',
    });
  });
  afterAll(async () => {
    receiver.everything = undefined;
    await stopApps();
  });

  it(
    'gets every event exactly once by webhook-id, nothing dead-lettered, the circuit opened and closed again',
    async () => {
      const ids = Array.from({ length: 30 }, (_, i) => `wh-outage-${i}`);
      receiver.everything = () => 503;
      const downAt = Date.now();
      for (const id of ids) await publishOutcome({ id, sku: 'sku-a', qty: 1 });
      await waitFor('the circuit open', async () =>
        (await metric(app, 'notifier_webhook_circuit_state', 'state="open"')) === 1 ? true : undefined,
      );
      const failedWhileDown = () => receiver.received.filter((r) => r.path === '/hooks/outage' && r.status === 503).length;
      await waitFor('the outage over', async () => (Date.now() - downAt >= DOWN_MS ? true : undefined), DOWN_MS + 5000, 1000);
      receiver.everything = undefined;
      const requestsWhileDown = failedWhileDown();

      const expected = ids.map((id) => webhookIdOf(id, 'order.created'));
      await waitFor(
        'every event delivered',
        async () => (expected.every((w) => receiver.delivered().has(w)) ? true : undefined),
        90_000,
        500,
      );
      // Nothing still waiting anywhere, then count.
      await waitFor('every record sent', async () => {
        const statuses = await Promise.all(ids.map(async (id) => (await record(id)).status));
        return statuses.every((s) => s === 'sent') ? true : undefined;
      });
      const delivered = receiver.delivered();
      const twice = expected.filter((w) => (delivered.get(w) ?? 0) > 1);
      const lost = expected.filter((w) => !delivered.has(w));
      const dead = await drainQueue(ch, queues.notifierDlq);
      const paused = await metric(app, 'notifier_notifications_total', 'result="paused"');
      console.log(
        `webhook outage (${DOWN_MS / 1000} s of 503): sent ${ids.length}, delivered ${expected.filter((w) => delivered.has(w)).length}, lost ${lost.length}, ` +
          `delivered twice ${twice.length}, dead-lettered ${dead.length}, requests while down ${requestsWhileDown}, ` +
          `paused by the open circuit ${paused}, circuit opened ${await metric(app, 'notifier_webhook_circuit_transitions_total', 'state="open"')} times`,
      );
      for (const w of twice)
        console.log(
          w,
          receiver.received.filter((r) => r.headers['webhook-id'] === w).map((r) => [r.at - downAt, r.status]),
        );
      expect(lost).toEqual([]);
      expect(twice).toEqual([]);
      expect(dead).toEqual([]);
      expect(receiver.unverified).toEqual([]);
      // The breaker kept the dead endpoint from getting every delivery's attempts: far fewer
      // requests than the 30 events x attempts a minute of the schedule would make without it.
      expect(requestsWhileDown).toBeLessThan(ids.length * 3);
      expect(paused).toBeGreaterThan(0);
      for (const state of ['open', 'half_open', 'closed']) {
        expect(await metric(app, 'notifier_webhook_circuit_transitions_total', `state="${state}"`)).toBeGreaterThan(0);
      }
      expect(await metric(app, 'notifier_webhook_circuit_state', 'state="closed"')).toBe(1);
    },
    DOWN_MS + 150_000,
  );
});
