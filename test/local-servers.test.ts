// Exercises the throwaway-server helpers in scripts/local-servers.mjs: a Redis that keeps
// its AOF data across a crash, and a three-node RabbitMQ cluster that survives losing a node.
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { amqpAnswers, haveBinaries, pingRedis, startRabbitCluster, startRedis, type RabbitCluster } from '../scripts/local-servers.mjs';

const bins = haveBinaries();

describe.skipIf(!bins.redis)('startRedis (needs redis-server installed)', () => {
  it('keeps AOF data across kill and start', async () => {
    const server = await startRedis({ appendonly: true });
    try {
      const write = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await write.connect();
      await write.set('local-servers:k', 'v1');
      await write.rpush('local-servers:list', 'a', 'b');
      write.disconnect();

      await server.kill();
      expect(await pingRedis(server.url, 500)).toBeUndefined();

      await server.start();
      const read = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await read.connect();
      expect(await read.get('local-servers:k')).toBe('v1');
      expect(await read.lrange('local-servers:list', 0, -1)).toEqual(['a', 'b']);
      read.disconnect();
    } finally {
      await server.stop();
    }
  });
});

describe.skipIf(!bins.rabbitmq)('startRabbitCluster with 3 nodes (needs rabbitmq-server installed)', () => {
  let cluster: RabbitCluster | undefined;
  const nodes = () => (cluster as RabbitCluster).nodes;

  beforeAll(async () => {
    cluster = await startRabbitCluster({ nodes: 3 });
  }, 75_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 30_000);

  it('forms one cluster: every node lists the same 3 running nodes', async () => {
    const names = nodes()
      .map((n) => n.name)
      .sort();
    const views = await Promise.all(nodes().map((n) => n.runningNodes()));
    for (const view of views) expect([...view].sort()).toEqual(names);
    expect(cluster?.urls).toHaveLength(3);
  });

  it('accepts guest from 127.0.0.1 on every node', async () => {
    for (const url of cluster?.urls ?? []) {
      const conn = await connect(url);
      const ch = await conn.createChannel();
      const { queue } = await ch.assertQueue('', { exclusive: true });
      expect(queue).toMatch(/^amq\.gen-/);
      await conn.close();
    }
  });

  it('keeps the other nodes answering when one is killed, and start() brings it back', async () => {
    const [n1, n2, n3] = nodes();
    if (!n1 || !n2 || !n3) throw new Error('expected 3 nodes');

    await n3.kill();
    expect(n3.isRunning()).toBe(false);
    expect(await amqpAnswers(n3.url, 500)).toBe(false);
    expect(await amqpAnswers(n1.url)).toBe(true);
    expect(await amqpAnswers(n2.url)).toBe(true);
    expect((await n1.runningNodes()).sort()).toEqual([n1.name, n2.name].sort());

    await n3.start();
    expect(await amqpAnswers(n3.url)).toBe(true);
    const names = nodes()
      .map((n) => n.name)
      .sort();
    expect((await n1.runningNodes()).sort()).toEqual(names);
    expect((await n3.runningNodes()).sort()).toEqual(names);
  }, 60_000);
});
