import type { Context } from 'koa';
import {
  HttpProblem,
  ID_REGEX,
  encodeEvent,
  exchanges,
  forOrder,
  keys,
  makeEvent,
  recordCancelRequest,
  requestSpan,
  routingKeys,
  subjectOf,
  traceHeaders,
  validateCancelRequest,
  type CancelRequestResult,
  type Metrics,
  type Order,
} from '@order-pipeline/shared';
import { parseJson, readBody, requireJson } from './body.js';
import { brokerBlocked, orderLocation, type OrderDeps } from './orders.js';

// POST /orders/{id}/cancel: validate, read the order (one round trip), publish
// order.cancel_requested with a broker confirm, then record the request (cancel-requested-2.lua).
// The processor decides the cancellation once (cancel-9.lua); the gateway only answers from what
// the order hash says. Bad input is refused before anything is read or written.

export const CANCEL_RESULTS = ['accepted', 'replayed', 'not_cancellable', 'not_found', 'invalid', 'unavailable'] as const;
export type CancelResultLabel = (typeof CANCEL_RESULTS)[number];

/** gateway_cancels_total{result}: POST /orders/{id}/cancel by outcome (every label from the start). */
export function createCancelMetrics(metrics: Metrics): (result: CancelResultLabel) => void {
  const cancels = metrics.counter('gateway_cancels_total', 'POST /orders/{id}/cancel requests by outcome', ['result'] as const);
  for (const result of CANCEL_RESULTS) cancels.inc({ result }, 0);
  return (result) => cancels.inc({ result });
}

export function cancelResultOf(status: number): CancelResultLabel | undefined {
  switch (status) {
    case 202:
      return 'accepted';
    case 200:
      return 'replayed';
    case 409:
      return 'not_cancellable';
    case 404:
      return 'not_found';
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

function unavailable(detail: string): HttpProblem {
  return new HttpProblem(503, 'Service Unavailable', detail, {}, { 'Retry-After': '1' });
}

function notCancellable(id: string, status: string): HttpProblem {
  return new HttpProblem(409, 'Order Not Cancellable', `Order ${id} is ${status}: there is nothing to cancel`);
}

/** The statuses after which a cancellation changes nothing (no reservation to give back). */
const FINAL = new Set(['rejected', 'expired']);

/** True when the request has no body: no Content-Length (or 0) and no Transfer-Encoding. */
function hasNoBody(ctx: Context): boolean {
  const length = ctx.req.headers['content-length'];
  return ctx.req.headers['transfer-encoding'] === undefined && (length === undefined || length.trim() === '0');
}

/** The cancel reason of the body, undefined for none; 400, 413, 415 problems like POST /orders. */
async function readReason(ctx: Context): Promise<string | undefined> {
  if (hasNoBody(ctx)) return undefined;
  requireJson(ctx.req);
  const text = await readBody(ctx.req);
  // A chunked body may still be empty: no reason either.
  if (text === '') return undefined;
  const valid = validateCancelRequest(parseJson(text));
  if (!valid.ok) {
    throw new HttpProblem(400, 'Invalid Cancel Request', 'The body does not match the cancel request schema', { errors: valid.errors });
  }
  return valid.value.reason;
}

function replay(ctx: Context, id: string, status: 'cancelling' | 'cancelled', reason: string): void {
  ctx.status = 200;
  ctx.set('Idempotent-Replayed', 'true');
  ctx.set('Location', orderLocation(id));
  ctx.body = {
    id,
    status,
    ...(reason ? { reason } : {}),
    message: status === 'cancelled' ? `Order already cancelled: ${id}` : `Cancellation already requested: ${id}`,
    duplicate: true,
  };
}

export async function cancelOrderRequest(
  ctx: Context,
  id: string,
  deps: Pick<OrderDeps, 'config' | 'redis' | 'broker' | 'log'>,
): Promise<void> {
  const { config, redis, broker, log } = deps;
  if (!ID_REGEX.test(id)) {
    throw new HttpProblem(400, 'Invalid Order Id', 'An order id is 1-64 characters of A-Z a-z 0-9 _ . : -');
  }
  const reason = await readReason(ctx);
  const span = requestSpan(ctx);
  // The caller's token subject (auth on): logged, and recorded with the request (cancelRequestedBy).
  const by = subjectOf(ctx);
  const olog = by === undefined ? forOrder(log, id, span) : forOrder(log, id, span).child({ sub: by });

  if (!broker.isConnected()) {
    olog.warn('broker not connected; answering 503');
    throw unavailable('The message broker is not reachable; retry shortly');
  }
  // Like POST /orders: refused at once, before the order is read or anything is written (the
  // request is recorded only after the broker confirmed its message).
  if (broker.isBlocked()) {
    olog.warn('broker blocks publishing (resource alarm); answering 503');
    throw brokerBlocked();
  }

  let fields: (string | null)[];
  try {
    fields = await redis.hmget(keys.order(id), 'status', 'sku', 'qty', 'email', 'cancelRequestedAt', 'cancelReason');
  } catch (err) {
    olog.warn({ err: (err as Error).message }, 'order lookup failed; answering 503');
    throw unavailable('The order store is not reachable; retry shortly');
  }
  const [status, sku, qty, email, requestedAt, recordedReason] = fields;
  if (!status || !sku || !qty) throw new HttpProblem(404, 'Order Not Found', `No order with id ${id}`);
  if (status === 'cancelled') return replay(ctx, id, 'cancelled', recordedReason ?? '');
  if (FINAL.has(status)) throw notCancellable(id, status);
  // Requested before and confirmed by the broker (the mark is written only after the confirm).
  if (requestedAt) return replay(ctx, id, 'cancelling', recordedReason ?? '');

  const order: Order = { id, sku, qty: Number(qty), ...(email ? { email } : {}) };
  const { content, options } = encodeEvent(
    makeEvent(routingKeys.cancelRequested, order, undefined, { cancelReason: reason }),
    traceHeaders(span),
  );
  try {
    await broker.publish(exchanges.direct, routingKeys.cancelRequested, content, options, config.publishTimeoutMs);
  } catch (err) {
    // Nothing was marked yet, so nothing to undo: a timed-out message that still arrives cancels
    // the order, which is what the client asked for; its retry finds it cancelling or cancelled.
    olog.warn({ err: (err as Error).message }, 'publishing the cancellation failed; answering 503');
    throw unavailable('The cancellation could not be handed to the message broker; retry shortly');
  }

  let recorded: CancelRequestResult;
  try {
    recorded = await recordCancelRequest(redis, id, reason, new Date(), by);
  } catch (err) {
    // The broker confirmed, so the processor cancels the order whatever this write does; but a 202
    // stands for a request GET /orders/{id} shows as cancelling, as with POST /orders. The retry
    // publishes again (the processor decides once) or finds the order cancelled (200).
    olog.warn({ err: (err as Error).message }, 'cancellation published but its request was not recorded; answering 503');
    throw unavailable('The order store could not record the cancellation; retry shortly');
  }
  if (recorded.outcome === 'final') throw notCancellable(id, recorded.status);
  if (recorded.outcome === 'requested_before') {
    return replay(ctx, id, recorded.status === 'cancelled' ? 'cancelled' : 'cancelling', recorded.reason);
  }
  olog.info({ reason }, 'cancellation requested');
  ctx.status = 202;
  ctx.set('Location', orderLocation(id));
  ctx.body = { id, status: 'cancelling', ...(reason ? { reason } : {}), message: `Cancellation requested: ${id}` };
}
