import { setTimeout as sleep } from 'node:timers/promises';
import amqp, { type AmqpConnectionManager, type ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConfirmChannel, ConsumeMessage, Message, Options } from 'amqplib';
import type { QueueType } from './config.js';
import { PoisonMessageError, PublishError, RetryLaterError } from './errors.js';
import type { Logger } from './logger.js';
import { orderIdOfMessageId } from './messages.js';
import { applyTopology, exchanges } from './topology.js';
import {
  ATTR,
  SpanKind,
  SpanStatusCode,
  endWithError,
  extractContext,
  processAttributes,
  publishAttributes,
  trace,
  traceHeaders,
  traceIdOf,
  type Span,
} from './tracing.js';

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

/** How a handled delivery ended: acked, republished for a retry, or dead-lettered. */
export type HandleOutcome = 'ack' | 'retry' | 'dead_letter';

/**
 * What the broker tells its observer (the service's metrics; see metrics.ts). Called on the hot
 * path, so implementations only bump counters.
 */
export interface BrokerObserver {
  /** A node was connected; `first` is false for every connection after the first (a failover). */
  connected(node: string | undefined, first: boolean): void;
  disconnected(): void;
  /** A publish reached the channel and ended: confirmed, or how it failed, after `seconds`. */
  published(exchange: string, outcome: 'confirmed' | PublishError['reason'], seconds: number): void;
  /** A consumer starts on `queue` (lets the observer export its series from the start). */
  consuming(queue: string): void;
  /** A delivery arrived; `redelivered` for the broker's redeliveries and our retry copies. */
  delivered(queue: string, redelivered: boolean): void;
  /** The handler finished after `seconds` and the delivery is to end as `outcome`. */
  handled(queue: string, outcome: HandleOutcome, seconds: number): void;
  /** A dead letter was confirmed by the broker. */
  deadLettered(queue: string, reason: string): void;
}

export interface BrokerOptions {
  urls: readonly string[];
  queueType: QueueType;
  log: Logger;
  /** Default longest wait for a publisher confirm. */
  publishTimeoutMs: number;
  /** Name shown in the broker's connection list; also the tracer's name for its spans. */
  name: string;
  /** Metrics hook; none by default. */
  observer?: BrokerObserver;
}

export interface ConsumeContext {
  /** 1 for the first try; counts retries after transient failures and redeliveries. */
  attempt: number;
  /** True when this is the last attempt before the message is dead-lettered. */
  lastAttempt: boolean;
  /** This delivery's CONSUMER span: the parent of what the handler publishes or calls. */
  span: Span;
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
   * Publishes with `mandatory` and waits for the broker's confirm, in a PRODUCER span that is the
   * child of the trace context in `options.headers` (see traceHeaders), or a new trace's root. Rejects with PublishError when no
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

/**
 * Acks a channel's handled deliveries in batches. Handlers run concurrently and finish in any
 * order; once per turn of the event loop, the handled deliveries before the oldest one still in
 * hand are acked with one `multiple` ack, and any handled after it one by one (a multiple ack
 * would take the one in hand with them). For quorum queues every ack is a log entry on the
 * broker, so one ack for many deliveries saves the broker most of that work. Nothing is acked
 * before its handler has finished.
 */
export class AckBatcher {
  /** Delivery tags in delivery (= increasing) order, true once handled. */
  private readonly tags = new Map<number, boolean>();
  private scheduled = false;

