// Redis high availability under load: a primary, two replicas and three Sentinels, the four real
// services on REDIS_SENTINELS, and paced clients that retry a 503/409 with the same id. Each fault
// (every data node down, the primary killed, a replica killed, the primary killed while
// replication lags) ends with the audit: every accepted order created and notified once, stock
// moved once per order, nothing dead-lettered. The lagging-replication case runs with WAIT on
// (nothing lost) and with WAIT off, which shows the loss WAIT prevents.
// Uses its own Redis group and RabbitMQ node, since it kills them.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys, queues, reconnectAfterUnaskedEnd } from '@order-pipeline/shared';
import { haveBinaries, startRabbitCluster, type RabbitCluster, type RedisServer } from '../scripts/local-servers.mjs';
import { queueDepths, warningSummary } from './helpers/chaos.js';
import {
  auditOrders,
  formatFigures,
  startLoad,
  startWebhookSink,
  type AuditResult,
  type LoadReport,
  type WebhookSink,
} from './helpers/load.js';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { waitFor } from './helpers/processes.js';
import { startSentinelGroup, type SentinelGroup } from './helpers/sentinel.js';

const bins = haveBinaries();
const SKUS = ['rha-a', 'rha-b'];
const STOCK = 1_000_000;
/** Every data node down this long: the 20 s and its 60 s, in one outage of 60 s. */
const OUTAGE_MS = 60_000;

