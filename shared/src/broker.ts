import { setTimeout as sleep } from 'node:timers/promises';
import amqp, { type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { QueueType } from './config.js';
import { PoisonMessageError, PublishError, RetryLaterError } from './errors.js';
import type { Logger } from './logger.js';
import { applyTopology, exchanges } from './topology.js';

// One AMQP connection per service over RABBITMQ_URLS (amqp-connection-manager moves to the next
// node when it loses one), one confirm channel for publishing, one channel per consumer.

/** Header counting the failed attempts of a message that was republished for a retry. */
export const RETRY_COUNT_HEADER = 'x-retry-count';
/** Headers a dead-lettered message carries: why, from where, when. */
export const DEAD_LETTER_HEADERS = {
  reason: 'x-dead-letter-reason',
  error: 'x-error',
  queue: 'x-original-queue',
  at: 'x-dead-lettered-at',
} as const;

export interface BrokerOptions {
  urls: readonly string[];
  queueType: QueueType;
  log: Logger;
  /** Default longest wait for a publisher confirm. */
  publishTimeoutMs: number;
  /** Name shown in the broker's connection list. */
  name: string;
}

export interface ConsumeContext {
  /** 1 for the first try; counts retries after transient failures and redeliveries. */
  attempt: number;
  /** True when this is the last attempt before the message is dead-lettered. */
  lastAttempt: boolean;
}

export interface ConsumeOptions {
  queue: string;
  prefetch: number;
  /** Stores the message's effect; resolves when done (then it is acked). Throw PoisonMessageError for
   * a message that can never succeed, RetryLaterError for one that cannot be handled yet (not
   * counted as an attempt), anything else for a transient failure. */
  handler: (msg: ConsumeMessage, ctx: ConsumeContext) => Promise<void>;
  /** Attempts before a transiently failing message is dead-lettered. */
  maxAttempts?: number;
  /** Delay before the retry after failed attempt n (1-based). */
  backoffMs?: (attempt: number) => number;
}

export interface Consumer {
  /** True while a channel is consuming. */
  isConsuming(): boolean;
  /** Stops taking deliveries, waits (bounded) for those in hand, closes the channel. */
  stop(timeoutMs?: number): Promise<void>;
}

export interface Broker {
  readonly connection: AmqpConnectionManager;
  isConnected(): boolean;
  /** The node the connection is on now (credentials removed), or undefined. */
  currentNode(): string | undefined;
  /**
   * Publishes with `mandatory` and waits for the broker's confirm. Rejects with PublishError when no
   * node is connected (at once, never buffering), on nack, on return (unroutable) or timeout. A
   * timed-out message may still reach the queue later: consumers absorb such copies.
   */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish, timeoutMs?: number): Promise<void>;
  consume(options: ConsumeOptions): Consumer;
  /** A channel for other uses (e.g. passive queue checks), with the topology applied on setup. */
  channel(name: string): ChannelWrapper;
  close(): Promise<void>;
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    u.username = '';
    return `${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

export const defaultBackoffMs = (attempt: number) => Math.min(200 * 2 ** (attempt - 1), 10_000);

export function attemptOf(msg: ConsumeMessage): number {
  const h = msg.properties.headers ?? {};
  const retries = Number(h[RETRY_COUNT_HEADER] ?? 0) || 0;
  // Quorum queues count redeliveries of this copy (e.g. after a consumer died holding it); a
  // retry copy starts again at 0 and carries the attempts before it in RETRY_COUNT_HEADER.
  const redeliveries = Number(h['x-delivery-count'] ?? 0) || 0;
  return retries + redeliveries + 1;
}

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

export function createBroker(opts: BrokerOptions): Broker {
  const { log, queueType } = opts;
  const connection = amqp.connect([...opts.urls], {
    // A dead node is noticed by TCP reset at once, a silent one by missed heartbeats.
    heartbeatIntervalInSeconds: 5,
    reconnectTimeInSeconds: 1,
    connectionOptions: { timeout: 3000, clientProperties: { connection_name: opts.name } },
  });
  let node: string | undefined;
  let downSince: number | undefined = Date.now();
  connection.on('connect', ({ url }) => {
    node = redactUrl(typeof url === 'string' ? url : String((url as { url?: string }).url ?? ''));
    log.info({ node, downMs: downSince ? Date.now() - downSince : 0 }, 'broker connected');
    downSince = undefined;
  });
  connection.on('disconnect', ({ err }) => {
    log.warn({ node, err: err?.message }, 'broker connection lost; moving to the next node');
    node = undefined;
    downSince ??= Date.now();
  });
  connection.on('connectFailed', ({ err, url }) => {
    log.debug({ node: redactUrl(String(url)), err: err?.message }, 'broker connect failed');
  });
  connection.on('blocked', ({ reason }) => log.warn({ reason }, 'broker blocked publishing'));

  let closing = false;
  let reconnectPending = false;
  // A channel error (404 on a passive check, 406 on a mismatched declaration, an unknown delivery
  // tag) must not go unheard: without a listener amqplib tears the whole connection down. And a
  // channel the broker closed while the connection stays up is not reopened by
  // amqp-connection-manager, so reconnect: every channel's setup runs again and consumers resume.
  const watch = (ch: Channel, name: string, closedOnPurpose: () => boolean = () => false) => {
    ch.on('error', (err: Error) => log.warn({ channel: name, err: err.message }, 'channel error'));
    ch.on('close', () => {
      if (closing || closedOnPurpose() || !connection.isConnected() || reconnectPending) return;
      reconnectPending = true;
      log.warn({ channel: name }, 'channel closed by the broker; reconnecting');
      setTimeout(() => {
        reconnectPending = false;
        if (!closing) connection.reconnect();
      }, 250).unref();
    });
  };

  // When the broker last returned a message as unroutable, by messageId: the confirm that follows
  // a return must not count as success. Only a return that came after this publish began counts,
  // so the late return of an earlier, timed-out copy does not fail a retry.
  const returned = new Map<string, number>();
  const publisher = connection.createChannel({
    name: `${opts.name}:publish`,
    confirm: true,
    setup: async (ch: ConfirmChannel) => {
      watch(ch, 'publish');
      await applyTopology(ch, queueType);
      ch.on('return', (msg: ConsumeMessage) => {
        const now = performance.now();
        returned.set(String(msg.properties.messageId), now);
        // Returns of timed-out publishes nobody retried would otherwise pile up.
        if (returned.size > 1000) for (const [k, t] of returned) if (now - t > 60_000) returned.delete(k);
      });
    },
  });
  publisher.on('error', (err: Error) => log.error({ err: err.message }, 'publish channel setup failed'));

  const isConnected = () => connection.isConnected();

  async function publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish, timeoutMs = opts.publishTimeoutMs): Promise<void> {
    // amqp-connection-manager would buffer without bound while disconnected: refuse instead.
    if (!isConnected()) throw new PublishError('no broker node is connected', 'disconnected');
    const id = String(options.messageId ?? '');
    const started = performance.now();
    try {
      await publisher.publish(exchange, routingKey, content, { ...options, mandatory: true, timeout: timeoutMs });
    } catch (err) {
      const message = (err as Error).message;
      if (message === 'timeout') throw new PublishError(`no confirm within ${timeoutMs} ms`, 'timeout');
      if (message === 'Channel closed') throw new PublishError('channel closed before the confirm', 'closed');
      throw new PublishError(`broker refused the message: ${message}`, 'nacked');
    }
    // basic.return always precedes the confirm of the same message.
    const at = returned.get(id);
    if (at !== undefined) {
      returned.delete(id);
      if (at >= started) throw new PublishError(`unroutable: no queue bound to ${exchange} for ${routingKey}`, 'unroutable');
    }
  }

  const wrappers = new Set<ChannelWrapper>([publisher]);

  function channel(name: string): ChannelWrapper {
    // The wrapper says 'close' before the broker's close-ok arrives: a close its owner asked for.
    let closed = false;
    const w = connection.createChannel({
      name: `${opts.name}:${name}`,
      confirm: false,
      setup: (ch: Channel) => {
        watch(ch, name, () => closed);
        return applyTopology(ch, queueType);
      },
    });
    w.once('close', () => (closed = true));
    w.on('error', (err: Error) => log.error({ err: err.message, channel: name }, 'channel setup failed'));
    wrappers.add(w);
    return w;
  }

  function consume(c: ConsumeOptions): Consumer {
    const maxAttempts = c.maxAttempts ?? 5;
    const backoff = c.backoffMs ?? defaultBackoffMs;
    const clog = log.child({ queue: c.queue });
    let current: { ch: Channel; tag: string } | undefined;
    let stopping = false;
    let inFlight = 0;
    let idle: (() => void) | undefined;

    // Acks only on the channel the delivery came on: after a failover that channel is gone and
    // the broker redelivers the message, which the handler's once-only check absorbs. Acking it
    // on the new channel would close that channel ("unknown delivery tag").
    const settle = (ch: Channel, msg: ConsumeMessage, how: 'ack' | 'requeue') => {
      if (current?.ch !== ch) {
        clog.debug({ messageId: msg.properties.messageId }, 'delivery channel is gone; the broker redelivers');
        return;
      }
      try {
        if (how === 'ack') ch.ack(msg);
        else ch.nack(msg, false, true);
      } catch (err) {
        clog.debug({ err: (err as Error).message }, 'settle on a closed channel');
      }
    };

    const deadLetter = async (msg: ConsumeMessage, reason: string, error: string) => {
      const headers = {
        ...msg.properties.headers,
        [DEAD_LETTER_HEADERS.reason]: reason,
        [DEAD_LETTER_HEADERS.error]: error.slice(0, 1000),
        [DEAD_LETTER_HEADERS.queue]: c.queue,
        [DEAD_LETTER_HEADERS.at]: new Date().toISOString(),
      };
      await publish(exchanges.dlx, c.queue, msg.content, { ...msg.properties, headers });
    };

    const onMessage = async (ch: Channel, msg: ConsumeMessage) => {
      inFlight++;
      const attempt = attemptOf(msg);
      const mlog = clog.child({ messageId: msg.properties.messageId, attempt });
      try {
        try {
          await c.handler(msg, { attempt, lastAttempt: attempt >= maxAttempts });
          settle(ch, msg, 'ack');
          return;
        } catch (err) {
          if (err instanceof PoisonMessageError) {
            mlog.warn({ reason: err.reason, err: err.message }, 'poison message; dead-lettering');
            await deadLetter(msg, err.reason, err.message);
          } else if (err instanceof RetryLaterError) {
            // Not yet (another holder's lease): the same attempt again later, not counted.
            mlog.debug({ reason: err.message, retryInMs: err.delayMs }, 'not yet; retrying later without counting an attempt');
            await sleep(err.delayMs);
            const { 'x-delivery-count': _count, ...kept } = msg.properties.headers ?? {};
            const headers = { ...kept, [RETRY_COUNT_HEADER]: attempt - 1 };
            await publish('', c.queue, msg.content, { ...msg.properties, headers });
          } else if (attempt >= maxAttempts) {
            mlog.error({ err: (err as Error).message }, 'attempts exhausted; dead-lettering');
            await deadLetter(msg, 'attempts_exhausted', (err as Error).message);
          } else {
            const delay = backoff(attempt);
            mlog.warn({ err: (err as Error).message, retryInMs: delay }, 'handling failed; retrying later');
            await sleep(delay);
            // The copy goes back to this queue only (default exchange) with its failure counted;
            // the original is acked once the copy is confirmed.
            const { 'x-delivery-count': _count, ...kept } = msg.properties.headers ?? {};
            const headers = { ...kept, [RETRY_COUNT_HEADER]: attempt };
            await publish('', c.queue, msg.content, { ...msg.properties, headers });
          }
          settle(ch, msg, 'ack');
        }
      } catch (err) {
        // The retry copy or dead letter could not be published (broker trouble): hand the message
        // back after a pause; quorum queues' delivery limit bounds how often this can happen.
        mlog.warn({ err: (err as Error).message }, 'could not route the failed message; requeueing');
        await sleep(backoff(attempt));
        settle(ch, msg, 'requeue');
      } finally {
        inFlight--;
        if (inFlight === 0) idle?.();
      }
    };

    const wrapper = connection.createChannel({
      name: `${opts.name}:consume:${c.queue}`,
      confirm: false,
      setup: async (ch: Channel) => {
        ch.on('close', () => {
          if (current?.ch === ch) current = undefined;
        });
        watch(ch, `consume:${c.queue}`, () => stopping);
        await applyTopology(ch, queueType);
        await ch.prefetch(c.prefetch);
        const { consumerTag } = await ch.consume(c.queue, (msg) => {
          if (msg === null) {
            // Cancelled by the broker (queue deleted, or its node went away).
            clog.warn('consumer cancelled by the broker; reconnecting');
            if (!stopping && !closing) connection.reconnect();
            return;
          }
          void onMessage(ch, msg);
        });
        current = { ch, tag: consumerTag };
        clog.info({ prefetch: c.prefetch }, 'consuming');
      },
    });
    wrapper.on('error', (err: Error) => clog.error({ err: err.message }, 'consumer setup failed'));
    wrappers.add(wrapper);

    return {
      isConsuming: () => current !== undefined && connection.isConnected(),
      async stop(timeoutMs = 10_000) {
        stopping = true;
        const cur = current;
        if (cur) await cur.ch.cancel(cur.tag).catch(() => undefined);
        if (inFlight > 0) {
          await Promise.race([new Promise<void>((r) => (idle = r)), sleep(timeoutMs)]);
        }
        // Unsettled deliveries go back to the queue when the channel closes.
        current = undefined;
        wrappers.delete(wrapper);
        await wrapper.close().catch(() => undefined);
      },
    };
  }

  return {
    connection,
    isConnected,
    currentNode: () => node,
    publish,
    consume,
    channel,
    async close() {
      closing = true;
      await Promise.all([...wrappers].map((w) => w.close().catch(() => undefined)));
      await connection.close().catch(() => undefined);
    },
  };
}
