import type { ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { PublishError } from '../errors.js';
import type { Logger } from '../logger.js';
import { orderIdOfMessageId } from '../messages.js';
import { SpanKind, endWithError, extractContext, publishAttributes, traceHeaders, type Tracer } from '../tracing.js';
import type { BrokerConnection } from './connection.js';
import type { BrokerObserver, Publish } from './types.js';

// One confirm channel per service for every publish: `mandatory`, so an unroutable message comes
// back (basic.return) instead of being confirmed into the void, and a bounded wait for the
// confirm, so a caller never waits on a broker that does not answer.

/**
 * Header carrying a publish's own id, which a return brings back: it tells which publish the
 * broker returned. Set by the publisher on every message, never by callers.
 */
export const PUBLISH_ID_HEADER = 'x-publish-id';

export interface PublisherOptions {
  connection: BrokerConnection;
  /** Declares the topology on a fresh channel. */
  prepare: (ch: Channel) => Promise<void>;
  name: string;
  log: Logger;
  tracer: Tracer;
  /** Default longest wait for a confirm. */
  publishTimeoutMs: number;
  observer?: BrokerObserver;
}

export interface Publisher {
  publish: Publish;
  readonly channel: ChannelWrapper;
}

export function createPublisher(opts: PublisherOptions): Publisher {
  const { connection, log, observer, tracer } = opts;

  // The publishes waiting for their confirm, by publish id: a return (which always precedes the
  // confirm of its message) marks its own publish, so the confirm that follows does not count as
  // success. Not by messageId: copies of one event published at once would take each other's
  // return. A late return of a publish that timed out finds nobody waiting.
  const awaiting = new Map<string, { returned: boolean }>();
  let published = 0;
  const channel = connection.manager.createChannel({
    name: `${opts.name}:publish`,
    confirm: true,
    setup: async (ch: ConfirmChannel) => {
      connection.watch(ch, 'publish');
      await opts.prepare(ch);
      ch.on('return', (msg: ConsumeMessage) => {
        const id = msg.properties.headers?.[PUBLISH_ID_HEADER] as unknown;
        const waiting = id === undefined ? undefined : awaiting.get(String(id));
        if (waiting) waiting.returned = true;
      });
    },
  });
  channel.on('error', (err: Error) => log.error({ err: err.message }, 'publish channel setup failed'));

  // Every publish is a PRODUCER span, the child of the context the caller put in the headers;
  // the message then carries the publish span's own context, so the consumer's span is its
  // child. And its confirm is timed.
  async function publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    timeoutMs = opts.publishTimeoutMs,
  ): Promise<void> {
    const messageId = options.messageId === undefined ? undefined : String(options.messageId);
    const span = tracer.startSpan(
      `${exchange || routingKey} publish`,
      { kind: SpanKind.PRODUCER, attributes: publishAttributes(exchange, routingKey, messageId, orderIdOfMessageId(messageId)) },
      extractContext(options.headers),
    );
    const headers = traceHeaders(span, { ...options.headers });
    const started = performance.now();
    try {
      await confirmedPublish(exchange, routingKey, content, { ...options, headers }, timeoutMs);
      observer?.published(exchange, 'confirmed', (performance.now() - started) / 1000);
      span.end();
    } catch (err) {
      if (err instanceof PublishError && err.reason !== 'disconnected')
        observer?.published(exchange, err.reason, (performance.now() - started) / 1000);
      endWithError(span, err);
      throw err;
    }
  }

  async function confirmedPublish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    timeoutMs: number,
  ): Promise<void> {
    // amqp-connection-manager would buffer without bound while disconnected: refuse instead.
    if (!connection.isConnected()) throw new PublishError('no broker node is connected', 'disconnected');
    // Unique among this client's publishes; the broker hands it back with a return. Set here,
    // over whatever the caller's headers (e.g. those of a message being retried) carry.
    const publishId = (++published).toString(36);
    const waiting = { returned: false };
    awaiting.set(publishId, waiting);
    const headers = { ...options.headers, [PUBLISH_ID_HEADER]: publishId };
    try {
      await channel.publish(exchange, routingKey, content, { ...options, headers, mandatory: true, timeout: timeoutMs });
    } catch (err) {
      const message = (err as Error).message;
      if (message === 'timeout') throw new PublishError(`no confirm within ${timeoutMs} ms`, 'timeout');
      if (message === 'Channel closed') throw new PublishError('channel closed before the confirm', 'closed');
      throw new PublishError(`broker refused the message: ${message}`, 'nacked');
    } finally {
      awaiting.delete(publishId);
    }
    if (waiting.returned) throw new PublishError(`unroutable: no queue bound to ${exchange} for ${routingKey}`, 'unroutable');
  }

  return { publish, channel };
}
