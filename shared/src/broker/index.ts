import type { ChannelWrapper } from 'amqp-connection-manager';
import type { Channel } from 'amqplib';
import { applyTopology } from '../topology.js';
import { trace } from '../tracing.js';
import { openConnection } from './connection.js';
import { startConsumer } from './consumer.js';
import { createPublisher } from './publisher.js';
import type { Broker, BrokerOptions, ConsumeOptions, Consumer } from './types.js';

// The broker client, put together from its parts:
//   connection.ts      the connection over RABBITMQ_URLS, failover, channel watching
//   frame-writes.ts    fewer system calls per pass of amqplib's multiplexer
//   publisher.ts       confirmed, mandatory publishes with a timeout, in PRODUCER spans
//   consumer.ts        a consumer's channel, its deliveries and how they are settled
//   ack-batcher.ts     one ack for many handled deliveries
//   failure-policy.ts  ack, retry or dead-letter, from what a handler threw

export { AckBatcher } from './ack-batcher.js';
export { nodeOrder, redactUrl, type NodeOrder } from './connection.js';
export {
  RETRY_COUNT_HEADER,
  attemptOf,
  decide,
  defaultBackoffMs,
  outageBackoffMs,
  isLastAttempt,
  type DeadLetterReason,
  type Decision,
  type RetryLimits,
} from './failure-policy.js';
export { coalesceFrameWrites } from './frame-writes.js';
export * from './types.js';

/** Resolves once a node is connected (at once if it already is); rejects after timeoutMs. */
export function waitForBroker(broker: Broker, timeoutMs = 30_000): Promise<void> {
  if (broker.isConnected()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onConnect = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      broker.connection.off('connect', onConnect);
      reject(new Error(`no broker node answered within ${timeoutMs} ms`));
    }, timeoutMs);
    broker.connection.once('connect', onConnect);
  });
}

export async function connectBroker(opts: BrokerOptions, connectTimeoutMs = 30_000): Promise<Broker> {
  const broker = createBroker(opts);
  try {
    await waitForBroker(broker, connectTimeoutMs);
  } catch (err) {
    await broker.close();
    throw err;
  }
  return broker;
}

/**
 * One AMQP connection per service over `urls`, one confirm channel for publishing, one channel
 * per consumer. Not connected yet when it returns: see waitForBroker.
 */
export function createBroker(opts: BrokerOptions): Broker {
  const { log, queueType, observer } = opts;
  const tracer = trace.getTracer(opts.name);
  const connection = openConnection(opts);
  const { manager } = connection;
  const prepare = (ch: Channel) => applyTopology(ch, queueType);
  const publisher = createPublisher({
    connection,
    prepare,
    name: opts.name,
    log,
    tracer,
    publishTimeoutMs: opts.publishTimeoutMs,
    observer,
  });

  // Every open channel, closed with the client. A wrapper says 'close' only when its owner closed it.
  const wrappers = new Set<ChannelWrapper>([publisher.channel]);
  const track = (w: ChannelWrapper) => {
    wrappers.add(w);
    w.once('close', () => wrappers.delete(w));
    return w;
  };

  function channel(name: string): ChannelWrapper {
    // The wrapper says 'close' before the broker's close-ok arrives: a close its owner asked for.
    let closed = false;
    const w = manager.createChannel({
      name: `${opts.name}:${name}`,
      confirm: false,
      setup: (ch: Channel) => {
        connection.watch(ch, name, () => closed);
        return prepare(ch);
      },
    });
    w.once('close', () => (closed = true));
    w.on('error', (err: Error) => log.error({ err: err.message, channel: name }, 'channel setup failed'));
    return track(w);
  }

  function consume(c: ConsumeOptions): Consumer {
    return startConsumer(
      {
        createChannel: ({ name, setup }) => track(manager.createChannel({ name, confirm: false, setup })),
        isConnected: connection.isConnected,
        isClosing: connection.isClosing,
        reconnect: connection.reconnect,
        watch: connection.watch,
        prepare,
        publish: publisher.publish,
        log,
        tracer,
        name: opts.name,
        observer,
      },
      c,
    );
  }

  return {
    connection: manager,
    isConnected: connection.isConnected,
    isBlocked: connection.isBlocked,
    currentNode: connection.currentNode,
    publish: publisher.publish,
    consume,
    channel,
    close: () =>
      connection.close(async () => {
        await Promise.all([...wrappers].map((w) => w.close().catch(() => undefined)));
      }),
  };
}
