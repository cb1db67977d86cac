import { classify, type Verdict } from './classify.js';
import type { Signer } from './signing.js';
import {
  ATTR,
  ROOT_CONTEXT,
  SpanKind,
  endWithError,
  orderBindings,
  trace,
  traceHeaders,
  type Logger,
  type Order,
  type OrderEvent,
  type RejectReason,
  type Span,
} from '@order-pipeline/shared';

// Where a notification goes. A sender resolves once the notification is delivered and throws
// otherwise; retries and once-only bookkeeping belong to the caller (notifier.ts).

export interface Notification {
  orderId: string;
  type: 'order.created' | 'order.rejected' | 'order.cancelled';
  status: 'created' | 'rejected' | 'cancelled';
  /** Why it was rejected (out_of_stock, unknown_sku), or the client's reason for cancelling. */
  reason?: RejectReason | string;
  email?: string;
  /** The human-readable text. */
  message: string;
  /** The event's id: the webhook-id and Idempotency-Key, the same on every attempt (webhookIdOf). */
  webhookId: string;
  /** When the event happened (ISO time): the body's `timestamp`, the same on every attempt. */
  occurredAt: string;
  /** The order as the event carries it. */
  order: Order;
}

export interface Sender {
  channel: 'log' | 'webhook';
  /** `span`: the span handling the message, the parent of the send's own span. */
  send(n: Notification, span?: Span): Promise<void>;
}

/**
 * The key this process remembers an unrecorded send by: the order id for its first outcome,
 * `<id>/cancelled` for its cancellation (`/` is in no order id, so it never equals another order's key).
 */
export function idempotencyKeyOf(n: Pick<Notification, 'orderId' | 'type'>): string {
  return n.type === 'order.cancelled' ? `${n.orderId}/cancelled` : n.orderId;
}

/**
 * The event's webhook-id (and Idempotency-Key): `outcome_<id>` for the order's first outcome
 * (created or rejected: an order has one of them), `cancelled_<id>` for its cancellation, with the
 * order id in unpadded base64url. Encoded because an order id is the client's and may hold `.`
 * and `:`: the spec asks that the id signed in "<id>.<timestamp>.<body>" hold no `.`, and base64url
 * is safe in any header whatever the id holds. The two prefixes differ from the first letter, so
 * the event of one order never has the id of another order's event.
 */
export function webhookIdOf(orderId: string, type: Notification['type']): string {
  return `${type === 'order.cancelled' ? 'cancelled' : 'outcome'}_${Buffer.from(orderId, 'utf8').toString('base64url')}`;
}

/** The notification an order.created, order.rejected or order.cancelled event produces. */
export function notificationOf(event: OrderEvent): Notification {
  const { order } = event;
  const common = { webhookId: webhookIdOf(order.id, event.type as Notification['type']), occurredAt: event.occurredAt, order };
  if (event.type === 'order.cancelled') {
    return {
      ...common,
      orderId: order.id,
      type: 'order.cancelled',
      status: 'cancelled',
      ...(event.cancelReason ? { reason: event.cancelReason } : {}),
      ...(order.email ? { email: order.email } : {}),
      message: `Order ${order.id} cancelled${event.cancelReason ? `: ${event.cancelReason}` : ''}`,
    };
  }
  const created = event.type === 'order.created';
  return {
    ...common,
    orderId: order.id,
    type: created ? 'order.created' : 'order.rejected',
    status: created ? 'created' : 'rejected',
    ...(event.reason && !created ? { reason: event.reason } : {}),
    ...(order.email ? { email: order.email } : {}),
    message: created
      ? `Order ${order.id} confirmed: ${order.qty} x ${order.sku}`
      : `Order ${order.id} rejected: ${event.reason ?? 'unspecified'}`,
  };
}

/** Logs each notification as one line (the default when no webhook is configured). */
export function logSender(log: Logger): Sender {
  return {
    channel: 'log',
    send: async (n, span) => {
      // One line per notification: written without a child logger (same text as forOrder's).
      log.info({ ...orderBindings(n.orderId, span), type: n.type, email: n.email, text: n.message }, 'notification sent');
    },
  };
}

