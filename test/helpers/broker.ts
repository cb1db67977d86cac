// Helpers for tests that publish to or read from the broker of the global setup.
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { applyTopology, createBroker, type Broker, type Config, type Logger, type QueueType } from '@order-pipeline/shared';
import { waitFor } from './processes.js';

/**
 * A broker client (not yet connected) as the service of `config` builds it: its queue type and
 * publish timeout, on `urls` (the config's by default).
 */
export function newBroker(config: Config, log: Logger, name: string, urls: readonly string[] = config.rabbitmqUrls): Broker {
  return createBroker({ urls, queueType: config.queueType, log, publishTimeoutMs: config.publishTimeoutMs, name });
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
