import type { Channel, Options } from 'amqplib';
import type { QueueType } from './config.js';

// The messaging topology as data, declared by every service through `applyTopology` in its
// channel setup, so a fresh node or a fresh channel after a failover gets it too. Every service
// declares it identically: a declaration with other arguments would be refused (406) and close
// the channel.

export const exchanges = {
  direct: 'orders.direct',
  topic: 'orders.topic',
  dlx: 'orders.dlx',
  /**
   * Where the notifier's delay queues dead-letter a message whose wait is over: bound to
   * notifier.queue only, so a retried webhook delivery comes back to the notifier and nowhere else.
   */
  notifierRetry: 'notifier.retry',
} as const;

export const queues = {
  orders: 'orders.queue',
  notifier: 'notifier.queue',
  ordersDlq: 'orders.queue.dlq',
  notifierDlq: 'notifier.queue.dlq',
} as const;

export const routingKeys = {
  placed: 'order.placed',
  created: 'order.created',
  rejected: 'order.rejected',
  /** Gateway -> processor: cancel this order. On orders.queue with the placements, so one consumer decides both. */
  cancelRequested: 'order.cancel_requested',
  /** Processor -> notifier: the order is cancelled (also published again on a redelivered cancel). */
  cancelled: 'order.cancelled',
} as const;

/** Redeliveries after which a quorum queue dead-letters a message (e.g. one that crashes its consumer). */
export const DELIVERY_LIMIT = 10;

export const WORK_QUEUES = [queues.orders, queues.notifier] as const;
export const DEAD_LETTER_QUEUES = [queues.ordersDlq, queues.notifierDlq] as const;

// --- The notifier's delay queues (docs/webhooks.md) ---
// A webhook delivery to retry later waits in a delay queue: no consumer, a message TTL, and
// dead-lettering to notifier.retry, which routes it back to notifier.queue once its time is up.
// One queue per distinct delay, so every message in a queue has about the same TTL: RabbitMQ
// expires messages only at the head of a queue, so one queue of mixed delays would hold a short
// wait behind a long one. Names carry the delay, so notifiers with different schedules never
// declare one queue two ways (a 406), and the declaration needs nothing but the delay.

/**
 * Header of a webhook delivery's copy: the attempt it is (1-based; absent on the first). A
 * dead-letter replay removes it, so a replayed notification gets the whole schedule again.
 */
export const WEBHOOK_ATTEMPT_HEADER = 'x-webhook-attempt';

/** The extra share of a delay a message may wait, at random (jitter); also the queue's TTL margin. */
export const DELAY_JITTER = 0.1;

/** `250ms`, `5s`, `5m`, `2h`: the largest unit that divides the delay. */
export function formatDelay(ms: number): string {
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The delay queue for `ms`: notifier.retry.5s, notifier.retry.30m, ... */
export function delayQueueOf(ms: number): string {
  return `${exchanges.notifierRetry}.${formatDelay(ms)}`;
}

/**
 * A delay queue. Its TTL (the delay plus the jitter margin) is a ceiling: each message carries its
 * own expiration (the delay plus its jitter), never above it, so within the queue the TTLs differ
 * by at most the margin and a message waits at most that much behind the head.
 */
export function delayQueueDecl(ms: number, type: QueueType): QueueDecl {
  const args: Record<string, unknown> = {
    'x-queue-type': type,
    'x-message-ttl': Math.ceil(ms * (1 + DELAY_JITTER)),
    'x-dead-letter-exchange': exchanges.notifierRetry,
    'x-dead-letter-routing-key': queues.notifier,
  };
  if (type === 'quorum') {
    // Expired messages move to notifier.queue at least once (RabbitMQ 3.10+), not at most once.
    args['x-dead-letter-strategy'] = 'at-least-once';
    args['x-overflow'] = 'reject-publish';
  }
  return { name: delayQueueOf(ms), options: { durable: true, arguments: args }, bindings: [] };
}

/** Declares the delay queues for these delays (0 needs none: straight back to notifier.queue). */
export async function applyDelayQueues(channel: Channel, delaysMs: readonly number[], type: QueueType): Promise<string[]> {
  const names: string[] = [];
  for (const ms of new Set(delaysMs.filter((d) => d > 0))) {
    const q = delayQueueDecl(ms, type);
    await channel.assertQueue(q.name, q.options);
    names.push(q.name);
  }
  return names;
}

export function dlqOf(queue: string): string {
  return `${queue}.dlq`;
}

export function queueArguments(queue: string, type: QueueType, deadLetter: boolean): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': type };
  if (deadLetter) {
    args['x-dead-letter-exchange'] = exchanges.dlx;
    args['x-dead-letter-routing-key'] = queue;
    if (type === 'quorum') {
      args['x-delivery-limit'] = DELIVERY_LIMIT;
      // At-least-once dead-lettering: the message leaves the source queue only once the DLQ has it.
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
    }
  }
  return args;
}

export interface QueueDecl {
  name: string;
  options: Options.AssertQueue;
  bindings: { exchange: string; routingKey: string }[];
}

export function topologyFor(type: QueueType): { exchanges: { name: string; type: string }[]; queues: QueueDecl[] } {
  const q = (name: string, deadLetter: boolean, bindings: QueueDecl['bindings']): QueueDecl => ({
    name,
    options: { durable: true, arguments: queueArguments(name, type, deadLetter) },
    bindings,
  });
  return {
    exchanges: [
      { name: exchanges.direct, type: 'direct' },
      { name: exchanges.topic, type: 'topic' },
      { name: exchanges.dlx, type: 'topic' },
      { name: exchanges.notifierRetry, type: 'direct' },
    ],
    queues: [
      q(queues.orders, true, [
        { exchange: exchanges.direct, routingKey: routingKeys.placed },
        { exchange: exchanges.direct, routingKey: routingKeys.cancelRequested },
      ]),
      q(queues.notifier, true, [
        { exchange: exchanges.topic, routingKey: routingKeys.created },
        { exchange: exchanges.topic, routingKey: routingKeys.rejected },
        { exchange: exchanges.topic, routingKey: routingKeys.cancelled },
        // Webhook deliveries back from their delay queue.
        { exchange: exchanges.notifierRetry, routingKey: queues.notifier },
      ]),
      q(queues.ordersDlq, false, [{ exchange: exchanges.dlx, routingKey: queues.orders }]),
      q(queues.notifierDlq, false, [{ exchange: exchanges.dlx, routingKey: queues.notifier }]),
    ],
  };
}

/** Declares every exchange, queue and binding. Idempotent; runs in each channel's setup. */
export async function applyTopology(channel: Channel, type: QueueType): Promise<void> {
  const t = topologyFor(type);
  for (const e of t.exchanges) await channel.assertExchange(e.name, e.type, { durable: true });
  for (const q of t.queues) {
    await channel.assertQueue(q.name, q.options);
    for (const b of q.bindings) await channel.bindQueue(q.name, b.exchange, b.routingKey);
  }
}
