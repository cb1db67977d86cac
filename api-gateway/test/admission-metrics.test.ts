// The admission state on the gateway's /metrics, against real Redis and RabbitMQ: no processor
// runs, so orders stay in orders.queue; with MAX_BACKLOG=2 the gateway refuses the third, and
// gateway_admission_refusing, gateway_backlog_messages and gateway_drain_rate_per_second say so.
// The processors' decision counter is bumped by hand while the backlog waits (standing in for
// processors that decide orders of other gateways), so a drain rate is measured.
import type { Channel, ChannelModel } from 'amqplib';
import { createLogger, createRedis, keys, loadConfig, queues, redisReady, type Broker, type RedisClient } from '@order-pipeline/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainQueue, newBroker, openTopologyChannel } from '../../test/helpers/broker.js';
import { waitFor } from '../../test/helpers/processes.js';
import { sampleValue, samples } from '../../test/helpers/prometheus.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('admission-metrics-test', 'silent');

let redis: RedisClient;
let gwRedis: RedisClient;
let broker: Broker;
let gw: Gateway;
let amqp: ChannelModel;
let ch: Channel;

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  const config = loadConfig('api-gateway', {
    REDIS_URL: redisUrl,
    RABBITMQ_URLS: rabbitmqUrls.join(','),
    LOG_LEVEL: 'silent',
    MAX_BACKLOG: '2',
  });
  redis = createRedis({ url: redisUrl });
  gwRedis = createRedis({ url: redisUrl });
  broker = newBroker(config, log, 'gateway-admission-metrics-test');
  await Promise.all([redisReady(redis), redisReady(gwRedis), broker.connection.connect({ timeout: 20_000 })]);
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, config.queueType));
  await redis.set(keys.inventory('am-sku'), '10');
  gw = await start({ config, redis: gwRedis, broker, log, port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await gw?.stop();
  await broker?.close();
  redis?.disconnect();
  gwRedis?.disconnect();
  await amqp?.close().catch(() => undefined);
});

interface AdmissionFigures {
  refusing: number | undefined;
  backlog: number | undefined;
  rate: number | undefined;
}

async function figures(): Promise<AdmissionFigures> {
  const m = samples(await (await fetch(`${gw.address}/metrics`)).text());
  return {
    refusing: sampleValue(m, 'gateway_admission_refusing'),
    backlog: sampleValue(m, 'gateway_backlog_messages'),
    rate: sampleValue(m, 'gateway_drain_rate_per_second'),
  };
}

const until = (what: string, check: (f: AdmissionFigures) => boolean) =>
  waitFor(`/metrics: ${what}`, async () => {
    const f = await figures();
    return check(f) ? f : undefined;
  });

function post(id: string): Promise<Response> {
  return fetch(`${gw.address}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id, sku: 'am-sku', qty: 1 }),
  });
}

describe('the admission state on /metrics', () => {
  it('shows the backlog, the refusal at MAX_BACKLOG and the measured drain rate, and admitting again', async () => {
    const idle = await until('the first sample', (f) => f.backlog === 0);
    // No busy interval yet: no rate measured, which is not a rate of 0.
    expect(idle.refusing).toBe(0);
    expect(idle.rate).toBeNaN();

    expect((await post('am-1')).status).toBe(202);
    expect((await post('am-2')).status).toBe(202);
    await until('refusing at the backlog of 2', (f) => f.backlog === 2 && f.refusing === 1);
    const refused = await post('am-3');
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { type: string }).type).toBe('/problems/overloaded');

    // Decisions while the backlog waits: a busy interval with progress, so a rate.
    const busy = await waitFor('a drain rate measured', async () => {
      await redis.incrby(keys.processedCount, 5);
      const f = await figures();
      return f.rate !== undefined && f.rate > 0 ? f : undefined;
    });
    console.log(`admission metrics: backlog ${busy.backlog}, refusing ${busy.refusing}, drain ${busy.rate?.toFixed(1)}/s`);
    expect(busy.backlog).toBe(2);

    await drainQueue(ch, queues.orders);
    const after = await until('admitting again', (f) => f.backlog === 0 && f.refusing === 0);
    // The last measured rate stands through the idle spell.
    expect(after.rate).toBeGreaterThan(0);
    expect((await post('am-4')).status).toBe(202);
    await drainQueue(ch, queues.orders);
  });
});
