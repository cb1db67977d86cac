// Each service's /metrics after real work: the gateway, the processor and the notifier run
// in-process on the test servers, wired as runService wires them (one registry per service that
// also holds its broker's and Redis client's metrics). Orders, a replay, a conflict, bad input,
// poison messages, a retry that ends in the dead-letter queue and a broker reconnect; then each
// family is checked to exist and to have moved.
import type { Channel, ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLogger,
  createMetrics,
  createRedis,
  exchanges,
  keys,
  loadConfig,
  createServiceClients,
  observeRedis,
  redactUrl,
  redisReady,
  routingKeys,
  waitForBroker,
  type Broker,
  type RedisClient,
  type RunningService,
  type ServiceName,
} from '@order-pipeline/shared';
import { start as startGateway } from '../api-gateway/src/app.js';
import { start as startNotifier } from '../notifier/src/app.js';
import { start as startProcessor } from '../order-processor/src/app.js';
import { openTopologyChannel } from './helpers/broker.js';
import { freePort, waitFor } from './helpers/processes.js';
import { sampleValue, samples } from './helpers/prometheus.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('metrics-test', process.env.TEST_LOG_LEVEL ?? 'silent');
const node = redactUrl(rabbitmqUrls[0] as string);

const clients: { redis: RedisClient; broker: Broker }[] = [];
const running: RunningService[] = [];
const address: Partial<Record<ServiceName, string>> = {};
const brokers: Partial<Record<ServiceName, Broker>> = {};
let amqp: ChannelModel;
let ch: Channel;

/** The clients and metrics of one service, as runService builds them. */
async function depsFor(service: ServiceName) {
  const config = loadConfig(service, { REDIS_URL: redisUrl, RABBITMQ_URLS: rabbitmqUrls.join(','), LOG_LEVEL: 'silent' });
  const { metrics, redis, broker } = createServiceClients(config, log, 5000);
  clients.push({ redis, broker });
  brokers[service] = broker;
  await Promise.all([redisReady(redis), waitForBroker(broker, 20_000)]);
  // Two attempts and short delays: the retry test ends in the dead-letter queue quickly.
  return { config, redis, broker, log, metrics, port: 0, host: '127.0.0.1', maxAttempts: 2, backoffMs: () => 20 };
}

async function scrape(service: ServiceName): Promise<Map<string, number>> {
  const res = await fetch(`${address[service]}/metrics`);
  expect(res.status).toBe(200);
  return samples(await res.text());
}

/** Polls a service's metrics until `check` holds (every metric is updated after the fact). */
function until(service: ServiceName, what: string, check: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  return waitFor(`${service}: ${what}`, async () => {
    const m = await scrape(service);
    return check(m) ? m : undefined;
  });
}

const v = sampleValue;

function post(body: unknown, contentType = 'application/json') {
  return fetch(`${address['api-gateway']}/orders`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  for (const [service, start] of [
    ['api-gateway', startGateway],
    ['order-processor', startProcessor],
    ['notifier', startNotifier],
  ] as const) {
    const s = await start(await depsFor(service));
    running.push(s);
    address[service] = s.address;
  }
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, 'quorum'));
  await clients[0]?.redis.set(keys.inventory('m-sku'), '10');
});

afterAll(async () => {
  for (const s of running) await s.stop();
  for (const { redis, broker } of clients) {
    await broker.close();
    redis.disconnect();
  }
  await amqp?.close().catch(() => undefined);
});

