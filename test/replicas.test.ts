// Many instances on a three-node RabbitMQ cluster. First the spread: broker clients built as the
// services build them start at different nodes, and a node's death moves only the clients that
// were on it (observed from both sides: each client's own node and the broker's connection list).
// Then the replicas: two instances each of gateway, processor and notifier, the gateways behind a
// real HAProxy that health-checks /readyz; under steady load one instance of each kind and a
// broker node are SIGKILLed, and every accepted order must be created and notified exactly once.
// Uses its own Redis and cluster, since it kills them.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createLogger, keys, waitForBroker, type Broker } from '@order-pipeline/shared';
import {
  haveBinaries,
  startRabbitCluster,
  startRedis,
  type RabbitCluster,
  type RabbitNode,
  type RedisServer,
} from '../scripts/local-servers.mjs';
import { warningSummary } from './helpers/chaos.js';
import { HAPROXY, startHaproxy, type Haproxy } from './helpers/haproxy.js';
import { webhookIdOf } from '../notifier/src/senders.js';
import { auditOrders, formatFigures, startLoad, startWebhookSink, type LoadReport, type WebhookSink } from './helpers/load.js';
import { freePort, startService, waitFor, waitReady, type Service, type ServiceProcess } from './helpers/processes.js';

const bins = haveBinaries();
/** Enough clients that a fair shuffle leaves no node without one (chance 3 * (2/3)^24, about 2e-4). */
const CLIENTS = 24;

/**
 * Which node the broker says each of our connections is on, by connection name: each node listens
 * on its own AMQP port, and the client properties carry the name the client gave.
 */
async function brokerView(node: RabbitNode, nodes: readonly RabbitNode[]): Promise<Map<string, string>> {
  const out = await node.ctl('list_connections', 'port', 'client_properties', '--formatter', 'json', '--quiet');
  const rows = JSON.parse(out.slice(out.indexOf('['))) as unknown[];
  const view = new Map<string, string>();
  for (const row of rows) {
    const text = JSON.stringify(row);
    const name = /"(spread-\d+)"/.exec(text)?.[1];
    const port = Number((row as { port?: unknown }).port);
    const on = nodes.find((n) => n.port === port);
    if (name && on) view.set(name, on.name);
  }
  return view;
}

