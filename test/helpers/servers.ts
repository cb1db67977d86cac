// Helpers for tests that use the servers of the global setup (test/global-setup.ts).
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { exchanges, queues } from '@order-pipeline/shared';
import { Redis } from 'ioredis';
import { inject } from 'vitest';

export interface TestServers {
  redisUrl: string;
  rabbitmqUrls: string[];
}

/** URLs of the Redis and RabbitMQ nodes the global setup provided. */
export function testServers(): TestServers {
  return { redisUrl: inject('redisUrl'), rabbitmqUrls: inject('rabbitmqUrls') };
}

/** FLUSHDB on the database of `url` (redis://host:port[/db]). */
export async function resetRedis(url: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  try {
    await redis.connect();
    await redis.flushdb();
  } finally {
    redis.disconnect();
  }
}

/** Connect to the first node of `urls` that accepts a connection. */
async function connectAny(urls: readonly string[]): Promise<ChannelModel> {
  let lastError: unknown = new Error('no RabbitMQ URLs given');
  for (const url of urls) {
    try {
      return await connect(url);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** What to delete: a list of names (each deleted as a queue and as an exchange) or both lists apart. */
export type BrokerNames = readonly string[] | { exchanges?: readonly string[]; queues?: readonly string[] };

const isList = (names: BrokerNames): names is readonly string[] => Array.isArray(names);

/**
 * Delete the named queues and exchanges (missing ones are fine), so a test starts from an
 * empty topology. The caller names what to delete; nothing else on the broker is touched.
 */
export async function resetBroker(urls: readonly string[], names: BrokerNames): Promise<void> {
  const queues = new Set(isList(names) ? names : (names.queues ?? []));
  const exchanges = new Set(isList(names) ? names : (names.exchanges ?? []));
  const connection = await connectAny(urls);
  // A failed operation closes its channel; use a fresh one per operation.
  const withChannel = async (op: (ch: Channel) => Promise<unknown>): Promise<void> => {
    const ch = await connection.createChannel();
    ch.on('error', () => {});
    await op(ch);
    await ch.close().catch(() => {});
  };
  try {
    for (const queue of queues) await withChannel((ch) => ch.deleteQueue(queue));
    for (const exchange of exchanges) await withChannel((ch) => ch.deleteExchange(exchange));
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Every queue and exchange of the topology (`queues` and `exchanges` of the shared package). */
export const TOPOLOGY_NAMES = { exchanges: Object.values(exchanges), queues: Object.values(queues) } as const;

/** FLUSHDB on Redis and delete every queue and exchange of the topology: a test file's clean start. */
export async function resetAll(redisUrl: string, rabbitmqUrls: readonly string[]): Promise<void> {
  await resetRedis(redisUrl);
  await resetBroker(rabbitmqUrls, TOPOLOGY_NAMES);
}