describe.skipIf(!bins.redis || !bins.rabbitmq)('Redis high availability with Sentinel (needs the local server binaries)', () => {
  let group: SentinelGroup;
  let rabbit: RabbitCluster;
  let sink: WebhookSink;
  let pipeline: Pipeline;
  /** Follows the Sentinels, as the services do: reads what the current primary holds. */
  let redis: Redis;
  let run = 0;

  const startServices = (waitOn: boolean) =>
    startPipeline({
      redisUrl: 'redis://127.0.0.1:1',
      rabbitmqUrls: rabbit.urls,
      env: {
        ...group.env,
        NOTIFY_WEBHOOK_URL: sink.url,
        PUBLISH_TIMEOUT_MS: '2000',
        QUEUE_TYPE: 'quorum',
        ...(waitOn ? {} : { REDIS_MIN_REPLICAS: '0' }),
      },
    });

  const deadLettered = async () => {
    const node = rabbit.nodes[0];
    if (!node) throw new Error('no broker node');
    const depths = await queueDepths(node);
    return (depths[queues.ordersDlq]?.messages ?? 0) + (depths[queues.notifierDlq]?.messages ?? 0);
  };

  /** Runs paced load around `fault`, then audits and prints the figures. */
  async function underLoad(
    title: string,
    fault: () => Promise<void>,
    settleTimeoutMs = 90_000,
    minAccepted = 40,
  ): Promise<{ report: LoadReport; audit: AuditResult; dead: number }> {
    run++;
    const initialStock: Record<string, number> = {};
    for (const sku of SKUS) initialStock[sku] = Number(await redis.get(keys.inventory(sku)));
    const initialProcessed = Number((await redis.get(keys.processedCount)) ?? 0);
    const deadBefore = await deadLettered();
    const load = startLoad({
      gatewayUrl: () => pipeline.base['api-gateway'],
      idPrefix: `rha${run}`,
      skus: SKUS,
      concurrency: 8,
      ratePerSecond: 40,
      retryDelayMs: 200,
      requestTimeoutMs: 10_000,
      settleTimeoutMs: 90_000,
    });
    let report: LoadReport;
    try {
      await load.waitForAccepted(minAccepted, 30_000);
      await fault();
      await load.waitForAccepted(minAccepted, 90_000);
    } finally {
      report = await load.stop();
    }
    const audit = await auditOrders({ redis, report, initialStock, initialProcessed, webhook: sink, settleTimeoutMs });
    const dead = (await deadLettered()) - deadBefore;
    console.log(
      formatFigures(title, report, audit, {
        'stock off by': Math.abs(audit.stockDelta - audit.createdQty),
        'accepted orders not notified': Math.max(0, audit.accepted - audit.notified),
        'dead-lettered': dead,
      }),
    );
    if (audit.lost.length > 0) await explainLost(audit.lost);
    return { report, audit, dead };
  }

  /**
   * For a failing run's log: how far the lost orders got (the processor's status, the notifier's
   * record), the queues, and the services' warnings, so a stall can be told from a loss.
   */
  async function explainLost(lost: readonly string[]): Promise<void> {
    const stages = new Map<string, number>();
    for (const id of lost.slice(0, 200)) {
      const [status, notice] = await Promise.all([redis.hget(keys.order(id), 'status'), redis.hget(keys.notification(id), 'status')]);
      const stage = `order ${status ?? 'missing'}, notification ${notice ?? 'missing'}`;
      stages.set(stage, (stages.get(stage) ?? 0) + 1);
    }
    const node = rabbit.nodes[0];
    console.error(
      [
        `lost orders by stage: ${JSON.stringify(Object.fromEntries(stages))}`,
        `queues: ${node ? JSON.stringify(await queueDepths(node)) : 'no node'}`,
        ...warningSummary(pipeline.output(), 30),
      ].join('\n'),
    );
  }

  function expectWhole({ report, audit, dead }: { report: LoadReport; audit: AuditResult; dead: number }): void {
    expect(report.unexpected).toEqual([]);
    expect(report.abandoned.size).toBe(0);
    expect(report.unavailableWithoutRetryAfter).toBe(0);
    expect(audit.lost).toEqual([]);
    expect(audit.appliedTwice).toBe(0);
    expect(audit.notified).toBe(audit.accepted);
    expect(dead).toBe(0);
  }

  const role = async (node: RedisServer) => {
    const r = new Redis(node.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return ((await r.call('ROLE')) as unknown[])[0];
    } catch {
      return undefined;
    } finally {
      r.disconnect();
    }
  };

  beforeAll(async () => {
    [group, rabbit, sink] = await Promise.all([startSentinelGroup(), startRabbitCluster({ nodes: 1 }), startWebhookSink()]);
    redis = new Redis({
      sentinels: group.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
      name: group.name,
      maxRetriesPerRequest: 1,
      failoverDetector: true,
      retryStrategy: () => 200,
      sentinelRetryStrategy: () => 200,
      reconnectOnError: () => 1,
    });
    redis.on('error', () => undefined);
    // The services' clients connect again after a failover that ended them; so does this one.
    reconnectAfterUnaskedEnd(redis);
    for (const sku of SKUS) await redis.set(keys.inventory(sku), STOCK);
    await group.waitForReplicas(2);
    pipeline = await startServices(true);
    await pipeline.allReady();
  }, 180_000);

  afterAll(async () => {
    await pipeline?.stop();
    redis?.disconnect();
    await Promise.all([group?.stop(), rabbit?.stop(), sink?.close()]);
  }, 60_000);

  it(`every data node down for ${OUTAGE_MS / 1000} s, then back: every order processed and notified, nothing dead-lettered`, async () => {
    const result = await underLoad(`every Redis node down ${OUTAGE_MS / 1000} s`, async () => {
      const primary = await group.primary();
      await Promise.all(group.nodes.map((n) => n.kill()));
      await sleep(OUTAGE_MS);
      // The primary first, so the Sentinels find the group as they left it.
      await primary.start();
      await Promise.all(group.nodes.filter((n) => n !== primary).map((n) => n.start()));
    });
    expectWhole(result);
    expect(result.report.statuses[503] ?? 0).toBeGreaterThan(0);
    await group.waitForReplicas(2);
  }, 300_000);

  it('the primary SIGKILLed: a replica is promoted, clients follow, and the old primary comes back as a replica', async () => {
    let old: RedisServer | undefined;
    const result = await underLoad('primary SIGKILLed', async () => {
      old = await group.primary();
      await old.kill();
      await group.waitForFailover(old);
    });
    expectWhole(result);
    if (!old) throw new Error('no primary was killed');
    const killed = old;
    await killed.start();
    await waitFor(
      'the old primary to come back as a replica',
      async () => ((await role(killed)) === 'slave' ? true : undefined),
      30_000,
      200,
    );
    await group.waitForReplicas(2);
  }, 240_000);

  it('a replica SIGKILLed and restarted: nothing lost', async () => {
    const result = await underLoad('one replica SIGKILLed', async () => {
      const primary = await group.primary();
      const replica = group.nodes.find((n) => n !== primary);
      if (!replica) throw new Error('no replica');
      await replica.kill();
      await sleep(3000);
      await replica.start();
    });
    expectWhole(result);
    await group.waitForReplicas(2);
  }, 240_000);

  /**
   * Both replicas stopped (SIGSTOP), more written than the sockets hold, the primary killed, the
   * replicas resumed: whatever the primary acknowledged after the sockets filled is not on any
   * replica when one is promoted.
   */
  async function lagThenKill(): Promise<void> {
    const primary = await group.primary();
    const replicas = group.nodes.filter((n) => n !== primary);
    for (const r of replicas) r.pause();
    // 48 MB of filler, more than loopback socket buffers hold, below the replica output limit.
    const filler = new Redis(primary.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    const mb = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 48; i++) await filler.set(`rha:filler:${i}`, mb);
    filler.disconnect();
    // Orders taken meanwhile: acknowledged by the primary alone.
    await sleep(4000);
    await primary.kill();
    for (const r of replicas) r.resume();
    await group.waitForFailover(primary);
    await primary.start();
  }

  it('replication lagging when the primary dies, WAIT on: 503s while no replica confirms, lost 0', async () => {
    const result = await underLoad('lagging replication, primary SIGKILLed, WAIT on', lagThenKill);
    expectWhole(result);
    await group.waitForReplicas(2, 60_000);
  }, 300_000);

  it('replication lagging when the primary dies, WAIT off: shows what WAIT prevents', async () => {
    await pipeline.stop();
    pipeline = await startServices(false);
    await pipeline.allReady();
    const { report, audit, dead } = await underLoad('lagging replication, primary SIGKILLed, WAIT off', lagThenKill, 15_000);
    // The orders decided during the stall vanished with the primary: not created any more.
    expect(report.unexpected).toEqual([]);
    const lost = audit.lost.length + Math.abs(audit.stockDelta - audit.createdQty);
    console.log(
      `WAIT off: ${audit.lost.length} accepted orders lost, stock off by ${Math.abs(audit.stockDelta - audit.createdQty)}, dead-lettered ${dead}`,
    );
    expect(lost).toBeGreaterThan(0);
  }, 300_000);
});