function countBy<T>(values: Iterable<T>): Map<T, number> {
  const m = new Map<T, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

/** The nodes (host:port) a process's "broker connected" log lines name, in order. */
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

describe.skipIf(!bins.rabbitmq || !bins.redis)('many instances on a three-node RabbitMQ cluster (needs the local server binaries)', () => {
  let rabbit: RabbitCluster;
  let redisServer: RedisServer;
  const clients: { name: string; broker: Broker; connects: number }[] = [];
  const instances: ServiceProcess[] = [];
  let haproxy: Haproxy | undefined;
  let sink: WebhookSink | undefined;

  beforeAll(async () => {
    [rabbit, redisServer] = await Promise.all([startRabbitCluster({ nodes: 3 }), startRedis()]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.broker.close()));
    await haproxy?.stop();
    await Promise.all(instances.map((p) => p.stop()));
    await sink?.close();
    await Promise.all([rabbit?.stop(), redisServer?.stop()]);
  }, 60_000);

  it('connections start at different nodes, and a node kill moves only its share', async () => {
    const log = createLogger('spread-test', 'silent');
    for (let i = 0; i < CLIENTS; i++) {
      const name = `spread-${i}`;
      const broker = createBroker({ urls: rabbit.urls, queueType: 'quorum', log, publishTimeoutMs: 2000, name });
      const client = { name, broker, connects: 0 };
      broker.connection.on('connect', () => client.connects++);
      clients.push(client);
    }
    await Promise.all(clients.map((c) => waitForBroker(c.broker, 30_000)));
    const nodeOfPort = (hostPort: string | undefined) => rabbit.nodes.find((n) => hostPort === `127.0.0.1:${n.port}`);

    // Each client's own view, and the broker's, agree.
    const first = rabbit.nodes[0] as RabbitNode;
    const before = new Map(clients.map((c) => [c.name, nodeOfPort(c.broker.currentNode())?.name]));
    const seen = await waitFor(
      'the broker to list every connection',
      async () => {
        const view = await brokerView(first, rabbit.nodes);
        return view.size === CLIENTS ? view : undefined;
      },
      15_000,
    );
    expect(Object.fromEntries(seen)).toEqual(Object.fromEntries(before));
    const spread = countBy(before.values());
    console.log(`connection spread (node: clients): ${[...spread].map(([n, k]) => `${n}: ${k}`).join(', ')}`);
    // Every node carries some of the clients: none is left idle and none takes them all.
    for (const n of rabbit.nodes) expect(spread.get(n.name) ?? 0, n.name).toBeGreaterThan(0);

    // Kill the node carrying the most; only its clients move, the others keep their connection.
    const victim = [...rabbit.nodes].sort((a, b) => (spread.get(b.name) ?? 0) - (spread.get(a.name) ?? 0))[0] as RabbitNode;
    const onVictim = clients.filter((c) => before.get(c.name) === victim.name);
    await victim.kill();
    await waitFor(
      `the ${onVictim.length} clients of ${victim.name} to reconnect elsewhere`,
      () => (onVictim.every((c) => c.connects >= 2 && c.broker.isConnected()) ? true : undefined),
      30_000,
    );
    const after = new Map(clients.map((c) => [c.name, nodeOfPort(c.broker.currentNode())?.name]));
    const moved = clients.filter((c) => c.connects > 1).map((c) => c.name);
    console.log(
      `killed ${victim.name} (${onVictim.length} of ${CLIENTS} clients): moved ${moved.length}; now ` +
        `${[...countBy(after.values())].map(([n, k]) => `${n}: ${k}`).join(', ')}`,
    );
    expect(moved.sort()).toEqual(onVictim.map((c) => c.name).sort());
    for (const c of clients) {
      if (before.get(c.name) === victim.name) expect(after.get(c.name), c.name).not.toBe(victim.name);
      else expect(after.get(c.name), c.name).toBe(before.get(c.name));
    }
    const survivor = rabbit.nodes.find((n) => n !== victim) as RabbitNode;
    const view = await waitFor(
      'the broker to list the moved connections',
      async () => {
        const v = await brokerView(survivor, rabbit.nodes);
        return v.size === CLIENTS ? v : undefined;
      },
      15_000,
    );
    expect(Object.fromEntries(view)).toEqual(Object.fromEntries(after));
    await victim.start();
  }, 120_000);

  it.skipIf(!HAPROXY)(
    'two instances of each service behind HAProxy: SIGKILL one of each kind and a broker node under load, every accepted order applied and notified once',
    async () => {
      const SKUS = ['rep-a', 'rep-b'];
      const STOCK = 1_000_000;
      const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
      try {
        for (const sku of SKUS) await redis.set(keys.inventory(sku), STOCK);
        sink = await startWebhookSink({ delayMs: 20 });
        const env = {
          REDIS_URL: redisServer.url,
          RABBITMQ_URLS: rabbit.urls.join(','),
          NOTIFY_WEBHOOK_URL: sink.url,
          PUBLISH_TIMEOUT_MS: '2000',
          QUEUE_TYPE: 'quorum',
        };
        const portVar: Record<Service, string> = {
          'api-gateway': 'GATEWAY_PORT',
          'order-processor': 'PROCESSOR_PORT',
          notifier: 'NOTIFIER_PORT',
          dashboard: 'DASHBOARD_PORT',
        };
        const started: Record<string, { proc: ServiceProcess; port: number }> = {};
        for (const service of ['api-gateway', 'order-processor', 'notifier'] as const) {
          for (const i of [1, 2]) {
            const port = await freePort();
            const proc = startService(service, { ...env, [portVar[service]]: String(port) });
            instances.push(proc);
            started[`${service}-${i}`] = { proc, port };
          }
        }
        await Promise.all(Object.values(started).map((x) => waitReady(`http://127.0.0.1:${x.port}`, 60_000)));
        const gateways = ['api-gateway-1', 'api-gateway-2'].map((name) => ({ name, port: (started[name] as { port: number }).port }));
        haproxy = await startHaproxy(gateways);
        const lb = haproxy;
        await waitFor(
          'both gateways UP in HAProxy',
          async () => (Object.values(await lb.states()).filter((x) => x === 'UP').length === 2 ? true : undefined),
          15_000,
          200,
        );

        const nodeName = (hostPort: string | undefined) => rabbit.nodes.find((n) => hostPort === `127.0.0.1:${n.port}`)?.name ?? 'none';
        const spreadNow = () =>
          Object.fromEntries(Object.entries(started).map(([name, x]) => [name, nodeName(connections(x.proc.output()).at(-1))]));
        const spreadBefore = spreadNow();
        console.log(`connection spread before the kills: ${JSON.stringify(spreadBefore)}`);

        const load = startLoad({
          gatewayUrl: lb.url,
          idPrefix: 'rep',
          skus: SKUS,
          concurrency: 8,
          ratePerSecond: 60,
          retryDelayMs: 200,
          requestTimeoutMs: 10_000,
          settleTimeoutMs: 30_000,
        });
        const killed: string[] = [];
        let report: LoadReport | undefined;
        try {
          await load.waitForAccepted(100, 30_000);
          for (const name of ['api-gateway-1', 'order-processor-1', 'notifier-1']) {
            await (started[name] as { proc: ServiceProcess }).proc.stop('SIGKILL');
            killed.push(name);
            await load.waitForAccepted(100, 30_000);
          }
          await waitFor(
            'HAProxy to take the dead gateway out',
            async () => ((await lb.states())['api-gateway-1'] === 'DOWN' ? true : undefined),
            10_000,
            200,
          );
          // The broker node carrying the most of the surviving instances' connections.
          const alive = Object.entries(started).filter(([name]) => !killed.includes(name));
          const count = (node: RabbitNode) =>
            alive.filter(([, x]) => connections(x.proc.output()).at(-1) === `127.0.0.1:${node.port}`).length;
          const victim = [...rabbit.nodes].filter((n) => n.isRunning()).sort((a, b) => count(b) - count(a))[0] as RabbitNode;
          const onVictim = alive.filter(([, x]) => connections(x.proc.output()).at(-1) === `127.0.0.1:${victim.port}`).map(([n]) => n);
          const connectsBefore = Object.fromEntries(alive.map(([name, x]) => [name, connections(x.proc.output()).length]));
          await victim.kill();
          killed.push(victim.name);
          await waitFor(
            `${onVictim.join(', ') || 'nobody'} to move off ${victim.name}`,
            () =>
              onVictim.every(
                (name) => connections((started[name] as { proc: ServiceProcess }).proc.output()).length > (connectsBefore[name] ?? 0),
              )
                ? true
                : undefined,
            30_000,
          );
          await load.waitForAccepted(150, 45_000);
          const moved = alive.filter(([name, x]) => connections(x.proc.output()).length > (connectsBefore[name] ?? 0)).map(([n]) => n);
          console.log(
            `killed ${victim.name}: it carried ${onVictim.join(', ') || 'none'}; moved: ${moved.join(', ') || 'none'}; now ${JSON.stringify(spreadNow())}`,
          );
          // Only the share on the dead node moved.
          expect(moved.sort()).toEqual([...onVictim].sort());
        } catch (err) {
          console.error(warningSummary(instances.map((p) => p.output()).join('\n')).join('\n'));
          throw err;
        } finally {
          report = await load.stop();
        }
        const audit = await auditOrders({
          redis,
          report,
          initialStock: Object.fromEntries(SKUS.map((s) => [s, STOCK])),
          webhook: sink,
          settleTimeoutMs: 45_000,
        });
        const onceOnly = [...report.accepted.keys()].filter((id) => sink?.deliveries.get(webhookIdOf(id, 'order.created')) === 1).length;
        console.log(
          formatFigures('Replicas fault test (2 x gateway, processor, notifier behind HAProxy)', report, audit, {
            killed: killed.join(' '),
            'notified once': audit.notified,
            'webhook received exactly once': onceOnly,
            'connection spread before': Object.values(spreadBefore).join(' '),
          }),
        );
        if (audit.lost.length > 0) console.error(warningSummary(instances.map((p) => p.output()).join('\n')).join('\n'));
        expect(audit.lost, 'accepted orders not created and notified').toEqual([]);
        expect(audit.appliedTwice).toBe(0);
        expect(audit.createdOrders - audit.createdButAbandoned).toBe(audit.accepted);
        expect(audit.processedCount).toBe(audit.createdOrders);
        // Notified once: one `sent` record per order, and every order reached the receiver. A
        // repeat delivery can only come from the killed notifier (the receiver got the webhook,
        // the record was not written): it carries the same Idempotency-Key, and there are at most
        // as many as that notifier held deliveries (PREFETCH, 100) (docs/guarantees.md).
        expect(audit.notified).toBe(audit.createdOrders);
        for (const id of report.accepted.keys())
          expect(sink?.deliveries.get(webhookIdOf(id, 'order.created')) ?? 0, `webhook deliveries of ${id}`).toBeGreaterThanOrEqual(1);
        expect(audit.webhookRepeats).toBeLessThanOrEqual(100);
        expect(report.abandoned.size).toBe(0);
        expect(report.unexpected).toEqual([]);
        expect(report.statuses[-1] ?? 0, 'requests that hung').toBe(0);
        expect(report.unavailableWithoutRetryAfter).toBe(0);
        // The instances not killed are still the processes they were.
        for (const [name, x] of Object.entries(started))
          if (!killed.includes(name)) expect(x.proc.proc.exitCode, `${name} exited`).toBeNull();
      } finally {
        redis.disconnect();
      }
    },
    180_000,
  );
});