describe('/metrics of each service after real work', () => {
  it('exports every family from the start, with zeros for outcomes not seen yet', async () => {
    for (const service of ['api-gateway', 'order-processor', 'notifier'] as const) {
      const m = await scrape(service);
      expect(v(m, 'broker_connected'), service).toBe(1);
      expect(v(m, 'redis_connected'), service).toBe(1);
      expect(v(m, 'redis_errors_total'), service).toBe(0);
      expect(v(m, 'broker_failovers_total', { node }), service).toBe(0);
      expect(v(m, 'process_cpu_seconds_total'), service).toBeDefined();
    }
    const p = await scrape('order-processor');
    for (const outcome of ['ack', 'retry', 'dead_letter'])
      expect(v(p, 'consumer_handle_seconds_count', { queue: 'orders.queue', outcome })).toBe(0);
    expect(v(p, 'consumer_redeliveries_total', { queue: 'orders.queue' })).toBe(0);
    expect(v(p, 'consumer_dead_lettered_total', { queue: 'orders.queue', reason: 'attempts_exhausted' })).toBe(0);
    const n = await scrape('notifier');
    expect(v(n, 'consumer_dead_lettered_total', { queue: 'notifier.queue', reason: 'unparseable' })).toBe(0);
    const g = await scrape('api-gateway');
    expect(v(g, 'gateway_order_refusals_total', { reason: 'idempotency-key-reused' })).toBe(0);
  });

  it('counts the gateway outcomes and refusals and times its requests and publishes', async () => {
    expect((await post({ id: 'm-1', sku: 'm-sku', qty: 1 })).status).toBe(202);
    expect((await post({ id: 'm-1', sku: 'm-sku', qty: 1 })).status).toBe(200);
    expect((await post({ id: 'm-1', sku: 'm-sku', qty: 2 })).status).toBe(422);
    expect((await post({ id: 'bad id', sku: 'm-sku', qty: 0 })).status).toBe(400);
    expect((await post('{', 'application/json')).status).toBe(400);
    expect((await post('id=1', 'application/x-www-form-urlencoded')).status).toBe(415);

    const g = await until(
      'api-gateway',
      'the requests timed',
      (m) => (v(m, 'http_request_duration_seconds_count', { route: '/orders', status: '422' }) ?? 0) >= 1,
    );
    expect(v(g, 'gateway_orders_total', { result: 'accepted' })).toBe(1);
    expect(v(g, 'gateway_orders_total', { result: 'replayed' })).toBe(1);
    expect(v(g, 'gateway_orders_total', { result: 'mismatch' })).toBe(1);
    expect(v(g, 'gateway_orders_total', { result: 'invalid' })).toBe(3);
    expect(v(g, 'gateway_order_refusals_total', { reason: 'idempotency-key-reused' })).toBe(1);
    expect(v(g, 'gateway_order_refusals_total', { reason: 'invalid-order' })).toBe(1);
    expect(v(g, 'gateway_order_refusals_total', { reason: 'malformed-json' })).toBe(1);
    expect(v(g, 'gateway_order_refusals_total', { reason: 'unsupported-media-type' })).toBe(1);
    expect(v(g, 'http_request_duration_seconds_count', { method: 'POST', route: '/orders', status: '202' })).toBe(1);
    expect(v(g, 'http_request_duration_seconds_count', { method: 'POST', route: '/orders', status: '400' })).toBe(2);
    expect(v(g, 'broker_publish_confirm_seconds_count', { exchange: 'orders.direct', outcome: 'confirmed' })).toBe(1);
    expect(v(g, 'gateway_publish_confirm_seconds_count', { outcome: 'confirmed' })).toBe(1);
  });

  it('times the processor and notifier handling by outcome and their outcome publishes', async () => {
    for (const [id, sku] of [
      ['m-2', 'm-sku'],
      ['m-3', 'no-such-sku'],
    ]) {
      expect((await post({ id, sku, qty: 1 })).status).toBe(202);
    }
    const p = await until(
      'order-processor',
      'three orders decided',
      (m) => (v(m, 'consumer_handle_seconds_count', { queue: 'orders.queue', outcome: 'ack' }) ?? 0) >= 3,
    );
    expect(v(p, 'processor_orders_total', { outcome: 'created' })).toBe(2);
    expect(v(p, 'processor_orders_total', { outcome: 'rejected_unknown_sku' })).toBe(1);
    expect(v(p, 'broker_publish_confirm_seconds_count', { exchange: 'orders.topic', outcome: 'confirmed' })).toBe(3);
    expect(v(p, 'http_request_duration_seconds_count', { method: 'GET', route: '/metrics', status: '200' })).toBeGreaterThanOrEqual(1);

    const n = await until(
      'notifier',
      'three notifications sent',
      (m) => (v(m, 'consumer_handle_seconds_count', { queue: 'notifier.queue', outcome: 'ack' }) ?? 0) >= 3,
    );
    expect(v(n, 'notifier_notifications_total', { result: 'sent' })).toBe(3);
    expect(v(n, 'http_request_duration_seconds_count', { method: 'GET', route: '/metrics', status: '200' })).toBeGreaterThanOrEqual(1);
  });

  it('counts redeliveries, retries and dead letters by queue and reason', async () => {
    // Not a whole number: the reserve script fails, the order is retried once, then dead-lettered.
    await clients[0]?.redis.set(keys.inventory('m-broken'), 'lots');
    expect((await post({ id: 'm-4', sku: 'm-broken', qty: 1 })).status).toBe(202);
    // Poison for each consumer, straight onto their exchanges.
    const poison = { persistent: true, contentType: 'application/json' };
    ch.publish(exchanges.direct, routingKeys.placed, Buffer.from('not json'), { ...poison, messageId: 'm-p1:order.placed' });
    ch.publish(exchanges.topic, routingKeys.created, Buffer.from('{"type":"order.created"}'), {
      ...poison,
      messageId: 'm-p2:order.created',
    });

    const p = await until(
      'order-processor',
      'two dead letters',
      (m) =>
        (v(m, 'consumer_dead_lettered_total', { queue: 'orders.queue', reason: 'attempts_exhausted' }) ?? 0) >= 1 &&
        (v(m, 'consumer_dead_lettered_total', { queue: 'orders.queue', reason: 'unparseable' }) ?? 0) >= 1,
    );
    expect(v(p, 'consumer_handle_seconds_count', { queue: 'orders.queue', outcome: 'retry' })).toBe(1);
    expect(v(p, 'consumer_handle_seconds_count', { queue: 'orders.queue', outcome: 'dead_letter' })).toBe(2);
    expect(v(p, 'consumer_redeliveries_total', { queue: 'orders.queue' })).toBe(1);
    // The retry copy goes through the default exchange, the dead letters through orders.dlx.
    expect(v(p, 'broker_publish_confirm_seconds_count', { exchange: '(default)', outcome: 'confirmed' })).toBe(1);
    expect(v(p, 'broker_publish_confirm_seconds_count', { exchange: 'orders.dlx', outcome: 'confirmed' })).toBe(2);

    const n = await until(
      'notifier',
      'the poison dead-lettered',
      (m) => (v(m, 'consumer_dead_lettered_total', { queue: 'notifier.queue', reason: 'invalid' }) ?? 0) >= 1,
    );
    expect(v(n, 'consumer_handle_seconds_count', { queue: 'notifier.queue', outcome: 'dead_letter' })).toBe(1);
    expect(v(n, 'broker_publish_confirm_seconds_count', { exchange: 'orders.dlx', outcome: 'confirmed' })).toBe(1);
  });

  it('shows a broker reconnect as a failover to the node, and the connection back up', async () => {
    brokers['api-gateway']?.connection.reconnect();
    const g = await until(
      'api-gateway',
      'one failover',
      (m) => v(m, 'broker_failovers_total', { node }) === 1 && v(m, 'broker_connected') === 1,
    );
    expect(v(g, 'broker_connected')).toBe(1);
  });

  it("counts a Redis client's errors and shows it disconnected", async () => {
    const metrics = createMetrics('api-gateway');
    // Nothing listens there: every connect attempt fails with an 'error' event.
    const redis = createRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { overrides: { lazyConnect: false } });
    observeRedis(redis, metrics);
    try {
      const m = await waitFor('redis errors counted', async () => {
        const all = samples(await metrics.registry.metrics());
        return (v(all, 'redis_errors_total') ?? 0) >= 1 ? all : undefined;
      });
      expect(v(m, 'redis_connected')).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});
