import { hash, randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import {
  HttpProblem,
  NotEnoughReplicasError,
  ID_REGEX,
  acceptOrders,
  canonicalOrder,
  claimOrders,
  createBatcher,
  encodeEvent,
  exchanges,
  orderMembers,
  forOrder,
  keys,
  orderRetentionMs,
  parseHistory,
  requestSpan,
  traceHeaders,
  makeEvent,
  releaseClaim,
  routingKeys,
  subjectOf,
  validateOrder,
  type Acceptance,
  type AcceptResult,
  type Broker,
  type Claim,
  type ClaimResult,
  type Config,
  type Logger,
  type Metrics,
  type Order,
  type RedisClient,
} from '@order-pipeline/shared';
import type { Admission } from './admission.js';
import { parseJson, readBody, requireJson } from './body.js';

// POST /orders: validate, claim the id in Redis (one round trip), publish with a broker confirm,
// record the acceptance (one round trip). Bad input is refused before anything is written. The
// round trips are shared: claims (and acceptances) of one event-loop turn go as one script call.

export const ORDER_RESULTS = ['accepted', 'replayed', 'in_flight', 'mismatch', 'invalid', 'unavailable'] as const;
export type OrderResult = (typeof ORDER_RESULTS)[number];

export interface OrderMetrics {
  orders: (result: OrderResult) => void;
  publishConfirm: (seconds: number, outcome: 'confirmed' | 'failed') => void;
}

export function createOrderMetrics(metrics: Metrics): OrderMetrics {
  const orders = metrics.counter('gateway_orders_total', 'POST /orders requests by outcome', ['result'] as const);
  // Every outcome is exported from the start, so a rate() over it never misses the first one.
  for (const result of ORDER_RESULTS) orders.inc({ result }, 0);
  const confirm = metrics.histogram(
    'gateway_publish_confirm_seconds',
    'Time from publishing an order to the broker confirm (or the failure)',
    ['outcome'] as const,
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
  );
  // Labelled children made once: each request then skips prom-client's label lookup and merge.
  const byResult = new Map(ORDER_RESULTS.map((result) => [result, orders.labels({ result })]));
  const confirmed = confirm.labels({ outcome: 'confirmed' });
  const failed = confirm.labels({ outcome: 'failed' });
  return {
    orders: (result) => byResult.get(result)?.inc(),
    publishConfirm: (seconds, outcome) => (outcome === 'confirmed' ? confirmed : failed).observe(seconds),
  };
}

export interface OrderDeps {
  config: Config;
  redis: RedisClient;
  broker: Broker;
  log: Logger;
  metrics: OrderMetrics;
  idempotency: IdempotencySteps;
  /** The backlog's verdict (admission.ts); every order is admitted without one. */
  admission?: Pick<Admission, 'check'>;
}

/** The two idempotency steps of one request; see idempotencySteps. */
export interface IdempotencySteps {
  claim(claim: Claim): Promise<ClaimResult>;
  accept(acceptance: Acceptance): Promise<AcceptResult>;
}

/**
 * Claim and accept, each batched per event-loop turn (createBatcher): under load one script call
 * carries every concurrent request's claim, with the same per-id outcome as one call each.
 */
export function idempotencySteps(redis: RedisClient, config: Config): IdempotencySteps {
  const leaseMs = claimLeaseMs(config);
  return {
    claim: createBatcher((claims: Claim[]) => claimOrders(redis, leaseMs, claims)),
    accept: createBatcher((acceptances: Acceptance[]) =>
      acceptOrders(redis, config.idempotencyTtlSeconds, new Date(), acceptances, orderRetentionMs(config)),
    ),
  };
}

/**
 * sha256 (hex) of the canonical order: the same payload gives the same fingerprint whatever its key
 * order. One-shot crypto.hash: a Hash object per request cost more than the digest itself.
 */
export function fingerprint(order: Order): string {
  return hash('sha256', JSON.stringify(canonicalOrder(order)), 'hex');
}

/**
 * How long an in-flight claim holds an id: the longest publish wait plus slack for the Redis
 * round trips. A gateway that dies between claim and publish locks the id no longer than this.
 */
export function claimLeaseMs(config: Config): number {
  return config.publishTimeoutMs + 3000;
}

export function orderLocation(id: string): string {
  return `/orders/${id}`;
}

const NOT_REPLICATED = 'The order store could not confirm that enough replicas hold the order; retry shortly with the same id';

function unavailable(detail: string): HttpProblem {
  return new HttpProblem(503, 'Service Unavailable', detail, {}, { 'Retry-After': '1' });
}

/**
 * How long a client should wait while the broker blocks publishing: an alarm clears only once
 * memory is freed (consumers drain) or disk space returns, seconds rather than a moment.
 */
export const BLOCKED_RETRY_AFTER_SECONDS = 5;

/**
 * 503 Broker Blocked, for every route that publishes: a blocked connection takes the publish and
 * confirms it only once the alarm clears, so waiting for it would hold the request for
 * PUBLISH_TIMEOUT_MS and then answer 503 anyway. Thrown before anything is written.
 */
export function brokerBlocked(): HttpProblem {
  return new HttpProblem(
    503,
    'Broker Blocked',
    'The message broker refuses new messages for now (a memory or disk alarm); retry later',
    {},
    { 'Retry-After': String(BLOCKED_RETRY_AFTER_SECONDS) },
  );
}

/** 400, 413, 415 are bad input; the rest map one to one. */
export function resultOf(status: number): OrderResult | undefined {
  switch (status) {
    case 202:
      return 'accepted';
    case 200:
      return 'replayed';
    case 409:
      return 'in_flight';
    case 422:
      return 'mismatch';
    case 400:
    case 413:
    case 415:
      return 'invalid';
    case 503:
      return 'unavailable';
    default:
      return undefined;
  }
}

export async function placeOrder(ctx: Context, deps: OrderDeps): Promise<void> {
  const { config, redis, broker, log, metrics, idempotency } = deps;

  requireJson(ctx.req);
  const parsed = parseJson(await readBody(ctx.req));
  const valid = validateOrder(parsed);
  if (!valid.ok) throw new HttpProblem(400, 'Invalid Order', 'The order does not match its schema', { errors: valid.errors });
  const order = canonicalOrder(valid.value);
  // Tags the request's span with the order id; the logger carries orderId and traceId.
  const span = requestSpan(ctx);
  // The caller's token subject (auth on): logged with the request, recorded as the order's placedBy.
  const placedBy = subjectOf(ctx);
  const olog = placedBy === undefined ? forOrder(log, order.id, span) : forOrder(log, order.id, span).child({ sub: placedBy });

  // Refuse before claiming: a claim we could not publish would only have to be released again.
  if (!broker.isConnected()) {
    olog.warn('broker not connected; answering 503');
    throw unavailable('The message broker is not reachable; retry shortly');
  }
  if (broker.isBlocked()) {
    olog.warn('broker blocks publishing (resource alarm); answering 503');
    throw brokerBlocked();
  }
  // A backlog the processors could not drain within the order's time to live: a 202 now would
  // be a promise the pipeline cannot keep (the order would be expired).
  const admitted = deps.admission?.check();
  if (admitted && !admitted.admit) {
    olog.debug({ backlog: admitted.backlog, reason: admitted.reason }, 'backlog too long; answering 503');
    throw new HttpProblem(503, 'Overloaded', admitted.detail, {}, { 'Retry-After': String(admitted.retryAfterSeconds) });
  }

  const idempKey = keys.idempotency(order.id);
  const fp = fingerprint(order);
  const token = randomUUID();
  let claim: ClaimResult;
  try {
    claim = await idempotency.claim({ id: order.id, fingerprint: fp, token });
  } catch (err) {
    if (err instanceof NotEnoughReplicasError) {
      // The claim is written but may not survive a failover: nothing is published on it. Ours is
      // released so the client's retry is claimed at once; if the release fails too, the claim
      // lapses with its lease (the retry gets 409 until then).
      olog.warn({ err: err.message }, 'idempotency claim not replicated; releasing it and answering 503');
      await releaseClaim(redis, order.id, token).catch((releaseErr: unknown) => {
        olog.warn({ err: (releaseErr as Error).message }, 'could not release the claim; it lapses with its lease');
      });
      throw unavailable(NOT_REPLICATED);
    }
    olog.warn({ err: (err as Error).message }, 'idempotency claim failed; answering 503');
    throw unavailable('The order store is not reachable; retry shortly');
  }

  switch (claim.outcome) {
    case 'replay': {
      const original = JSON.parse(claim.response) as Record<string, unknown>;
      ctx.status = 200;
      ctx.set('Idempotent-Replayed', 'true');
      ctx.set('Location', orderLocation(order.id));
      ctx.body = { ...original, duplicate: true, message: `Duplicate order: ${order.id}` };
      return;
    }
    case 'mismatch':
      throw new HttpProblem(422, 'Idempotency Key Reused', `Order ${order.id} was already placed with a different payload`);
    case 'in_flight': {
      const retryAfter = Math.max(1, Math.ceil(claim.leaseLeftMs / 1000));
      throw new HttpProblem(
        409,
        'Order In Flight',
        `The first request for order ${order.id} is still being processed; retry in ${retryAfter} s`,
        {},
        { 'Retry-After': String(retryAfter) },
      );
    }
    case 'unreadable':
      // Not JSON, or not a string: written by something other than this gateway. Not transient,
      // so not a 503; the other requests of the same batch are unaffected.
      olog.error({ key: idempKey }, 'idempotency record is unreadable; answering 500');
      throw new HttpProblem(500, 'Internal Server Error', `The idempotency record of order ${order.id} is unreadable`);
    case 'claimed':
      break;
  }

  // The message's publish span (and so the processor's) continues the request's trace.
  const { content, options } = encodeEvent(makeEvent(routingKeys.placed, order), traceHeaders(span));
  const started = process.hrtime.bigint();
  try {
    await broker.publish(exchanges.direct, routingKeys.placed, content, options, config.publishTimeoutMs);
    metrics.publishConfirm(Number(process.hrtime.bigint() - started) / 1e9, 'confirmed');
  } catch (err) {
    metrics.publishConfirm(Number(process.hrtime.bigint() - started) / 1e9, 'failed');
    olog.warn({ err: (err as Error).message }, 'publish failed; releasing the id and answering 503');
    // Only our own in-flight claim is deleted, so the client's retry is accepted at once. A
    // timed-out message may still arrive later: the processor's once-only check absorbs it.
    await releaseClaim(redis, order.id, token).catch((releaseErr: unknown) => {
      olog.warn({ err: (releaseErr as Error).message }, 'could not release the claim; it lapses with its lease');
    });
    throw unavailable('The order could not be handed to the message broker; retry shortly');
  }

  // The 202 body, stored in the record and replayed from it: the same text as JSON.stringify of
  // { id, sku, qty, email?, status, message }, written out (orderMembers) rather than serialized.
  const response = `{${orderMembers(order)},"status":"accepted","message":${JSON.stringify(`Order received: ${order.id}`)}}`;
  let accepted: AcceptResult;
  try {
    accepted = await idempotency.accept({
      id: order.id,
      sku: order.sku,
      qty: order.qty,
      email: order.email,
      token,
      fingerprint: fp,
      response,
      placedBy,
    });
  } catch (err) {
    if (err instanceof NotEnoughReplicasError) {
      // Recorded, but a failover could still lose the record: no 202 on it. The order is in the
      // broker and is processed once; the client's retry is answered from the record (200) or,
      // if a failover lost it, claims and publishes a copy the processor absorbs.
      olog.warn({ err: err.message }, 'order published but its acceptance is not replicated; answering 503');
      throw unavailable(NOT_REPLICATED);
    }
    // The broker confirmed, but nothing says so in Redis: a 202 now would name an order that
    // GET /orders/{id} and its cancel answer 404 until the processor gets to it. So no 202 without
    // the record, as with an unreplicated one. The message is durable and the processor records
    // the order itself; our claim is released (when Redis allows) so the client's retry claims,
    // publishes a copy the processor absorbs, and is answered 202 from a record.
    olog.warn({ err: (err as Error).message }, 'order published but its acceptance was not recorded; answering 503');
    await releaseClaim(redis, order.id, token).catch((releaseErr: unknown) => {
      olog.warn({ err: (releaseErr as Error).message }, 'could not release the claim; it lapses with its lease');
    });
    throw unavailable('The order store could not record the order; retry shortly with the same id');
  }
  // Nothing was recorded for this request: answering 202 would let two payloads of one id both be
  // accepted. Its published copy is refused by the processor if its payload differs from the one
  // recorded, and absorbed as a duplicate if it is the same.
  if (accepted.outcome === 'not_ours') {
    olog.warn('claim lapsed before the acceptance and another request took the id; answering 409');
    throw new HttpProblem(
      409,
      'Order Claim Lost',
      `The claim of this request on order ${order.id} lapsed before the order was recorded, and another request took the id: ` +
        'this request was not accepted. Retry to learn the outcome of the order',
      {},
      // The other request is answered within its own publish timeout; by then a retry is replayed.
      { 'Retry-After': '1' },
    );
  }
  if (accepted.outcome === 'payload_mismatch') {
    olog.warn('the order is recorded with a different payload; answering 422');
    // The id already stands for another payload: the same answer as a claim that finds it so.
    throw new HttpProblem(
      422,
      'Idempotency Key Reused',
      `Order ${order.id} is already recorded with a different payload: this request was not accepted`,
    );
  }
  olog.debug('order accepted');
  ctx.status = 202;
  ctx.set('Location', orderLocation(order.id));
  ctx.type = 'application/json';
  ctx.body = response;
}

function notificationView(n: Record<string, string>): Record<string, unknown> {
  return { status: n.status, attempts: Number(n.attempts ?? 0), ...(n.sentAt ? { sentAt: n.sentAt } : {}) };
}

/** `cancelling` while a confirmed cancellation request waits for the processor (cancelRequestedAt set). */
function statusOf(order: Record<string, string>): string | undefined {
  if (order.cancelRequestedAt && (order.status === 'accepted' || order.status === 'created')) return 'cancelling';
  return order.status;
}

export function orderView(
  order: Record<string, string>,
  notification: Record<string, string>,
  cancellation: Record<string, string>,
): Record<string, unknown> {
  const view: Record<string, unknown> = { id: order.id, sku: order.sku, qty: Number(order.qty), status: statusOf(order) };
  if (order.reason) view.reason = order.reason;
  if (order.cancelReason) view.cancelReason = order.cancelReason;
  if (order.cancelRequestedAt) view.cancelRequestedAt = order.cancelRequestedAt;
  if (order.cancelledAt) view.cancelledAt = order.cancelledAt;
  if (order.email) view.email = order.email;
  if (order.placedBy) view.placedBy = order.placedBy;
  if (order.cancelRequestedBy) view.cancelRequestedBy = order.cancelRequestedBy;
  const notifications: Record<string, unknown> = {};
  if (notification.status) {
    view.notification = notificationView(notification);
    // The first outcome's record is the created or rejected notice, whichever the order got.
    // Only a rejected order has a reason; a cancelled one was created (or never decided: no notice).
    const first = order.reason ? 'rejected' : 'created';
    notifications[first] = view.notification;
  }
  if (cancellation.status) notifications.cancelled = notificationView(cancellation);
  if (Object.keys(notifications).length > 0) view.notifications = notifications;
  view.createdAt = order.createdAt;
  view.updatedAt = order.updatedAt ?? order.createdAt;
  return view;
}

export async function getOrder(ctx: Context, id: string, deps: Pick<OrderDeps, 'redis' | 'log'>): Promise<void> {
  if (!ID_REGEX.test(id)) {
    throw new HttpProblem(400, 'Invalid Order Id', 'An order id is 1-64 characters of A-Z a-z 0-9 _ . : -');
  }
  let replies: [Error | null, unknown][] | null;
  try {
    // One round trip, one instant: the order and its notifications as of the same moment.
    replies = await deps.redis
      .multi()
      .hgetall(keys.order(id))
      .hgetall(keys.notification(id))
      .hgetall(keys.cancellationNotification(id))
      .lrange(keys.history(id), 0, -1)
      .exec();
  } catch (err) {
    forOrder(deps.log, id, requestSpan(ctx)).warn({ err: (err as Error).message }, 'order lookup failed; answering 503');
    throw unavailable('The order store is not reachable; retry shortly');
  }
  const [orderReply, notificationReply, cancellationReply, historyReply] = replies ?? [];
  const failed = orderReply?.[0] ?? notificationReply?.[0] ?? cancellationReply?.[0] ?? historyReply?.[0];
  if (!orderReply || !notificationReply || !cancellationReply || !historyReply || failed) {
    forOrder(deps.log, id, requestSpan(ctx)).warn({ err: failed?.message }, 'order lookup failed; answering 503');
    throw unavailable('The order store is not reachable; retry shortly');
  }
  const order = orderReply[1] as Record<string, string>;
  if (Object.keys(order).length === 0) throw new HttpProblem(404, 'Order Not Found', `No order with id ${id}`);
  ctx.body = {
    ...orderView(order, notificationReply[1] as Record<string, string>, cancellationReply[1] as Record<string, string>),
    history: parseHistory(historyReply[1] as string[]),
  };
}
