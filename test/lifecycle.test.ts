// Graceful shutdown and order expiry on the four real processes. A rolling restart (SIGTERM, then
// start again, one service after another, the gateway included) under load: each service exits 0
// after handing back or finishing what it held, and no order is lost, applied twice or notified
// twice. Then an order that waits in orders.queue past ORDER_TTL_MS (the processor is stopped) is
// expired, never created, and dead-lettered with reason `expired`.
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ChannelModel, type Channel } from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_HEADERS, keys, queues } from '@order-pipeline/shared';
import { drainQueue } from './helpers/broker.js';
import { auditOrders, formatFigures, startLoad, startWebhookSink, type LoadReport, type WebhookSink } from './helpers/load.js';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { SERVICES, waitFor } from './helpers/processes.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();
const SKUS = ['life-a', 'life-b'];
const STOCK = 100_000;

let redis: Redis;
let pipeline: Pipeline;
let sink: WebhookSink;
let amqp: ChannelModel;
let ch: Channel;

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  for (const sku of SKUS) await redis.set(keys.inventory(sku), STOCK);
  sink = await startWebhookSink();
  pipeline = await startPipeline({ redisUrl, rabbitmqUrls, env: { NOTIFY_WEBHOOK_URL: sink.url } });
  amqp = await connect(rabbitmqUrls[0] as string);
  ch = await amqp.createChannel();
}, 120_000);

afterAll(async () => {
  await pipeline?.stop();
  await amqp?.close().catch(() => undefined);
  redis?.disconnect();
  await sink?.close();
}, 60_000);

describe('graceful shutdown', () => {
  it('a rolling restart under load (SIGTERM, start, one service after another) loses and duplicates nothing', async () => {
    const load = startLoad({
      gatewayUrl: pipeline.base['api-gateway'],
      idPrefix: 'roll',
      skus: SKUS,
      concurrency: 8,
      ratePerSecond: 30,
      retryDelayMs: 150,
    });
    const exits: Record<string, number | null> = {};
    const shutdownMs: Record<string, number> = {};
    let report: LoadReport;
    try {
      await load.waitForAccepted(20, 30_000);
      for (const service of SERVICES) {
        const t0 = Date.now();
        exits[service] = await pipeline.kill(service, 'SIGTERM');
        shutdownMs[service] = Date.now() - t0;
        pipeline.start(service);
        await pipeline.allReady(60_000);
        await load.waitForAccepted(20, 30_000);
      }
    } finally {
      report = await load.stop();
    }
    const audit = await auditOrders({
      redis,
      report,
      initialStock: Object.fromEntries(SKUS.map((s) => [s, STOCK])),
      webhook: sink,
      settleTimeoutMs: 30_000,
    });
    const left = await waitFor(
      'work queues drained',
      async () => {
        const counts = await Promise.all([queues.orders, queues.notifier].map(async (q) => (await ch.checkQueue(q)).messageCount));
        return counts.every((n) => n === 0) ? counts : undefined;
      },
      20_000,
    );
    console.log(
      formatFigures('rolling restart', report, audit, {
        ...Object.fromEntries(Object.entries(shutdownMs).map(([s, ms]) => [`${s} stop ms`, ms])),
        notified: audit.notified,
      }),
    );

    expect(exits).toEqual({ 'api-gateway': 0, 'order-processor': 0, notifier: 0, dashboard: 0 });
    expect(report.unexpected).toEqual([]);
    expect(report.abandoned.size).toBe(0);
    expect(audit.lost).toEqual([]);
    expect(audit.appliedTwice).toBe(0);
    expect(audit.createdOrders).toBe(audit.accepted);
    expect(audit.processedCount).toBe(audit.accepted);
    expect(audit.notified).toBe(audit.accepted);
    // Graceful: the notifier finished what it held, so no webhook call was repeated.
    expect(audit.webhookRepeats).toBe(0);
    expect(left).toEqual([0, 0]);
    for (const q of [queues.ordersDlq, queues.notifierDlq]) expect((await ch.checkQueue(q)).messageCount, q).toBe(0);
  }, 150_000);
});

describe('order expiry', () => {
  it('an order that waited in orders.queue longer than ORDER_TTL_MS is expired, not created, and dead-lettered', async () => {
    const ttlMs = 1000;
    expect(await pipeline.kill('order-processor', 'SIGTERM')).toBe(0);
    const stockBefore = await redis.get(keys.inventory('life-a'));
    const res = await fetch(`${pipeline.base['api-gateway']}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'life-exp-1', sku: 'life-a', qty: 1 }),
    });
    expect(res.status).toBe(202);
    // Not a synchronisation: the order has to be older than the TTL when the processor sees it.
    await sleep(ttlMs + 300);
    // Started again with a short TTL (every later start of this pipeline uses it too).
    pipeline.env.ORDER_TTL_MS = String(ttlMs);
    pipeline.start('order-processor');

    const view = await waitFor(
      'the order expired',
      async () => {
        const o = (await (await fetch(`${pipeline.base['api-gateway']}/orders/life-exp-1`)).json()) as { status: string };
        return o.status === 'expired' ? o : undefined;
      },
      30_000,
    );
    expect(view).toMatchObject({ id: 'life-exp-1', sku: 'life-a', qty: 1, status: 'expired' });
    const dead = await waitFor('the dead letter', async () => {
      const got = await drainQueue(ch, queues.ordersDlq);
      return got.length > 0 ? got : undefined;
    });
    expect(dead.map((m) => [m.properties.messageId, m.properties.headers?.[DEAD_LETTER_HEADERS.reason]])).toEqual([
      ['life-exp-1:order.placed', 'expired'],
    ]);
    expect(await redis.get(keys.inventory('life-a'))).toBe(stockBefore);
    expect(await redis.exists(keys.notification('life-exp-1'))).toBe(0);
    await pipeline.allReady();
  }, 60_000);
});
