// Exercises the throwaway-server helpers in scripts/local-servers.mjs: ports that two picks never
// share, a Redis that keeps its AOF data across a crash, and a three-node RabbitMQ cluster that
// survives losing a node.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { connect } from 'amqplib';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  amqpAnswers,
  freePort,
  haveBinaries,
  pingRedis,
  startRabbitCluster,
  startRedis,
  type RabbitCluster,
} from '../scripts/local-servers.mjs';
import { ROOT } from './helpers/processes.js';

const bins = haveBinaries();

/** Listens on 127.0.0.1:port; resolves with the server, rejects with the bind error. */
function bind(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

describe('freePort', () => {
  it('never hands out a port twice, even to picks made at the same time, and each one can be bound', async () => {
    // Picked the way the tests pick them: bursts of concurrent picks, none bound yet. 400 random
    // picks among ~12 000 ports would share one almost surely without a reservation.
    const ports: number[] = [];
    for (let burst = 0; burst < 8; burst++) ports.push(...(await Promise.all(Array.from({ length: 50 }, () => freePort()))));
    const repeated = ports.filter((p, i) => ports.indexOf(p) !== i);
    expect(repeated).toEqual([]);
    const servers = await Promise.allSettled(ports.map(bind));
    try {
      expect(servers.filter((r) => r.status === 'rejected').map((r) => String(r.reason))).toEqual([]);
    } finally {
      await Promise.all(servers.map((r) => (r.status === 'fulfilled' ? new Promise((done) => r.value.close(done)) : undefined)));
    }
  });

  it('never hands another process on this machine a port that a live process picked', async () => {
    // The other process picks 300 ports and binds none, then waits until its stdin closes.
    const other = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { freePort } from './scripts/local-servers.mjs';
         const ports = [];
         for (let i = 0; i < 300; i++) ports.push(await freePort());
         process.stdout.write(JSON.stringify(ports) + '\\n');
         process.stdin.resume();`,
      ],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      const theirs: number[] = await new Promise((resolve, reject) => {
        let out = '';
        other.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(JSON.parse(out) as number[]);
        });
        other.once('exit', (code) => reject(new Error(`the other process exited with ${code}`)));
      });
      expect(theirs).toHaveLength(300);
      const ours = new Set<number>();
      for (let i = 0; i < 300; i++) ours.add(await freePort());
      expect(theirs.filter((p) => ours.has(p))).toEqual([]);
    } finally {
      other.stdin?.end();
      if (other.exitCode === null) await new Promise((done) => other.once('exit', done));
    }
  });
});

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
