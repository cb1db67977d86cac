import {
  ATTR,
  ROOT_CONTEXT,
  SpanKind,
  endWithError,
  forOrder,
  trace,
  traceHeaders,
  type Logger,
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
}

export interface Sender {
  channel: 'log' | 'webhook';
  /** `span`: the span handling the message, the parent of the send's own span. */
  send(n: Notification, span?: Span): Promise<void>;
}

/**
 * The webhook's Idempotency-Key: the order id for its first outcome (as before), `<id>/cancelled`
 * for its cancellation (`/` is in no order id, so it never equals another order's key).
 */
export function idempotencyKeyOf(n: Pick<Notification, 'orderId' | 'type'>): string {
  return n.type === 'order.cancelled' ? `${n.orderId}/cancelled` : n.orderId;
}

/** The notification an order.created, order.rejected or order.cancelled event produces. */
export function notificationOf(event: OrderEvent): Notification {
  const { order } = event;
  if (event.type === 'order.cancelled') {
    return {
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
      forOrder(log, n.orderId, span).info({ type: n.type, email: n.email, text: n.message }, 'notification sent');
    },
  };
}

export class WebhookError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'WebhookError';
  }
}

/** POSTs each notification as JSON; any answer but 2xx, or none within timeoutMs, is a failure. */
export function webhookSender(url: string, { timeoutMs = 5000 }: { timeoutMs?: number } = {}): Sender {
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
      const headers = traceHeaders(span, { 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKeyOf(n) });
      return postNotification(url, timeoutMs, n, headers).then(
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
async function postNotification(url: string, timeoutMs: number, n: Notification, headers: Record<string, string>): Promise<number> {
  const body = {
    orderId: n.orderId,
    type: n.type,
    status: n.status,
    ...(n.reason ? { reason: n.reason } : {}),
    ...(n.email ? { email: n.email } : {}),
    message: n.message,
  };
  let res: Response;
  try {
    // The receiver can drop a repeat (Idempotency-Key): a send whose success we never recorded
    // is sent again.
    res = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const e = err as Error;
    if (e.name === 'TimeoutError') throw new WebhookError(`webhook did not answer within ${timeoutMs} ms`);
    const cause = (e.cause as Error | undefined)?.message;
    throw new WebhookError(`webhook unreachable: ${e.message}${cause ? ` (${cause})` : ''}`);
  }
  // Read the body either way so the connection goes back to the pool.
  const text = await res.text().catch(() => '');
  if (!res.ok) throw new WebhookError(`webhook answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`, res.status);
  return res.status;
}
