import type { Message } from 'amqplib';
import {
  OrderExpiredError,
  PayloadMismatchError,
  TransientError,
  ScriptReplyError,
  cancelOrder,
  decodeEvent,
  encodeEvent,
  exchanges,
  keys,
  expireOrder,
  forOrder,
  traceHeaders,
  makeEvent,
  reserveOrder,
  routingKeys,
  type CancelResult,
  type ExpireResult,
  type OrderEvent,
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
  /** How long an order and its history are kept after acceptance (ORDER_RETENTION_DAYS), in ms. */
  retentionMs?: number;
}

/** What handling one order.placed message came to; also the label of processor_orders_total. */
export type OutcomeKind = 'created' | 'rejected_out_of_stock' | 'rejected_unknown_sku' | 'redelivered' | 'cancelled';

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
      // Not a redelivery: the order was cancelled before its placement was handled (or since).
      return result.status === 'cancelled' ? 'cancelled' : 'redelivered';
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
    result = await expireOrder(deps.redis, order, new Date(), deps.retentionMs);
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

async function reserve(
  redis: RedisClient,
  order: Order,
  log: Logger,
  retentionMs: number | undefined,
): Promise<Exclude<ReserveResult, { outcome: 'payload_mismatch' }>> {
  let result: ReserveResult;
  try {
    result = await reserveOrder(redis, order, new Date(), retentionMs);
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
 * The outcome a placement found cancelled still owes: order.created when the order was created
 * (stock reserved) before the cancellation gave it back. The first delivery may have died after
 * reserve-10.lua and before its confirm while the cancellation was decided meanwhile (seen under
 * the crash test's kills): without this the webhook receiver got order.cancelled and never
 * order.created. The notifier sends it once (its webhook-id), as for any redelivery. Read only in
 * this rare case, so the hot path keeps its one round trip.
 */
async function createdBeforeCancel(redis: RedisClient, id: string): Promise<EventType | undefined> {
  let refunded: string | null;
  try {
    refunded = await redis.hget(keys.order(id), 'refunded');
  } catch (err) {
    throw redisError(err, 'refunded');
  }
  return Number(refunded ?? 0) > 0 ? routingKeys.created : undefined;
}

/**
 * Decides an order.placed message once and publishes its outcome (again, on a redelivery).
 * `span` is the delivery's span: the outcome's publish continues its trace.
 */
export async function handleOrderPlaced(deps: ProcessorDeps, msg: Message, span?: Span): Promise<Outcome> {
  return decidePlacement(deps, decodeEvent(msg.content, [routingKeys.placed]), span);
}

async function decidePlacement(deps: ProcessorDeps, event: OrderEvent, span?: Span): Promise<Outcome> {
  const { order, occurredAt } = event;
  const log = forOrder(deps.log, order.id, span);
  // Throws OrderExpiredError (dead-lettered with reason 'expired') for an order that ran out.
  await expireIfDue(deps, order, occurredAt, log);

  const result = await reserve(deps.redis, order, log, deps.retentionMs);
  const status = result.outcome === 'decided_before' ? result.status : result.outcome;
  const rawReason = result.outcome === 'created' ? '' : result.reason;
  if (status === 'rejected' && !isRejectReason(rawReason)) {
    throw new Error(`order is rejected for an unknown reason "${rawReason}"`);
  }
  const reason = status === 'rejected' ? (rawReason as RejectReason) : undefined;
  const kind = kindOf(result);
  const type = status === 'cancelled' ? await createdBeforeCancel(deps.redis, order.id) : eventOfStatus[status];

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

/** What handling one order.cancel_requested message came to; also the label of processor_cancellations_total. */
export type CancelKind = 'cancelled' | 'refunded' | 'already_cancelled' | 'not_cancellable';

export interface CancelOutcome {
  kind: CancelKind;
  orderId: string;
  /** Units given back to inventory:<sku> by this delivery (0 unless kind is 'refunded'). */
  units: number;
  /** The order's status after the decision: cancelled, or the final status it kept. */
  status: string;
  published?: EventType;
}

async function cancel(
  redis: RedisClient,
  event: OrderEvent,
  log: Logger,
  retentionMs: number | undefined,
): Promise<Exclude<CancelResult, { outcome: 'payload_mismatch' }>> {
  let result: CancelResult;
  try {
    result = await cancelOrder(redis, event.order, event.cancelReason, new Date(), retentionMs);
  } catch (err) {
    if (err instanceof ScriptReplyError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    // As for reserve: inventory:<sku> is not a whole number; retried, and dead-lettered if nobody fixes it.
    if (err instanceof Error && err.name === 'ReplyError') throw new TransientError(`cannot give stock back: ${message}`, { cause: err });
    throw new TransientError(`redis unavailable: ${message}`, { cause: err });
  }
  if (result.outcome === 'payload_mismatch') throw payloadMismatch(event.order, result.fields, log);
  return result;
}

/**
 * Decides an order.cancel_requested message once (cancel-9.lua) and publishes order.cancelled,
 * again when it was cancelled before: the first delivery may have died between the script and
 * the confirm, and the notifier sends the notice once whatever the copies. A rejected or expired
 * order stays as it is and nothing is published.
 */
async function decideCancellation(deps: ProcessorDeps, event: OrderEvent, span?: Span): Promise<CancelOutcome> {
  const { order } = event;
  const log = forOrder(deps.log, order.id, span);
  const result = await cancel(deps.redis, event, log, deps.retentionMs);
  if (result.outcome === 'final') {
    log.info({ status: result.status }, 'order is final; the cancellation changes nothing');
    return { kind: 'not_cancellable', orderId: order.id, units: 0, status: result.status };
  }
  const kind: CancelKind = result.outcome === 'cancelled_before' ? 'already_cancelled' : result.units > 0 ? 'refunded' : 'cancelled';
  if (kind === 'already_cancelled') log.info('order cancelled before; publishing its cancellation again');
  else log.info({ units: result.outcome === 'cancelled' ? result.units : 0, sku: order.sku }, 'order cancelled');
  const type = routingKeys.cancelled;
  const { content, options } = encodeEvent(
    makeEvent(type, order, undefined, { cancelReason: event.cancelReason, occurredAt: event.occurredAt }),
    traceHeaders(span),
  );
  await deps.broker.publish(exchanges.topic, type, content, options);
  return { kind, orderId: order.id, units: result.outcome === 'cancelled' ? result.units : 0, status: 'cancelled', published: type };
}

/** Every message of orders.queue: a placement or a cancellation, each decided once per order id. */
export async function handleOrderMessage(
  deps: ProcessorDeps,
  msg: Message,
  span?: Span,
): Promise<{ placed: Outcome } | { cancel: CancelOutcome }> {
  const event = decodeEvent(msg.content, [routingKeys.placed, routingKeys.cancelRequested]);
  if (event.type === routingKeys.cancelRequested) return { cancel: await decideCancellation(deps, event, span) };
  return { placed: await decidePlacement(deps, event, span) };
}
