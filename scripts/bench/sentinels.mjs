// A throwaway Redis primary, its replicas and three Sentinels for the benchmark's WAIT phase, from
// the local redis-server binary on free ports. The data nodes run as docs/high-availability.md
// recommends (AOF with appendfsync always, min-replicas-to-write 1), so WAIT on and off are
// measured against the deployment users are told to run. The fault tests have their own, richer
// helper (test/helpers/sentinel.ts: kills, restarts, failovers); this one only starts and stops.

import { Redis } from 'ioredis';
import { startRedis } from '../local-servers.mjs';
import { waitFor } from '../poll.mjs';

/**
 * Asks one server something over a short-lived client; undefined when it does not answer.
 * @template T
 * @param {number} port
 * @param {(r: Redis) => Promise<T>} run
 * @returns {Promise<T | undefined>}
 */
async function ask(port, run) {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
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

/**
 * @param {{ name?: string, replicas?: number }} [options]
 * @returns {Promise<{ name: string, sentinels: { host: string, port: number }[], dataPorts: number[], env: Record<string, string>, stop: () => Promise<void> }>}
 */
export async function startSentinelGroup({ name = 'orders', replicas = 2 } = {}) {
  const dataArgs = ['--min-replicas-to-write', '1', '--min-replicas-max-lag', '10'];
  const primary = await startRedis({ appendonly: true, extraArgs: dataArgs });
  const copies = await Promise.all(
    Array.from({ length: replicas }, () =>
      startRedis({ appendonly: true, extraArgs: [...dataArgs, '--replicaof', '127.0.0.1', String(primary.port)] }),
    ),
  );
  const sentinels = await Promise.all(
    [0, 1, 2].map(() =>
      startRedis({
        sentinel: [
          `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${name} 5000`,
          `sentinel failover-timeout ${name} 10000`,
        ],
      }),
    ),
  );
  const stop = async () => {
    await Promise.all(sentinels.map((s) => s.stop().catch(() => undefined)));
    await Promise.all([primary, ...copies].map((n) => n.stop().catch(() => undefined)));
  };
  try {
    // Every Sentinel names the primary and knows every replica, and the primary has them all
    // online: the services find the primary through the Sentinels and WAIT has its replicas.
    await waitFor(
      'the Sentinels to see every replica',
      async () => {
        const seen = await Promise.all(
          sentinels.map((s) => ask(s.port, async (r) => /** @type {unknown[]} */ (await r.call('SENTINEL', 'replicas', name)).length)),
        );
        return seen.every((n) => n === replicas) ? true : undefined;
      },
      30_000,
      200,
    );
    await waitFor(
      `${replicas} replica(s) online`,
      async () => {
        const info = await ask(primary.port, (r) => r.info('replication'));
        return info && [...info.matchAll(/state=online/g)].length === replicas ? true : undefined;
      },
      30_000,
      200,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const hosts = sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }));
  return {
    name,
    sentinels: hosts,
    // The primary's and the replicas' ports (the benchmark counts their CPU).
    dataPorts: [primary.port, ...copies.map((c) => c.port)],
    env: { REDIS_SENTINELS: hosts.map((h) => `${h.host}:${h.port}`).join(','), REDIS_SENTINEL_NAME: name },
    stop,
  };
}
