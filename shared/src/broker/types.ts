import type { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { ConsumeMessage, Options } from 'amqplib';
import type { QueueType } from '../config.js';
import type { PublishError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Span } from '../tracing.js';
import type { NodeOrder } from './connection.js';

// The broker client's public types: what the services see of it.

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
  /** How the connection walks `urls` (RABBITMQ_NODE_ORDER); `random` by default. */
  nodeOrder?: NodeOrder;
  queueType: QueueType;
  log: Logger;
  /** Default longest wait for a publisher confirm. */
  publishTimeoutMs: number;
  /** Name shown in the broker's connection list; also the tracer's name for its spans. */
  name: string;
  /** Metrics hook; none by default. */
  observer?: BrokerObserver;
  /** RABBITMQ_TLS_CA: a CA file (PEM) trusted for amqps:// nodes. */
  tlsCa?: string;
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
  /** True while the broker blocks publishing (a resource alarm); publishes then fail at once. */
  isBlocked(): boolean;
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

/** Publishes with `mandatory` and waits for the confirm; see Broker.publish. */
export type Publish = Broker['publish'];
