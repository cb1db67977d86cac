import { Redis } from 'ioredis';
import { startRedis, type RedisServer } from '../../scripts/local-servers.mjs';
import { waitFor } from './processes.js';

// A Redis primary, two replicas and three Sentinels from the local redis-server binary, on free
// ports, each with its own directory (append-only file on for the data nodes), for fault tests
// that SIGKILL, SIGSTOP, SIGCONT and restart any of them with its data.

export interface SentinelGroupOptions {
  /** The monitored primary's name (REDIS_SENTINEL_NAME). */
  name?: string;
  /** Sentinel's down-after-milliseconds: how long a silent primary takes to count as down. */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
  /** min-replicas-to-write on every data node (0: off, Redis' default). */
  minReplicasToWrite?: number;
  log?: (line: string) => void;
}

export interface SentinelGroup {
  name: string;
  /** The data nodes: [0] is the first primary, [1] and [2] its replicas (roles change with failovers). */
  nodes: RedisServer[];
  sentinels: RedisServer[];
  /** REDIS_SENTINELS and REDIS_SENTINEL_NAME for a service. */
  env: Record<string, string>;
  /** The data node the Sentinels name as primary now. */
  primary(): Promise<RedisServer>;
  /** Waits until a quorum of Sentinels names a primary other than `old` and it answers as master. */
  waitForFailover(old: RedisServer, timeoutMs?: number): Promise<RedisServer>;
  /** Waits until the primary sees `n` replicas online with their offset caught up. */
  waitForReplicas(n: number, timeoutMs?: number): Promise<void>;
  /** A plain client of the current primary (the caller disconnects it). */
  connectPrimary(): Promise<Redis>;
  stop(): Promise<void>;
}

const client = (port: number) =>
  new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });

async function ask<T>(port: number, run: (r: Redis) => Promise<T>): Promise<T | undefined> {
  const r = client(port);
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await run(r);
  } catch {
    return undefined;
  } finally {
    r.disconnect();
  }
}

export async function startSentinelGroup(opts: SentinelGroupOptions = {}): Promise<SentinelGroup> {
  const name = opts.name ?? 'orders';
  const dataArgs = ['--appendonly', 'yes', '--min-replicas-to-write', String(opts.minReplicasToWrite ?? 0), '--min-replicas-max-lag', '5'];
  const primary = await startRedis({ appendonly: true, extraArgs: dataArgs, log: opts.log });
  const replicas = await Promise.all(
    [0, 1].map(() =>
      startRedis({ appendonly: true, extraArgs: [...dataArgs, '--replicaof', '127.0.0.1', String(primary.port)], log: opts.log }),
    ),
  );
  const nodes = [primary, ...replicas];
  const sentinels = await Promise.all(
    [0, 1, 2].map(() =>
      startRedis({
        log: opts.log,
        sentinel: [
          `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 5000}`,
          `sentinel parallel-syncs ${name} 2`,
        ],
      }),
    ),
  );

  const byPort = (port: number) => nodes.find((n) => n.port === port);
  const named = async (): Promise<number[]> => {
    const answers = await Promise.all(
      sentinels.map((s) => ask(s.port, (r) => r.call('SENTINEL', 'get-master-addr-by-name', name) as Promise<[string, string] | null>)),
    );
    return answers.map((a) => (a ? Number(a[1]) : 0));
  };
  const role = (port: number) => ask(port, async (r) => ((await r.call('ROLE')) as unknown[])[0] as string);

  const group: SentinelGroup = {
    name,
    nodes,
    sentinels,
    env: { REDIS_SENTINELS: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','), REDIS_SENTINEL_NAME: name },
    async primary() {
      const ports = await named();
      const counts = new Map<number, number>();
      for (const p of ports) if (p) counts.set(p, (counts.get(p) ?? 0) + 1);
      const best = [...counts].sort((a, b) => b[1] - a[1])[0];
      const node = best && best[1] >= 2 ? byPort(best[0]) : undefined;
      if (!node) throw new Error(`no quorum of Sentinels names a primary: ${ports.join(', ')}`);
      return node;
    },
    async waitForFailover(old, timeoutMs = 30_000) {
      return waitFor(
        'a failover',
        async () => {
          const node = await group.primary().catch(() => undefined);
          if (!node || node === old) return undefined;
          return (await role(node.port)) === 'master' ? node : undefined;
        },
        timeoutMs,
        200,
      );
    },
    async waitForReplicas(n, timeoutMs = 30_000) {
      await waitFor(
        `${n} replicas in sync`,
        async () => {
          const node = await group.primary().catch(() => undefined);
          if (!node) return undefined;
          const info = await ask(node.port, (r) => r.info('replication'));
          if (!info) return undefined;
          const offset = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? -1);
          const online = [...info.matchAll(/slave\d+:ip=[^,]+,port=\d+,state=online,offset=(\d+)/g)].filter(
            (m) => Number(m[1]) >= offset - 1_000_000,
          );
          return online.length >= n ? true : undefined;
        },
        timeoutMs,
        200,
      );
    },
    async connectPrimary() {
      const node = await group.primary();
      const r = client(node.port);
      await r.connect();
      return r;
    },
    async stop() {
      await Promise.all(sentinels.map((s) => s.stop().catch(() => undefined)));
      await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
    },
  };

  try {
    // Every Sentinel has found both replicas and the other Sentinels: a failover can happen.
    await waitFor(
      'Sentinels to see the whole group',
      async () => {
        const seen = await Promise.all(
          sentinels.map((s) =>
            ask(s.port, async (r) => {
              const [reps, others] = (await Promise.all([r.call('SENTINEL', 'replicas', name), r.call('SENTINEL', 'sentinels', name)])) as [
                unknown[],
                unknown[],
              ];
              return reps.length === 2 && others.length === 2;
            }),
          ),
        );
        return seen.every(Boolean) ? true : undefined;
      },
      30_000,
      200,
    );
    await group.waitForReplicas(2);
  } catch (err) {
    await group.stop();
    throw err;
  }
  return group;
}
