// Exactly once in effect, the hard way: under a steady load from clients that retry 503/409 with
// the same id, the processor and the notifier are SIGKILLed again and again at random moments,
// the gateway once, and Redis (AOF, fsync always) once; each comes back. Every fifth order is
// cancelled by its client once accepted, so cancellations race their placements through the
// same kills. At the end every accepted order took effect once (stock = seeded - the quantities
// of the orders created and not cancelled; status; orders.processed.count), was notified, each
// cancelled order's cancellation was notified once, and nothing sits unacked or dead-lettered; and every planned kill was seen to happen, from the
// process handles: the process ended by SIGKILL and a new one took its place. The kill schedule
// comes from a seeded random source; the seed is printed, and CRASH_SEED=<seed> replays it.
// Uses its own Redis and broker node, since it kills them.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys, queues } from '@order-pipeline/shared';
import { haveBinaries, startRabbitCluster, startRedis, type RabbitCluster, type RedisServer } from '../scripts/local-servers.mjs';
import { webhookIdOf } from '../notifier/src/senders.js';
import { auditOrders, formatFigures, startLoad, startWebhookSink, type WebhookSink } from './helpers/load.js';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { waitFor } from './helpers/processes.js';
import { killProblems, queueDepths, seededRandom, warningSummary, type ObservedKill } from './helpers/chaos.js';

const bins = haveBinaries();
const SKUS = ['crash-a', 'crash-b', 'crash-c'];
const STOCK = 100_000;

type Target = 'order-processor' | 'notifier' | 'api-gateway' | 'redis';
const PLAN: Record<Target, number> = { 'order-processor': 4, notifier: 4, 'api-gateway': 1, redis: 1 };

/** How a killed process ended, from its handle (it has exited once kill resolved). */
function ending(proc: ChildProcess | undefined): Pick<ObservedKill, 'pid' | 'signal' | 'code'> {
  return { pid: proc?.pid, signal: proc?.signalCode ?? null, code: proc?.exitCode ?? null };
}

/** The pid of a process that is still running, else undefined. */
function running(proc: ChildProcess | undefined): number | undefined {
  return proc && proc.exitCode === null && proc.signalCode === null ? proc.pid : undefined;
}

