// REDIS_MIN_REPLICAS on a Redis with no replica: every WAIT finds too few, so no order may be
// announced as accepted. The gateway releases its claim and answers 503 with Retry-After; nothing
// is published. The same order is accepted once WAIT can be satisfied (here: switched off).
import {
  createLogger,
  createRedis,
  keys,
  loadConfig,
  queues,
  redisReady,
  waitForBroker,
  type Broker,
  type RedisClient,
} from '@order-pipeline/shared';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainQueue, newBroker } from '../../test/helpers/broker.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('api-gateway', 'silent');

describe('a write no replica confirms (REDIS_MIN_REPLICAS=1, no replica)', () => {
  const env = { REDIS_URL: redisUrl, RABBITMQ_URLS: rabbitmqUrls.join(','), REDIS_MIN_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '100' };
  let redis: RedisClient;
  let plain: RedisClient;
  let broker: Broker;
  let gw: Gateway;
  let amqp: ChannelModel;

  beforeAll(async () => {
    await resetAll(redisUrl, rabbitmqUrls);
    const config = loadConfig('api-gateway', env);
    redis = createRedis(config.redis);
    plain = createRedis(loadConfig('api-gateway', { ...env, REDIS_MIN_REPLICAS: '0' }).redis);
    broker = newBroker(config, log, 'replication-test');
    await Promise.all([redisReady(redis), redisReady(plain), waitForBroker(broker, 20_000)]);
    gw = await start({ config, redis, broker, log, port: 0, host: '127.0.0.1' });
    amqp = await connect(rabbitmqUrls[0] as string);
  });

  afterAll(async () => {
    await gw?.stop();
    await broker?.close();
    await amqp?.close().catch(() => undefined);
    redis?.disconnect();
    plain?.disconnect();
  });

  const post = (base: string, body: unknown) =>
    fetch(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('answers 503 service-unavailable with Retry-After, releases the claim and publishes nothing; the retry is accepted once replicas confirm', async () => {
    const order = { id: 'unreplicated-1', sku: 'sku-1', qty: 1 };
    const res = await post(gw.address, order);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = (await res.json()) as { title: string; detail: string };
    expect(problem.title).toBe('Service Unavailable');
    expect(problem.detail).toMatch(/replicas/);
    // Released at once: the client's retry is not told 409 in flight.
    expect(await plain.exists(keys.idempotency(order.id))).toBe(0);
    const ch = await amqp.createChannel();
    expect(await drainQueue(ch, queues.orders)).toEqual([]);
    await ch.close();

    // The same gateway code with WAIT off (as if replicas now confirmed): the retry is accepted.
    const config = loadConfig('api-gateway', { ...env, REDIS_MIN_REPLICAS: '0' });
    const other = await start({ config, redis: plain, broker, log, port: 0, host: '127.0.0.1' });
    try {
      expect((await post(other.address, order)).status).toBe(202);
    } finally {
      await other.stop();
    }
  });
});
