// Many instances on a three-node RabbitMQ cluster. First the spread: broker clients built as the
// services build them start at different nodes, and a node's death moves only the clients that
// were on it (observed from both sides: each client's own node and the broker's connection list).
// Uses its own cluster, since it kills nodes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createLogger, waitForBroker, type Broker } from '@order-pipeline/shared';
import { haveBinaries, startRabbitCluster, type RabbitCluster, type RabbitNode } from '../scripts/local-servers.mjs';
import { waitFor } from './helpers/processes.js';

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

describe.skipIf(!bins.rabbitmq)('many instances on a three-node RabbitMQ cluster (needs the local server binaries)', () => {
  let rabbit: RabbitCluster;
  const clients: { name: string; broker: Broker; connects: number }[] = [];

  beforeAll(async () => {
    rabbit = await startRabbitCluster({ nodes: 3 });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.broker.close()));
    await rabbit?.stop();
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
});