describe.skipIf(!bins.redis || !bins.rabbitmq)('crash anywhere (needs the local redis-server and rabbitmq-server binaries)', () => {
  let redisServer: RedisServer;
  let rabbit: RabbitCluster;
  let redis: Redis;
  let pipeline: Pipeline;
  let sink: WebhookSink;

  beforeAll(async () => {
    [redisServer, rabbit, sink] = await Promise.all([
      startRedis({ appendonly: true }),
      startRabbitCluster({ nodes: 1 }),
      startWebhookSink(),
    ]);
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    redis.on('error', () => undefined);
    for (const sku of SKUS) await redis.set(keys.inventory(sku), STOCK);
    pipeline = await startPipeline({ redisUrl: redisServer.url, rabbitmqUrls: rabbit.urls, env: { NOTIFY_WEBHOOK_URL: sink.url } });
  }, 120_000);

  afterAll(async () => {
    await pipeline?.stop();
    redis?.disconnect();
    await sink?.close();
    await Promise.all([redisServer?.stop(), rabbit?.stop()]);
  }, 60_000);

  it('applies and notifies every accepted order exactly once while processes and Redis are killed at random moments', async () => {
    const seed = Number(process.env.CRASH_SEED ?? Date.now() % 2 ** 31);
    const random = seededRandom(seed);
    const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
    console.log(`crash test seed ${seed} (CRASH_SEED=${seed} replays this schedule)`);

    // Every kill of the plan, in an order the seed decides.
    const schedule: Target[] = Object.entries(PLAN).flatMap(([t, n]) => Array<Target>(n).fill(t as Target));
    for (let i = schedule.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [schedule[i], schedule[j]] = [schedule[j] as Target, schedule[i] as Target];
    }

    const load = startLoad({
      gatewayUrl: pipeline.base['api-gateway'],
      idPrefix: 'crash',
      skus: SKUS,
      concurrency: 10,
      ratePerSecond: 30,
      retryDelayMs: 150,
      requestTimeoutMs: 8000,
      settleTimeoutMs: 45_000,
      cancelEvery: 5,
    });
    // What each kill did, read from the process handles: checked against the plan at the end.
    const kills: ObservedKill[] = [];
    const events: string[] = [];
    try {
      await load.waitForAccepted(30, 30_000);
      const t0 = Date.now();
      for (const target of schedule) {
        await sleep(between(800, 3000));
        const downMs = between(100, 1200);
        events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${target} down ${downMs}ms`);
        if (target === 'redis') {
          const victim = redisServer.process();
          await redisServer.kill();
          await sleep(downMs);
          await redisServer.start();
          kills.push({ target, ...ending(victim), restartedPid: redisServer.process()?.pid });
        } else {
          const victim = pipeline.proc(target).proc;
          await pipeline.kill(target, 'SIGKILL');
          await sleep(downMs);
          kills.push({ target, ...ending(victim), restartedPid: pipeline.start(target).proc.pid });
        }
      }
      // The last restarted services take orders again before the load stops.
      await pipeline.allReady(60_000);
      await load.waitForAccepted(30, 30_000);
    } finally {
      console.log(`crash schedule: ${events.join('; ')}`);
    }
    const report = await load.stop();
    const audit = await auditOrders({
      redis,
      report,
      initialStock: Object.fromEntries(SKUS.map((s) => [s, STOCK])),
      webhook: sink,
      settleTimeoutMs: 60_000,
    });

    // Duplicates the processor publishes on a redelivery may still be on their way: wait for the
    // work queues to drain, then nothing may be left, unacked or dead-lettered.
    const node = rabbit.nodes[0];
    if (!node) throw new Error('no broker node');
    const depths = await waitFor(
      'work queues drained and settled',
      async () => {
        const d = await queueDepths(node);
        return [queues.orders, queues.notifier].every((q) => d[q]?.messages === 0 && d[q]?.unacked === 0) ? d : undefined;
      },
      30_000,
      500,
    );
    // Each accepted order's webhook calls, by Idempotency-Key (its webhook-id): its first outcome's (unless it was
    // cancelled before its placement was decided, which then reserves and notifies nothing) and,
    // when cancelled, its cancellation's.
    const notDelivered = [...report.accepted.keys()].flatMap((id) => {
      const [outcome, cancellation] = [webhookIdOf(id, 'order.created'), webhookIdOf(id, 'order.cancelled')];
      const expected = report.cancelled.has(id) ? [cancellation, ...(audit.refunded.has(id) ? [outcome] : [])] : [outcome];
      return expected.filter((key) => !sink.deliveries.has(key));
    });
    const runningNow = {
      ...Object.fromEntries((['order-processor', 'notifier', 'api-gateway'] as const).map((t) => [t, running(pipeline.proc(t).proc)])),
      redis: running(redisServer.process()),
    };
    const count = (t: Target) => kills.filter((k) => k.target === t && k.signal === 'SIGKILL').length;

    console.log(
      formatFigures('crash anywhere', report, audit, {
        seed,
        'processor kills': count('order-processor'),
        'notifier kills': count('notifier'),
        'gateway kills': count('api-gateway'),
        'redis kills': count('redis'),
        notified: audit.notified,
        cancelled: audit.cancelledOrders,
        'cancelled after reserving': audit.refunded.size,
        'cancellations notified': audit.cancellationsNotified,
        'orders.queue.dlq': depths[queues.ordersDlq]?.messages ?? -1,
        'notifier.queue.dlq': depths[queues.notifierDlq]?.messages ?? -1,
      }),
    );
    console.log(`crash anywhere, the services' warnings:\n  ${warningSummary(pipeline.output()).join('\n  ')}`);
    if (audit.lost.length > 0) console.error(pipeline.output().slice(-20_000));

    expect(killProblems(PLAN, kills, runningNow)).toEqual([]);
    expect(report.unexpected).toEqual([]);
    expect(report.abandoned.size).toBe(0);
    expect(report.cancelAbandoned.size).toBe(0);
    expect(audit.accepted).toBeGreaterThan(0);
    expect(report.cancelled.size).toBeGreaterThan(0);
    expect(audit.lost).toEqual([]);
    expect(audit.appliedTwice).toBe(0);
    expect(audit.stockDelta).toBe(audit.createdQty);
    // Stock is plentiful: every order is created, and every cancelled one ends cancelled.
    expect(audit.cancelledOrders).toBe(report.cancelled.size);
    expect(audit.createdOrders).toBe(audit.accepted - report.cancelled.size);
    expect(audit.processedCount).toBe(audit.createdOrders + audit.refunded.size);
    expect(audit.notified).toBe(audit.createdOrders + audit.refunded.size);
    expect(audit.cancellationsNotified).toBe(report.cancelled.size);
    expect(notDelivered).toEqual([]);
    for (const q of [queues.orders, queues.notifier, queues.ordersDlq, queues.notifierDlq]) {
      expect(depths[q], q).toEqual({ messages: 0, unacked: 0 });
    }
  }, 150_000);
});