/** A failed attempt: what its answer (or the lack of one) means, see classify.ts. */
export class WebhookError extends Error {
  constructor(
    message: string,
    readonly verdict: Exclude<Verdict, { kind: 'delivered' }>,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'WebhookError';
  }
}

export interface WebhookOptions {
  timeoutMs?: number;
  /** Signs each request (NOTIFY_WEBHOOK_SECRET); without one, requests go unsigned. */
  signer?: Signer;
  /** The clock of webhook-timestamp (tests). */
  now?: () => number;
}

/**
 * The body a receiver gets, Standard Webhooks' {"type","timestamp","data"} with the notification
 * in `data`. The fields the body had before (orderId, status, reason, email, message) are kept at
 * the top level too, so a receiver written for them keeps working (docs/contract.md).
 */
export function webhookBody(n: Notification): string {
  const notice = {
    orderId: n.orderId,
    status: n.status,
    ...(n.reason ? { reason: n.reason } : {}),
    ...(n.email ? { email: n.email } : {}),
    message: n.message,
  };
  return JSON.stringify({ type: n.type, timestamp: n.occurredAt, data: { ...notice, order: n.order }, ...notice });
}

/** POSTs each notification, signed; an answer other than 2xx, or none within timeoutMs, throws WebhookError. */
export function webhookSender(url: string, { timeoutMs = 5000, signer, now = Date.now }: WebhookOptions = {}): Sender {
  const tracer = trace.getTracer('notifier');
  const target = new URL(url);
  const attributes = {
    'http.request.method': 'POST',
    'url.full': `${target.origin}${target.pathname}`,
    'server.address': target.hostname,
    'server.port': Number(target.port || (target.protocol === 'https:' ? 443 : 80)),
  };
  return {
    channel: 'webhook',
    // A CLIENT span per attempt; the receiver gets its context in `traceparent` (and `tracestate`).
    send: (n, parent) => {
      const span = tracer.startSpan(
        'POST',
        { kind: SpanKind.CLIENT, attributes: { ...attributes, [ATTR.orderId]: n.orderId } },
        parent ? trace.setSpan(ROOT_CONTEXT, parent) : ROOT_CONTEXT,
      );
      const body = webhookBody(n);
      // The attempt's own time (the event's is the body's `timestamp`): receivers refuse stale ones.
      const timestamp = Math.floor(now() / 1000);
      const signature = signer?.sign(n.webhookId, timestamp, body);
      const headers = traceHeaders(span, {
        'Content-Type': 'application/json',
        'webhook-id': n.webhookId,
        'webhook-timestamp': String(timestamp),
        ...(signature ? { 'webhook-signature': signature } : {}),
        'Idempotency-Key': n.webhookId,
      });
      return postNotification(url, timeoutMs, body, headers).then(
        (status) => {
          span.setAttribute('http.response.status_code', status);
          span.end();
        },
        (err: unknown) => {
          if (err instanceof WebhookError && err.status !== undefined) span.setAttribute('http.response.status_code', err.status);
          endWithError(span, err);
          throw err;
        },
      );
    },
  };
}

/** One POST of the notification; resolves with the 2xx status, throws WebhookError otherwise. */
async function postNotification(url: string, timeoutMs: number, body: string, headers: Record<string, string>): Promise<number> {
  let res: Response;
  try {
    // The receiver can drop a repeat (webhook-id): a send whose success we never recorded is sent again.
    // Redirects are not followed: a 3xx is the endpoint's answer (the URL wants updating).
    res = await fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const e = err as Error;
    if (e.name === 'TimeoutError') throw new WebhookError(`webhook did not answer within ${timeoutMs} ms`, { kind: 'retry' });
    const cause = (e.cause as Error | undefined)?.message;
    throw new WebhookError(`webhook unreachable: ${e.message}${cause ? ` (${cause})` : ''}`, { kind: 'retry' });
  }
  // Read the body either way so the connection goes back to the pool.
  const text = await res.text().catch(() => '');
  const verdict = classify(res.status, res.headers.get('retry-after'));
  if (verdict.kind === 'delivered') return res.status;
  throw new WebhookError(`webhook answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`, verdict, res.status);
}
