// The 503 row "no confirm within PUBLISH_TIMEOUT_MS": a real broker behind a loopback TCP relay
// that the test can freeze. A frozen link is the one fault a live broker will not produce on
// demand: the publish leaves, and no confirm comes back in time.
import net from 'node:net';
import { connect, type ChannelModel } from 'amqplib';
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainQueue, newBroker } from '../../test/helpers/broker.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('api-gateway', 'silent');
const PUBLISH_TIMEOUT_MS = 400;

/** Forwards TCP to `target`; while frozen, bytes in both directions are held back, not lost. */
async function relay(target: URL): Promise<{ port: number; freeze(): void; thaw(): void; close(): Promise<void> }> {
  let frozen = false;
  const pairs: [net.Socket, net.Socket][] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    pairs.push([client, upstream]);
    client.pipe(upstream);
    upstream.pipe(client);
    if (frozen) {
      client.pause();
      upstream.pause();
    }
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze() {
      frozen = true;
      for (const [a, b] of pairs) {
        a.pause();
        b.pause();
      }
    },
    thaw() {
      frozen = false;
      for (const [a, b] of pairs) {
        a.resume();
        b.resume();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

describe('a publish the broker does not confirm in time', () => {
  let link: Awaited<ReturnType<typeof relay>>;
  let redis: RedisClient;
  let broker: Broker;
  let gw: Gateway;
  let amqp: ChannelModel;

  beforeAll(async () => {
    await resetAll(redisUrl, rabbitmqUrls);
    const target = new URL(rabbitmqUrls[0] as string);
    link = await relay(target);
    const viaRelay = new URL(target.href);
    viaRelay.port = String(link.port);
    const config = loadConfig('api-gateway', {
      REDIS_URL: redisUrl,
      RABBITMQ_URLS: viaRelay.href,
      PUBLISH_TIMEOUT_MS: String(PUBLISH_TIMEOUT_MS),
    });
    redis = createRedis(config.redis);
    broker = newBroker(config, log, 'confirm-timeout-test');
    await Promise.all([redisReady(redis), waitForBroker(broker, 20_000)]);
    gw = await start({ config, redis, broker, log, port: 0, host: '127.0.0.1' });
    amqp = await connect(rabbitmqUrls[0] as string);
  });

  afterAll(async () => {
    link?.thaw();
    await gw?.stop();
    await broker?.close();
    await link?.close();
    await amqp?.close().catch(() => undefined);
    redis?.disconnect();
  });

  const post = (body: unknown) =>
    fetch(`${gw.address}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('answers 503 with Retry-After within the timeout, releases the id, and the retry is accepted', async () => {
    const order = { id: 'slow-confirm-1', sku: 'sku-1', qty: 1 };
    // The first order goes through, so the publish channel and the topology are in place.
    expect((await post({ ...order, id: 'warm-up' })).status).toBe(202);

    link.freeze();
    const started = Date.now();
    const res = await post(order);
    const took = Date.now() - started;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { detail: string }).detail).toMatch(/broker/i);
    // Bounded by the timeout (plus a margin for a loaded machine), never hanging.
    expect(took).toBeGreaterThanOrEqual(PUBLISH_TIMEOUT_MS - 50);
    expect(took).toBeLessThan(PUBLISH_TIMEOUT_MS + 1500);
    // The claim was released, so the client's retry is not locked out.
    expect(await redis.exists(keys.idempotency(order.id))).toBe(0);

    link.thaw();
    const retry = await post(order);
    expect(retry.status).toBe(202);

    // The timed-out copy still reached the queue once the link thawed: two copies of one order,
    // which the processor's once-only check absorbs. Nothing was lost.
    const ch = await amqp.createChannel();
    const ids = (await drainQueue(ch, queues.orders)).map((m) => String(m.properties.messageId));
    expect(ids.filter((id) => id === `${order.id}:order.placed`)).toHaveLength(2);
  });
});
