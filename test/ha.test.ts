// High availability on a three-node RabbitMQ cluster, proven by killing nodes under steady load.
// The four real services get every node in RABBITMQ_URLS. While paced clients keep placing orders
// (retrying a 503/409 with the same id, as the API asks), the node the services are connected to
// is killed (SIGKILL), brought back, then another one is killed. Every request must end as 202 or
// 503 + Retry-After within the publish timeout, consumers must move and resume by themselves, and
// the audit must find every accepted order created and notified exactly once. Then the whole
// cluster goes down: every service says not ready naming the broker, the gateway refuses at once
// without holding anything in memory, and everything recovers when the nodes are back.
// Uses its own Redis and cluster, since it kills them.
import { readFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORK_QUEUES, keys } from '@order-pipeline/shared';
import {
  haveBinaries,
  startRabbitCluster,
  startRedis,
  type RabbitCluster,
  type RabbitNode,
  type RedisServer,
} from '../scripts/local-servers.mjs';
import { webhookIdOf } from '../notifier/src/senders.js';
import { auditOrders, formatFigures, startLoad, startWebhookSink, type LoadReport, type WebhookSink } from './helpers/load.js';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { SERVICES, waitFor, type Service } from './helpers/processes.js';

const bins = haveBinaries();

/** The gateway's bound on waiting for a confirm, set short so a failover shows in the figures. */
const PUBLISH_TIMEOUT_MS = 2000;
/**
 * Slack on top of PUBLISH_TIMEOUT_MS for the slowest answer: a request that waits out the confirm
 * timeout still makes two Redis round trips (claim before, release after) and the HTTP exchange,
 * on a shared 2-core machine that is at the same time restarting an Erlang node. A hung request
 * (no answer at all, the failure this guards against) would take the client's full 10 s timeout.
 */
const ANSWER_MARGIN_MS = 1500;
/**
 * The webhook receiver answers this late, so the notifier always holds deliveries whose handling
 * ends after its connection has moved to the next node (about 1 s after a kill): the case where
 * acking on the new channel would fail with "unknown delivery tag". Prefetch 100 keeps up with the
 * load's 40 orders/s at this delay.
 */
const WEBHOOK_DELAY_MS = 2000;
const SKUS = ['ha-a', 'ha-b', 'ha-c'];
const STOCK = 1_000_000;

/** The "broker connected" log lines of a process: the node (host:port) it went to, in order. */
function connections(output: string): string[] {
  const nodes: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.includes('"broker connected"')) continue;
    try {
      const entry = JSON.parse(line) as { node?: string };
      if (entry.node) nodes.push(entry.node);
    } catch {
      // not a log line of ours
    }
  }
  return nodes;
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m?.[1]) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

