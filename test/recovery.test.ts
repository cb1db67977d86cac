// The four real processes survive losing Redis and losing the broker: while a server is down they
// keep running, say not-ready naming it, and answer 503 (at once, never buffering); when it comes
// back they recover by themselves, and every accepted order is processed and notified once.
// Uses its own throwaway Redis and RabbitMQ, since it kills and restarts them.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '@order-pipeline/shared';
import { haveBinaries, startRabbitCluster, startRedis, type RabbitCluster, type RedisServer } from '../scripts/local-servers.mjs';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { waitFor } from './helpers/processes.js';

const bins = haveBinaries();
const SKU = 'recovery-sku';

describe.skipIf(!bins.redis || !bins.rabbitmq)('recovery after Redis or the broker was down (needs the local server binaries)', () => {
  let redisServer: RedisServer;
  let rabbit: RabbitCluster;
  let redis: Redis;
  let pipeline: Pipeline;
  const accepted: { id: string; qty: number }[] = [];

  const post = (id: string, qty: number) =>
    fetch(`${pipeline.base['api-gateway']}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, sku: SKU, qty }),
    });

  const readiness = () => pipeline.readiness();
  const allReady = () => pipeline.allReady();

  async function placeAndSettle(id: string, qty: number): Promise<void> {
    const res = await post(id, qty);
    expect(res.status).toBe(202);
    accepted.push({ id, qty });
    await waitFor(
      `order ${id} created and notified`,
      async () => {
        const o = (await (await fetch(`${pipeline.base['api-gateway']}/orders/${id}`)).json()) as {
          status?: string;
          notification?: { status: string };
        };
        return o.status === 'created' && o.notification?.status === 'sent' ? true : undefined;
      },
      30_000,
    );
  }

  function expectAlive(): void {
    for (const r of ['api-gateway', 'order-processor', 'notifier', 'dashboard'] as const) {
      expect(pipeline.proc(r).proc.exitCode, `${r} exited`).toBeNull();
    }
  }

  beforeAll(async () => {
    [redisServer, rabbit] = await Promise.all([startRedis({ appendonly: true }), startRabbitCluster({ nodes: 1 })]);
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    redis.on('error', () => undefined);
    pipeline = await startPipeline({ redisUrl: redisServer.url, rabbitmqUrls: rabbit.urls });
    await redis.set(keys.inventory(SKU), 1000);
  }, 120_000);

  afterAll(async () => {
    await pipeline?.stop();
    redis?.disconnect();
    await Promise.all([redisServer?.stop(), rabbit?.stop()]);
  }, 60_000);

  it('takes orders before anything goes wrong', async () => {
    await placeAndSettle('before-1', 3);
  });

  it('while Redis is down: every service is not ready naming redis, orders get 503, nothing crashes; then it recovers', async () => {
    await redisServer.kill();
    const down = await waitFor('every service to report redis down', async () => {
      const r = await readiness();
      return r.every((x) => x.status === 503 && x.down.includes('redis')) ? r : undefined;
    });
    expect(down).toHaveLength(4);
    const res = await post('during-redis-outage', 1);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expectAlive();

    await redisServer.start();
    await allReady();
    await placeAndSettle('after-redis-1', 2);
    // The refused order was not taken: its retry now is a new order, accepted once.
    await placeAndSettle('during-redis-outage', 1);
  }, 90_000);

  it('while the broker is down: not ready naming broker, 503 at once without buffering; consumers resume when it is back', async () => {
    const node = rabbit.nodes[0];
    if (!node) throw new Error('no broker node');
    await node.kill();
    await waitFor('every service to report the broker down', async () => {
      const r = await readiness();
      return r.every((x) => x.status === 503 && x.down.includes('broker')) ? r : undefined;
    });
    const started = Date.now();
    const res = await post('during-broker-outage', 1);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    // Refused at once rather than held until the publish timeout.
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await redis.exists(keys.idempotency('during-broker-outage'))).toBe(0);
    expectAlive();

    await node.start();
    await allReady();
    await placeAndSettle('after-broker-1', 4);
    await placeAndSettle('during-broker-outage', 1);
  }, 120_000);

  it('applied every accepted order exactly once', async () => {
    const total = accepted.reduce((sum, o) => sum + o.qty, 0);
    expect(await redis.get(keys.inventory(SKU))).toBe(String(1000 - total));
    expect(await redis.get(keys.processedCount)).toBe(String(accepted.length));
    for (const o of accepted) {
      expect(await redis.hget(keys.notification(o.id), 'status'), o.id).toBe('sent');
      expect(await redis.hget(keys.notification(o.id), 'attempts'), o.id).toBe('1');
    }
  });
});
