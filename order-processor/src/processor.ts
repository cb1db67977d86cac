import type { Message } from 'amqplib';
import {
  OrderExpiredError,
  TransientError,
  decodeEvent,
  encodeEvent,
  exchanges,
  forOrder,
  keys,
  traceHeaders,
  makeEvent,
  routingKeys,
  type Broker,
  type EventType,
  type Logger,
  type Order,
  type RedisClient,
  type RejectReason,
  type Span,
} from '@order-pipeline/shared';

// The processor's one job: decide each order once (the reserve script, keyed by order id) and
// publish the decision. The message is acked only after the decision is stored AND its event is
// confirmed, so a crash anywhere in between ends in a redelivery that publishes it again.

export interface ProcessorDeps {
  redis: RedisClient;
  broker: Pick<Broker, 'publish'>;
  log: Logger;
  /** An order that waited in orders.queue longer than this is expired instead (ORDER_TTL_MS). */
  orderTtlMs?: number;
}

/** First element of the reserve script's reply (see shared/lua/reserve-4.lua). */
export enum ReserveCode {
  /** This call decided the order. */
  Decided = 0,
  /** The order was decided before: a redelivery or a duplicate copy; nothing changed. */
  AlreadyDecided = 1,
}

/** What handling one order.placed message came to; also the label of processor_orders_total. */
export type OutcomeKind = 'created' | 'rejected_out_of_stock' | 'rejected_unknown_sku' | 'redelivered';

export interface Outcome {
  kind: OutcomeKind;
  orderId: string;
  /** The order's status in Redis after the decision (created, rejected, expired, ...). */
  status: string;
  reason?: RejectReason;
  /** The event published for it, if any. */
  published?: EventType;
}

const REJECT_REASONS: readonly RejectReason[] = ['out_of_stock', 'unknown_sku'];

function isRejectReason(s: string): s is RejectReason {
  return (REJECT_REASONS as readonly string[]).includes(s);
}

/** The event a decided status produces. Other statuses (expired, cancelled, ...) publish nothing. */
const eventOfStatus: Readonly<Record<string, EventType | undefined>> = {
  created: routingKeys.created,
  rejected: routingKeys.rejected,
};

function kindOf(code: ReserveCode, status: string, reason: RejectReason | undefined): OutcomeKind {
  if (code === ReserveCode.AlreadyDecided) return 'redelivered';
  if (status === 'created') return 'created';
  if (status === 'rejected' && reason === 'out_of_stock') return 'rejected_out_of_stock';
  if (status === 'rejected' && reason === 'unknown_sku') return 'rejected_unknown_sku';
  // The script decides only created or rejected with one of the two reasons.
  throw new Error(`reserve script decided an unexpected outcome: ${status} ${reason ?? ''}`);
}

function redisError(err: unknown, what: string): TransientError {
  const message = err instanceof Error ? err.message : String(err);
  return new TransientError(`redis unavailable (${what}): ${message}`, { cause: err });
}

/**
 * Marks an order that waited too long as expired, unless it was decided before. Its age is taken
 * from the envelope's occurredAt, set by the gateway when it accepted the order: the time the
 * order entered orders.queue, unchanged by retries and redeliveries.
 */
async function expireIfDue(deps: ProcessorDeps, order: Order, occurredAt: string, log: Logger): Promise<void> {
  if (deps.orderTtlMs === undefined) return;
  const waitedMs = Date.now() - Date.parse(occurredAt);
  if (!(waitedMs > deps.orderTtlMs)) return;
  let reply: [number, string, string];
  try {
    reply = await deps.redis.expire(keys.order(order.id), order.id, order.sku, order.qty, order.email ?? '', new Date().toISOString());
  } catch (err) {
    throw redisError(err, 'expire');
  }
  const [code, status] = reply;
  // Decided before it ran out (a redelivery of a created or rejected order): handled as such.
  if (status !== 'expired') return;
  if (code === ReserveCode.Decided) log.warn({ waitedMs, ttlMs: deps.orderTtlMs }, 'order waited too long; expired');
  throw new OrderExpiredError(`order ${order.id} waited ${waitedMs} ms in the queue, longer than ORDER_TTL_MS (${deps.orderTtlMs} ms)`);
}

async function reserve(redis: RedisClient, order: Order): Promise<[ReserveCode, string, string]> {
  let reply: unknown;
  try {
    reply = await redis.reserve(
      keys.order(order.id),
      keys.inventory(order.sku),
      keys.processedCount,
      keys.stats.rejected,
      order.id,
      order.sku,
      order.qty,
      order.email ?? '',
      new Date().toISOString(),
    );
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // A reply error means inventory:<sku> is not a whole number: an operator can fix it, so it is
    // retried like an outage and, if nobody does, dead-lettered with the error for a replay.
    if (err instanceof Error && err.name === 'ReplyError') {
      throw new TransientError(`cannot reserve stock: ${message}`, { cause: err });
    }
    throw new TransientError(`redis unavailable: ${message}`, { cause: err });
  }
  if (!Array.isArray(reply) || reply.length !== 3 || (reply[0] !== ReserveCode.Decided && reply[0] !== ReserveCode.AlreadyDecided)) {
    throw new Error(`unexpected reply from the reserve script: ${JSON.stringify(reply)}`);
  }
  return [reply[0] as ReserveCode, String(reply[1]), String(reply[2])];
}

/**
 * Decides an order.placed message once and publishes its outcome (again, on a redelivery).
 * `span` is the delivery's span: the outcome's publish continues its trace.
 */
export async function handleOrderPlaced(deps: ProcessorDeps, msg: Message, span?: Span): Promise<Outcome> {
  const { order, occurredAt } = decodeEvent(msg.content, [routingKeys.placed]);
  const log = forOrder(deps.log, order.id, span);
  // Throws OrderExpiredError (dead-lettered with reason 'expired') for an order that ran out.
  await expireIfDue(deps, order, occurredAt, log);

  const [code, status, rawReason] = await reserve(deps.redis, order);
  if (status === 'rejected' && !isRejectReason(rawReason)) {
    throw new Error(`order is rejected for an unknown reason "${rawReason}"`);
  }
  const reason = status === 'rejected' ? (rawReason as RejectReason) : undefined;
  const kind = kindOf(code, status, reason);
  const type = eventOfStatus[status];

  // Per-order lines are debug: at info, one synchronous log write per order was a visible share of
  // the processor's CPU under load (see the benchmark). Redeliveries stay at info: they are rare.
  if (code === ReserveCode.Decided) log.debug({ status, reason, sku: order.sku, qty: order.qty }, 'order decided');
  else log.info({ status, reason }, 'order decided before; publishing its outcome again');

  // Published even when decided before: the first delivery may have died between the Redis write
  // and the confirm. The notifier absorbs the duplicate (same messageId, once-only send).
  if (type) {
    const { content, options } = encodeEvent(makeEvent(type, order, reason), traceHeaders(span));
    await deps.broker.publish(exchanges.topic, type, content, options);
    log.debug({ type }, 'outcome published');
  } else {
    log.info({ status }, 'order is no longer open; nothing to publish');
  }
  return { kind, orderId: order.id, status, ...(reason ? { reason } : {}), ...(type ? { published: type } : {}) };
}
