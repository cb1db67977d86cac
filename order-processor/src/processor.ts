import type { Message } from 'amqplib';
import {
  OrderExpiredError,
  PayloadMismatchError,
  TransientError,
  ScriptReplyError,
  decodeEvent,
  encodeEvent,
  exchanges,
  expireOrder,
  forOrder,
  traceHeaders,
  makeEvent,
  reserveOrder,
  routingKeys,
  type ExpireResult,
  type Broker,
  type EventType,
  type Logger,
  type Order,
  type RedisClient,
  type RejectReason,
  type ReserveResult,
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

/** The kind of a decision (reserve refuses a differing copy by throwing, so it has none). */
function kindOf(result: Exclude<ReserveResult, { outcome: 'payload_mismatch' }>): OutcomeKind {
  switch (result.outcome) {
    case 'decided_before':
      return 'redelivered';
    case 'created':
      return 'created';
    case 'rejected':
      return result.reason === 'out_of_stock' ? 'rejected_out_of_stock' : 'rejected_unknown_sku';
  }
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
  let result: ExpireResult;
  try {
    result = await expireOrder(deps.redis, order, new Date());
  } catch (err) {
    // The script and this code disagree: said as such, not as "redis unavailable".
    if (err instanceof ScriptReplyError) throw err;
    throw redisError(err, 'expire');
  }
  if (result.outcome === 'payload_mismatch') throw payloadMismatch(order, result.fields, log);
  // Decided before it ran out (a redelivery of a created or rejected order): handled as such.
  if (result.outcome === 'decided_before' && result.status !== 'expired') return;
  if (result.outcome === 'expired') log.warn({ waitedMs, ttlMs: deps.orderTtlMs }, 'order waited too long; expired');
  throw new OrderExpiredError(`order ${order.id} waited ${waitedMs} ms in the queue, longer than ORDER_TTL_MS (${deps.orderTtlMs} ms)`);
}

/**
 * A copy whose payload differs from the one order:<id> records comes from another request under
 * the same id: the gateway refused it (409 or 422) after its lease lapsed, but its message was already
 * confirmed. It must never reserve stock or publish an outcome with its payload. Dead-lettered
 * rather than acked and logged: it is a client reusing an id with another payload, which an
 * operator should see (the dead-letter queue and its count), and the message is kept as evidence;
 * replaying it only dead-letters it again.
 */
function payloadMismatch(order: Order, fields: readonly string[], log: Logger): PayloadMismatchError {
  log.warn({ fields }, 'the copy differs from the order recorded under its id; dead-lettering');
  return new PayloadMismatchError(`order ${order.id} is recorded with another payload: this copy differs in ${fields.join(', ')}`);
}

async function reserve(redis: RedisClient, order: Order, log: Logger): Promise<Exclude<ReserveResult, { outcome: 'payload_mismatch' }>> {
  let result: ReserveResult;
  try {
    result = await reserveOrder(redis, order, new Date());
  } catch (err) {
    // The script and this code disagree: said as such, not as "redis unavailable".
    if (err instanceof ScriptReplyError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    // A reply error means inventory:<sku> is not a whole number: an operator can fix it, so it is
    // retried like an outage and, if nobody does, dead-lettered with the error for a replay.
    if (err instanceof Error && err.name === 'ReplyError') {
      throw new TransientError(`cannot reserve stock: ${message}`, { cause: err });
    }
    throw new TransientError(`redis unavailable: ${message}`, { cause: err });
  }
  if (result.outcome === 'payload_mismatch') throw payloadMismatch(order, result.fields, log);
  return result;
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

  const result = await reserve(deps.redis, order, log);
  const status = result.outcome === 'decided_before' ? result.status : result.outcome;
  const rawReason = result.outcome === 'created' ? '' : result.reason;
  if (status === 'rejected' && !isRejectReason(rawReason)) {
    throw new Error(`order is rejected for an unknown reason "${rawReason}"`);
  }
  const reason = status === 'rejected' ? (rawReason as RejectReason) : undefined;
  const kind = kindOf(result);
  const type = eventOfStatus[status];

  // Per-order lines are debug: at info, one synchronous log write per order was a visible share of
  // the processor's CPU under load (see the benchmark). Redeliveries stay at info: they are rare.
  if (result.outcome !== 'decided_before') log.debug({ status, reason, sku: order.sku, qty: order.qty }, 'order decided');
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