describe.skipIf(!bins.redis || !bins.rabbitmq)(
  'high availability on a three-node RabbitMQ cluster (needs the local server binaries)',
  () => {
    let redisServer: RedisServer;
    let rabbit: RabbitCluster;
    let redis: Redis;
    let pipeline: Pipeline;
    let sink: WebhookSink;
    const gateway = () => pipeline.base['api-gateway'];

    /** The node each service's connection is on now, from its latest "broker connected" line. */
    const currentNodes = () =>
      Object.fromEntries(SERVICES.map((s) => [s, connections(pipeline.proc(s).output()).at(-1)])) as Record<Service, string | undefined>;
    const nodeAt = (hostPort: string | undefined): RabbitNode | undefined => rabbit.nodes.find((n) => hostPort === `127.0.0.1:${n.port}`);
    const connectCount = (s: Service) => connections(pipeline.proc(s).output()).length;
    const processed = async () => Number((await redis.get(keys.processedCount)) ?? 0);
    const notified = async () => Number((await redis.get(keys.stats.notificationsSent)) ?? 0);

    function expectAlive(pids: Record<Service, number | undefined>): void {
      for (const s of SERVICES) {
        expect(pipeline.proc(s).proc.exitCode, `${s} exited`).toBeNull();
        // Recovered by itself: still the process it was.
        expect(pipeline.proc(s).proc.pid, `${s} was restarted`).toBe(pids[s]);
      }
    }

    /** Every line any process printed about acking on the wrong channel. */
    const channelErrors = () =>
      pipeline
        .output()
        .split('\n')
        .filter((l) => /unknown delivery tag|PRECONDITION_FAILED/i.test(l));

    /** How often the services logged a failover step, for the figures. */
    const logCounts = () => {
      const out = pipeline.output();
      const count = (text: string) => out.split(text).length - 1;
      return {
        reconnects: count('"broker connected"') - SERVICES.length,
        'consumer cancels': count('consumer cancelled by the broker'),
        'channels closed by the broker': count('channel closed by the broker'),
      };
    };

    /** The node leading each quorum queue now. */
    async function queueLeaders(): Promise<Record<string, string>> {
      const up = rabbit.nodes.find((n) => n.isRunning());
      if (!up) throw new Error('no node is running');
      const out = await up.ctl('list_queues', 'name', 'leader', '--formatter', 'json');
      const rows = JSON.parse(out.slice(out.indexOf('['))) as { name: string; leader: string }[];
      return Object.fromEntries(rows.map((r) => [r.name, r.leader]));
    }

    /** Makes `target` the leader of `queue` (a Raft leadership transfer) and waits until it is. */
    async function moveLeader(queue: string, target: RabbitNode): Promise<void> {
      const raName = `%2F_${queue}`;
      const leader = (await queueLeaders())[queue];
      if (leader !== target.name) {
        const out = await target.ctl('eval', `ra:transfer_leadership({'${raName}', '${leader}'}, {'${raName}', '${target.name}'}).`);
        if (!/ok|already_leader/.test(out)) throw new Error(`leadership of ${queue} not moved to ${target.name}: ${out}`);
      }
      await waitFor(
        `${target.name} to lead ${queue}`,
        async () => ((await queueLeaders())[queue] === target.name ? true : undefined),
        15_000,
        250,
      );
    }

    function printFailure(): void {
      console.error(
        pipeline
          .output()
          .split('\n')
          .filter((l) => /"level":"(warn|error|fatal)"|broker connected|consuming/.test(l))
          .slice(-200)
          .join('\n'),
      );
    }

    beforeAll(async () => {
      [redisServer, rabbit, sink] = await Promise.all([
        startRedis(),
        startRabbitCluster({ nodes: 3 }),
        startWebhookSink({ delayMs: WEBHOOK_DELAY_MS }),
      ]);
      redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
      for (const sku of SKUS) await redis.set(keys.inventory(sku), STOCK);
      pipeline = await startPipeline({
        redisUrl: redisServer.url,
        rabbitmqUrls: rabbit.urls,
        env: {
          NOTIFY_WEBHOOK_URL: sink.url,
          PUBLISH_TIMEOUT_MS: String(PUBLISH_TIMEOUT_MS),
          QUEUE_TYPE: 'quorum',
          // Every service on the first node, so one kill makes all of them fail over at once (the
          // default, random, spreads them: test/replicas.test.ts).
          RABBITMQ_NODE_ORDER: 'listed',
        },
      });
    }, 120_000);

    afterAll(async () => {
      await pipeline?.stop();
      redis?.disconnect();
      await Promise.all([redisServer?.stop(), rabbit?.stop(), sink?.close()]);
    }, 60_000);

    it('the quorum queues have a member on every node', async () => {
      const first = rabbit.nodes[0];
      if (!first) throw new Error('no node');
      const out = await first.ctl('list_queues', 'name', 'type', 'members', '--formatter', 'json');
      const queues = JSON.parse(out.slice(out.indexOf('['))) as { name: string; type: string; members: string[] }[];
      expect(queues.length).toBeGreaterThanOrEqual(4);
      for (const q of queues) {
        expect(q.type, q.name).toBe('quorum');
        expect([...q.members].sort(), q.name).toEqual(rabbit.nodes.map((n) => n.name).sort());
      }
    }, 30_000);

    it('when the node the services are on dies, then a node leading a queue, then the node they moved to, orders keep flowing and each is applied and notified once', async () => {
      const pids = Object.fromEntries(SERVICES.map((s) => [s, pipeline.proc(s).proc.pid])) as Record<Service, number | undefined>;
      const initialStock = Object.fromEntries(SKUS.map((s) => [s, STOCK]));
      const initialProcessed = await processed();
      const load = startLoad({
        gatewayUrl: gateway,
        idPrefix: 'ha',
        skus: SKUS,
        concurrency: 8,
        ratePerSecond: 40,
        retryDelayMs: 200,
        requestTimeoutMs: 10_000,
        settleTimeoutMs: 30_000,
      });
      let report: LoadReport | undefined;
      const killed: string[] = [];
      const leaderMoves: string[] = [];
      try {
        await load.waitForAccepted(60, 30_000);

        /** Kills `node`, waits until every service is on another node and orders flow end to end again. */
        const failOver = async (node: RabbitNode) => {
          const before = Object.fromEntries(SERVICES.map((s) => [s, connectCount(s)])) as Record<Service, number>;
          const onIt = SERVICES.filter((s) => currentNodes()[s] === `127.0.0.1:${node.port}`);
          // The services walk the node list in the same order (listed), so the gateway and both consumers
          // share the node: each kill makes every one of them fail over.
          expect(onIt, `services on ${node.name}`).toEqual(expect.arrayContaining(['api-gateway', 'order-processor', 'notifier']));
          await node.kill();
          killed.push(node.name);
          // Only the services that were on it had to move; the rest stay where they are.
          await waitFor(
            `${onIt.join(', ')} to connect to another node`,
            () => (onIt.every((s) => connectCount(s) > before[s] && currentNodes()[s] !== `127.0.0.1:${node.port}`) ? true : undefined),
            30_000,
          );
          // Orders flow again: accepted at the gateway, then created and notified downstream.
          const [p0, n0] = [await processed(), await notified()];
          await load.waitForAccepted(40, 30_000);
          await waitFor(
            'orders created and notified after the failover',
            async () => ((await processed()) >= p0 + 40 && (await notified()) >= n0 + 40 ? true : undefined),
            30_000,
            200,
          );
        };

        // The node the gateway publishes on (all services start on the first URL).
        const first = nodeAt(currentNodes()['api-gateway']);
        if (!first) throw new Error(`gateway is on no known node: ${JSON.stringify(currentNodes())}`);
        await failOver(first);
        await first.start();
        await load.waitForAccepted(40, 30_000);

        // Then a node no service is connected to, made leader of both work queues first: when it
        // dies, leadership moves while the consumers stay on their channels, which must keep
        // delivering (no cancel left unanswered, no consumer silently gone).
        const connected = new Set(Object.values(currentNodes()));
        const leaderOnly = rabbit.nodes.find((n) => n.isRunning() && !connected.has(`127.0.0.1:${n.port}`));
        if (!leaderOnly) throw new Error(`no running node without connections: ${JSON.stringify(currentNodes())}`);
        for (const q of WORK_QUEUES) await moveLeader(q, leaderOnly);
        {
          const [p0, n0] = [await processed(), await notified()];
          await leaderOnly.kill();
          killed.push(leaderOnly.name);
          await load.waitForAccepted(40, 30_000);
          await waitFor(
            'orders created and notified after the leaders moved',
            async () => ((await processed()) >= p0 + 40 && (await notified()) >= n0 + 40 ? true : undefined),
            30_000,
            200,
          );
          const leaders = await queueLeaders();
          for (const q of WORK_QUEUES) leaderMoves.push(`${q}->${rabbit.nodes.findIndex((n) => n.name === leaders[q]) + 1}`);
          await leaderOnly.start();
          await load.waitForAccepted(20, 30_000);
        }

        // Then the node the services moved to, which is another one than the first.
        const second = nodeAt(currentNodes()['order-processor']) ?? nodeAt(currentNodes()['api-gateway']);
        if (!second || second === first) throw new Error(`services are on no other node: ${JSON.stringify(currentNodes())}`);
        await failOver(second);
        await second.start();
        await load.waitForAccepted(40, 30_000);
      } catch (err) {
        printFailure();
        throw err;
      } finally {
        report = await load.stop();
      }
      const audit = await auditOrders({ redis, report, initialStock, initialProcessed, webhook: sink, settleTimeoutMs: 30_000 });
      console.log(
        formatFigures('HA fault test (node kills under load)', report, audit, {
          'nodes killed': killed.length,
          'work queue leaders after the leader kill (node)': leaderMoves.join(' '),
          ...logCounts(),
          'publish timeout ms': PUBLISH_TIMEOUT_MS,
        }),
      );
      if (audit.lost.length > 0 || audit.appliedTwice !== 0) printFailure();

      expect(killed).toHaveLength(3);
      expect(audit.lost, 'accepted orders not created and notified').toEqual([]);
      expect(audit.appliedTwice).toBe(0);
      // Every accepted order is created (a 202 was only ever given for a confirmed message)...
      expect(audit.createdOrders - audit.createdButAbandoned).toBe(audit.accepted);
      expect(audit.stockDelta).toBe(audit.createdQty);
      expect(audit.processedCount).toBe(audit.createdOrders);
      // ...and notified once: one webhook delivery per order.
      expect(audit.notified).toBe(audit.createdOrders);
      for (const id of report.accepted.keys())
        expect(sink.deliveries.get(webhookIdOf(id, 'order.created')) ?? 0, `webhook deliveries of ${id}`).toBe(1);
      expect(audit.webhookRepeats).toBe(0);
      // The gateway's contract during the switch: 202 or 503 with Retry-After, in bounded time.
      expect(report.abandoned.size).toBe(0);
      expect(report.unexpected).toEqual([]);
      expect(report.statuses[-1] ?? 0, 'requests that hung').toBe(0);
      expect(report.statuses[0] ?? 0, 'connection errors').toBe(0);
      expect(report.unavailableWithoutRetryAfter).toBe(0);
      expect(report.slowestMs).toBeLessThan(PUBLISH_TIMEOUT_MS + ANSWER_MARGIN_MS);
      // Consumers never acked a delivery of a dead channel on the new one.
      expect(channelErrors()).toEqual([]);
      // A node's death closes the connection: no channel was mistaken for one the broker closed.
      expect(logCounts()['channels closed by the broker']).toBe(0);
      expectAlive(pids);
    }, 150_000);

    it('when the whole cluster is down: not ready naming the broker, 503 at once with flat memory; all recover when it is back', async () => {
      const pids = Object.fromEntries(SERVICES.map((s) => [s, pipeline.proc(s).proc.pid])) as Record<Service, number | undefined>;
      const gatewayPid = pids['api-gateway'];
      if (!gatewayPid) throw new Error('no gateway pid');
      const initialStock: Record<string, number> = {};
      for (const sku of SKUS) initialStock[sku] = Number(await redis.get(keys.inventory(sku)));
      const initialProcessed = await processed();
      // Clients keep placing (and retrying) orders across the outage: some are accepted just before
      // it and still in the queues when the nodes die.
      const load = startLoad({
        gatewayUrl: gateway,
        idPrefix: 'ha-down',
        skus: SKUS,
        concurrency: 4,
        ratePerSecond: 20,
        retryDelayMs: 250,
        settleTimeoutMs: 45_000,
      });
      const burst = { sent: 0, unavailable: 0, withoutRetryAfter: 0, other: [] as number[], slowestMs: 0 };
      const rss = { before: 0, after: 0 };
      let report: LoadReport | undefined;
      try {
        await load.waitForAccepted(30, 30_000);
        await Promise.all(rabbit.nodes.map((n) => n.kill()));
        await waitFor(
          'every service to report the broker down',
          async () => {
            const r = await pipeline.readiness();
            return r.every((x) => x.status === 503 && x.down.includes('broker')) ? r : undefined;
          },
          20_000,
        );

        // A bounded burst while down: each refused at once, nothing kept.
        rss.before = await rssKiB(gatewayPid);
        const ids = Array.from({ length: 2000 }, (_, i) => `ha-burst-${i}`);
        let next = 0;
        await Promise.all(
          Array.from({ length: 20 }, async () => {
            for (let i = next++; i < ids.length; i = next++) {
              const t0 = performance.now();
              const res = await fetch(`${gateway()}/orders`, {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ id: ids[i], sku: SKUS[0], qty: 1 }),
                signal: AbortSignal.timeout(10_000),
              });
              await res.arrayBuffer();
              burst.slowestMs = Math.max(burst.slowestMs, performance.now() - t0);
              burst.sent++;
              if (res.status === 503) burst.unavailable++;
              else burst.other.push(res.status);
              if (res.status === 503 && !res.headers.get('retry-after')) burst.withoutRetryAfter++;
            }
          }),
        );
        rss.after = await rssKiB(gatewayPid);
        expect(burst.unavailable).toBe(ids.length);
        expect(burst.withoutRetryAfter).toBe(0);
        // At once: nowhere near the publish timeout a held request would wait out.
        expect(burst.slowestMs).toBeLessThan(PUBLISH_TIMEOUT_MS / 2);
        // Nothing claimed in Redis for a refused order.
        expect(await redis.exists(...ids.map((id) => keys.idempotency(id)))).toBe(0);
        // Flat memory: holding 2000 orders would not show much here, so the proof that nothing was
        // kept is below (none of them ever reaches the processor); this bounds a leak per request.
        expect(rss.after - rss.before, 'gateway RSS growth in KiB').toBeLessThan(32 * 1024);

        // Back: all nodes at once (each waits for its peers, since every one of them crashed).
        await Promise.all(rabbit.nodes.map((n) => n.start()));
        await pipeline.allReady(60_000);
        await load.waitForAccepted(30, 45_000);
      } catch (err) {
        printFailure();
        throw err;
      } finally {
        report = await load.stop();
      }
      const audit = await auditOrders({ redis, report, initialStock, initialProcessed, webhook: sink, settleTimeoutMs: 45_000 });
      console.log(
        formatFigures('HA whole-cluster outage', report, audit, {
          'burst while down': burst.sent,
          'burst slowest ms': Math.round(burst.slowestMs),
          'gateway RSS before KiB': rss.before,
          'gateway RSS after KiB': rss.after,
          'RSS growth KiB': rss.after - rss.before,
        }),
      );
      expect(audit.lost).toEqual([]);
      expect(audit.appliedTwice).toBe(0);
      expect(audit.createdOrders - audit.createdButAbandoned).toBe(audit.accepted);
      expect(report.unexpected).toEqual([]);
      expect(report.unavailableWithoutRetryAfter).toBe(0);
      expect(report.statuses[-1] ?? 0, 'requests that hung').toBe(0);
      // The refused burst was never published: the orders accepted after recovery came through the
      // queues, and none of the burst's ids is an order.
      const burstIds = Array.from({ length: burst.sent }, (_, i) => `ha-burst-${i}`);
      expect(await redis.exists(...burstIds.map((id) => keys.order(id))), 'refused orders that were created').toBe(0);
      expect(channelErrors()).toEqual([]);
      expectAlive(pids);
    }, 180_000);
  },
);
