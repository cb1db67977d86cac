// Helpers for tests that publish to or read from the broker of the global setup.
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import {
  applyTopology,
  createBroker,
  createRedis,
  redisReady,
  type Broker,
  type Config,
  type Logger,
  type QueueType,
  type RedisClient,
} from '@order-pipeline/shared';
import { waitFor } from './processes.js';

/**
 * A broker client (not yet connected) as the service of `config` builds it: its queue type and
 * publish timeout, on `urls` (the config's by default).
 */
export function newBroker(config: Config, log: Logger, name: string, urls: readonly string[] = config.rabbitmqUrls): Broker {
  return createBroker({ urls, queueType: config.queueType, log, publishTimeoutMs: config.publishTimeoutMs, name });
}

/**
 * `broker` with its publish replaced by `publish`, which is handed the real one: for a test that
 * holds a publish back, or injects a fault right after its confirm, at a moment no real server
 * picks on its own. Everything else is the real client's.
 */
export function wrapPublish(
  broker: Broker,
  publish: (real: Broker['publish'], ...args: Parameters<Broker['publish']>) => ReturnType<Broker['publish']>,
): Broker {
  const real: Broker['publish'] = (...args) => broker.publish(...args);
  return new Proxy(broker, {
    get(target, prop) {
      if (prop === 'publish') return (...args: Parameters<Broker['publish']>) => publish(real, ...args);
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * A Redis client of its own (`redis`, for the service under test, so cutting it leaves the other
 * clients alone) and a wrapPublish of `broker` that, once `arm()` was called, cuts that client's
 * connection (CLIENT KILL from `admin`) right after the next confirm and waits until the client
 * knows it is cut: the service's next Redis command after the confirm then fails, as when Redis
 * dies at that moment. `close` disconnects the client.
 */
export async function cutRedisAfterConfirm(
  broker: Broker,
  admin: RedisClient,
  redisUrl: string,
  log: Logger,
): Promise<{ broker: Broker; redis: RedisClient; arm(): void; close(): Promise<void> }> {
  const victim = createRedis({ url: redisUrl }, { log });
  await redisReady(victim);
  const victimId = Number(await victim.client('ID'));
  let armed = false;
  return {
    redis: victim,
    arm: () => {
      armed = true;
    },
    close: async () => victim.disconnect(),
    broker: wrapPublish(broker, async (real, ...args) => {
      await real(...args);
      if (!armed) return;
      armed = false;
      await admin.client('KILL', 'ID', victimId);
      await waitFor('the cut client to notice', async () => (victim.status !== 'ready' ? true : undefined), 5000, 1);
    }),
  };
}

/** The test's own amqplib connection to `url`, with a channel on which the topology is declared. */
export async function openTopologyChannel(url: string, queueType: QueueType): Promise<{ amqp: ChannelModel; ch: Channel }> {
  const amqp = await connect(url);
  const ch = await amqp.createChannel();
  await applyTopology(ch, queueType);
  return { amqp, ch };
}

/** Takes every message now in `queue` (acknowledged as taken). */
export async function drainQueue(ch: Channel, queue: string): Promise<GetMessage[]> {
  const got: GetMessage[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (m === false) return got;
    got.push(m);
  }
}

/** Takes messages from `queue` until at least `n` have come (waits up to 15 s). */
export async function takeAtLeast(ch: Channel, queue: string, n: number): Promise<GetMessage[]> {
  const got: GetMessage[] = [];
  await waitFor(
    `${n} messages on ${queue}`,
    async () => {
      got.push(...(await drainQueue(ch, queue)));
      return got.length >= n ? true : undefined;
    },
    15_000,
  );
  return got;
}