  constructor(
    private readonly ch: Pick<Channel, 'ack'>,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  delivered(tag: number): void {
    this.tags.set(tag, false);
  }

  /** The delivery's effect is stored: ack it (soon, with others). */
  done(tag: number): void {
    if (!this.tags.has(tag)) return;
    this.tags.set(tag, true);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** The delivery is settled otherwise (nack): never part of a multiple ack. */
  forget(tag: number): void {
    this.tags.delete(tag);
  }

  /** Sends the acks of every handled delivery now. */
  flush(): void {
    this.scheduled = false;
    let upTo: number | undefined;
    const single: number[] = [];
    let blocked = false;
    for (const [tag, handled] of this.tags) {
      if (!handled) blocked = true;
      else if (blocked) single.push(tag);
      else upTo = tag;
    }
    try {
      if (upTo !== undefined) this.ch.ack(ackable(upTo), true);
      for (const tag of single) this.ch.ack(ackable(tag), false);
    } catch (err) {
      this.onError(err as Error);
    }
    if (upTo !== undefined) {
      for (const [tag, handled] of this.tags) {
        if (tag > upTo) break;
        if (handled) this.tags.delete(tag);
      }
    }
    for (const tag of single) this.tags.delete(tag);
  }
}

/** ack() reads only the delivery tag. */
function ackable(deliveryTag: number): Message {
  return { fields: { deliveryTag } } as Message;
}

/**
 * amqplib's multiplexer hands the socket one frame per write() (a publish is two or three, an ack
 * one), each its own system call. Corking the socket for one pass of the multiplexer sends what
 * that pass collected in a single writev: under load, the publishes and acks of many orders.
 * Only how the bytes reach the socket changes, not their order nor when a pass runs. Reaches
 * into amqplib's Connection (its `muxer` and `stream`); left alone if those are not there.
 */
export function coalesceFrameWrites(model: unknown): void {
  const conn = (model as { connection?: { muxer?: { _readIncoming?: () => void }; stream?: unknown } } | undefined)?.connection;
  const mux = conn?.muxer;
  const out = conn?.stream as { cork?: () => void; uncork?: () => void } | undefined;
  const pass = mux?._readIncoming;
  if (!mux || typeof pass !== 'function' || typeof out?.cork !== 'function' || typeof out.uncork !== 'function') return;
  const { cork, uncork } = out as { cork: () => void; uncork: () => void };
  mux._readIncoming = function (this: unknown) {
    cork.call(out);
    try {
      pass.call(this);
    } finally {
      uncork.call(out);
    }
  };
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
  const { log, queueType, observer } = opts;
  const tracer = trace.getTracer(opts.name);
  const connection = amqp.connect([...opts.urls], {
    // A dead node is noticed by TCP reset at once, a silent one by missed heartbeats.
    heartbeatIntervalInSeconds: 5,
    reconnectTimeInSeconds: 1,
    connectionOptions: { timeout: 3000, clientProperties: { connection_name: opts.name } },
  });
  let node: string | undefined;
  let downSince: number | undefined = Date.now();
  let connects = 0;
  connection.on('connect', ({ connection: model, url }) => {
    coalesceFrameWrites(model);
    node = redactUrl(typeof url === 'string' ? url : String((url as { url?: string }).url ?? ''));
    log.info({ node, downMs: downSince ? Date.now() - downSince : 0 }, 'broker connected');
    downSince = undefined;
    observer?.connected(node, ++connects === 1);
  });
  connection.on('disconnect', ({ err }) => {
    log.warn({ node, err: err?.message }, 'broker connection lost; moving to the next node');
    node = undefined;
    downSince ??= Date.now();
    observer?.disconnected();
  });
  connection.on('connectFailed', ({ err, url }) => {
    log.debug({ node: redactUrl(String(url)), err: err?.message }, 'broker connect failed');
  });
  connection.on('blocked', ({ reason }) => log.warn({ reason }, 'broker blocked publishing'));

  let closing = false;
  // Connections a forced reconnect was already asked for (several channels may close at once).
  const reconnecting = new WeakSet<object>();
  // A channel error (404 on a passive check, 406 on a mismatched declaration, an unknown delivery
  // tag) must not go unheard: without a listener amqplib tears the whole connection down. And a
  // channel the broker closed while the connection stays up is not reopened by
  // amqp-connection-manager, so reconnect: every channel's setup runs again and consumers resume.
  // When a node dies, amqplib closes every channel *before* the connection reports its close, so
  // the channel's close alone does not tell the two apart: only a channel whose own connection is
  // still the current one a moment later was closed by the broker. Forcing a reconnect for the
  // others would log a false alarm, and could tear down the fresh connection to the next node.
  const watch = (ch: Channel, name: string, closedOnPurpose: () => boolean = () => false) => {
    const owner = connection.connection;
    ch.on('error', (err: Error) => log.warn({ channel: name, err: err.message }, 'channel error'));
    ch.on('close', () => {
      if (closing || closedOnPurpose()) return;
      setTimeout(() => {
        if (closing || owner === undefined || connection.connection !== owner || reconnecting.has(owner)) return;
        reconnecting.add(owner);
        log.warn({ channel: name }, 'channel closed by the broker; reconnecting');
        connection.reconnect();
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
    observer?.consuming(c.queue);
    let current: { ch: Channel; tag: string; acks: AckBatcher } | undefined;
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
      if (how === 'ack') {
        current.acks.done(msg.fields.deliveryTag);
        return;
      }
      current.acks.forget(msg.fields.deliveryTag);
      try {
        ch.nack(msg, false, true);
      } catch (err) {
        clog.debug({ err: (err as Error).message }, 'settle on a closed channel');
      }
    };

    const deadLetter = async (msg: ConsumeMessage, span: Span, reason: string, error: string) => {
      // The dead letter's publish span is a child of this delivery's span, in the same trace.
      const headers = traceHeaders(span, {
        ...msg.properties.headers,
        [DEAD_LETTER_HEADERS.reason]: reason,
        [DEAD_LETTER_HEADERS.error]: error.slice(0, 1000),
        [DEAD_LETTER_HEADERS.queue]: c.queue,
        [DEAD_LETTER_HEADERS.at]: new Date().toISOString(),
      });
      await publish(exchanges.dlx, c.queue, msg.content, { ...msg.properties, headers });
    };

    // A copy back to this queue only (default exchange) carrying the failed attempts before it;
    // the original is acked once the copy is confirmed. The broker's own delivery count starts
    // again with the copy.
    const retryCopy = async (msg: ConsumeMessage, span: Span, failedAttempts: number) => {
      const { 'x-delivery-count': _count, ...kept } = msg.properties.headers ?? {};
      const headers = traceHeaders(span, { ...kept, [RETRY_COUNT_HEADER]: failedAttempts });
      await publish('', c.queue, msg.content, { ...msg.properties, headers });
    };

    // Each delivery is handled in its own CONSUMER span, the child of the publish span whose
    // context the message carries; the handler gets it (ctx.span), and retry copies and dead
    // letters are published as its children.
    const onMessage = (ch: Channel, msg: ConsumeMessage) => {
      const messageId = msg.properties.messageId as string | undefined;
      const orderId = orderIdOfMessageId(messageId);
      // The headers name the parent: the publish span of whoever sent the message.
      const parent = extractContext(msg.properties.headers);
      const span = tracer.startSpan(
        `${c.queue} process`,
        { kind: SpanKind.CONSUMER, attributes: processAttributes(c.queue, messageId, orderId) },
        parent,
      );
      return handleDelivery(ch, msg, span, messageId, orderId).then(
        () => span.end(),
        (err: unknown) => endWithError(span, err),
      );
    };

    const handleDelivery = async (
      ch: Channel,
      msg: ConsumeMessage,
      span: Span,
      messageId: string | undefined,
      orderId: string | undefined,
    ) => {
      inFlight++;
      const attempt = attemptOf(msg);
      observer?.delivered(c.queue, attempt > 1 || msg.fields.redelivered);
      const traceId = traceIdOf(span);
      const mlog = clog.child({ messageId, attempt, ...(orderId ? { orderId } : {}), ...(traceId ? { traceId } : {}) });
      const started = performance.now();
      const handled = (outcome: HandleOutcome) => {
        observer?.handled(c.queue, outcome, (performance.now() - started) / 1000);
        span.setAttribute(ATTR.outcome, outcome);
      };
      try {
        try {
          await c.handler(msg, { attempt, lastAttempt: attempt >= maxAttempts, span });
          handled('ack');
          settle(ch, msg, 'ack');
          return;
        } catch (err) {
          span.recordException(err as Error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
          if (err instanceof PoisonMessageError) {
            handled('dead_letter');
            mlog.warn({ reason: err.reason, err: err.message }, 'poison message; dead-lettering');
            await deadLetter(msg, span, err.reason, err.message);
            observer?.deadLettered(c.queue, err.reason);
          } else if (err instanceof RetryLaterError) {
            // Not yet (another holder's lease): the same attempt again later, not counted.
            handled('retry');
            mlog.debug({ reason: err.message, retryInMs: err.delayMs }, 'not yet; retrying later without counting an attempt');
            await sleep(err.delayMs);
            await retryCopy(msg, span, attempt - 1);
          } else if (attempt >= maxAttempts) {
            handled('dead_letter');
            mlog.error({ err: (err as Error).message }, 'attempts exhausted; dead-lettering');
            await deadLetter(msg, span, 'attempts_exhausted', (err as Error).message);
            observer?.deadLettered(c.queue, 'attempts_exhausted');
          } else {
            handled('retry');
            const delay = backoff(attempt);
            mlog.warn({ err: (err as Error).message, retryInMs: delay }, 'handling failed; retrying later');
            await sleep(delay);
            // This attempt failed: the copy counts it.
            await retryCopy(msg, span, attempt);
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
        const acks = new AckBatcher(ch, (err) => clog.debug({ err: err.message }, 'settle on a closed channel'));
        // Deliveries can arrive before consume() resolves: they are tracked from the first one
        // (the consumer counts as consuming once it has its tag).
        current = { ch, tag: '', acks };
        const { consumerTag } = await ch.consume(c.queue, (msg) => {
          if (msg === null) {
            // Cancelled by the broker (queue deleted, or its node went away).
            clog.warn('consumer cancelled by the broker; reconnecting');
            if (!stopping && !closing) connection.reconnect();
            return;
          }
          current?.acks.delivered(msg.fields.deliveryTag);
          void onMessage(ch, msg);
        });
        current = { ch, tag: consumerTag, acks };
        clog.info({ prefetch: c.prefetch }, 'consuming');
      },
    });
    wrapper.on('error', (err: Error) => clog.error({ err: err.message }, 'consumer setup failed'));
    wrappers.add(wrapper);

    return {
      isConsuming: () => current !== undefined && current.tag !== '' && connection.isConnected(),
      async stop(timeoutMs = 10_000) {
        stopping = true;
        const cur = current;
        if (cur?.tag) await cur.ch.cancel(cur.tag).catch(() => undefined);
        if (inFlight > 0) {
          await Promise.race([new Promise<void>((r) => (idle = r)), sleep(timeoutMs)]);
        }
        // What was handled is acked now, before the channel closes; unsettled deliveries go back
        // to the queue when it does.
        cur?.acks.flush();
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
