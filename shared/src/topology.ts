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
