import { isoAt } from '../clock.js';
import { DEFAULT_ORDER_RETENTION_MS } from '../config.js';
import { keys } from '../keys.js';
import type { Order } from '../messages.js';
import type { RedisClient } from '../redis.js';
import { ScriptReplyError, arrayReply, codeReply, countReply, stringReply, scripts } from './commands.js';
import { confirmed } from './replication.js';
import type { PayloadField, PayloadMismatch } from './orders.js';

// An order's cancellation, one wrapper per script: cancel-9.lua (the processor's once-only
// decision) and cancel-requested-2.lua (the gateway's record of a confirmed request). Each lays
// out its script's KEYS and ARGV and checks the reply (ScriptReplyError when it is unexpected).

/** cancel-9.lua's answer. */
export type CancelResult =
  /** Cancelled now; `units` went back to inventory:<sku> (0 when the order was not decided yet). */
  | { outcome: 'cancelled'; units: number }
  /** Cancelled before (a redelivery, or another cancel of the order): nothing changed. */
  | { outcome: 'cancelled_before' }
  /** Final without a reservation (rejected, expired): nothing changed. */
  | { outcome: 'final'; status: string }
  | PayloadMismatch;

const PAYLOAD_FIELDS: readonly string[] = ['sku', 'qty', 'email'] satisfies PayloadField[];

/**
 * Cancels the order once: an undecided one (no status, or accepted) becomes cancelled and its
 * placement reserves nothing; a created one gets its qty back on inventory:<sku>. Counted in
 * stats:orders:cancelled. Rejects with a Redis ReplyError when the order is created and
 * inventory:<sku> is not a whole number (nothing is written then).
 */
export async function cancelOrder(
  redis: RedisClient,
  order: Order,
  reason: string | undefined,
  now: Date,
  retentionMs: number = DEFAULT_ORDER_RETENTION_MS,
): Promise<CancelResult> {
  const reply = arrayReply(
    'cancel',
    await confirmed(redis, 'cancel', () =>
      scripts(redis).cancel(
        keys.order(order.id),
        keys.inventory(order.sku),
        keys.stats.cancelled,
        keys.history(order.id),
        keys.ordersIndex,
        keys.ordersBySku(order.sku),
        keys.ordersByStatus('accepted'),
        keys.ordersByStatus('created'),
        keys.ordersByStatus('cancelled'),
        order.id,
        order.sku,
        order.qty,
        order.email ?? '',
        reason ?? '',
        isoAt(now.getTime()),
        now.getTime(),
        retentionMs,
      ),
    ),
    2,
  );
  const code = codeReply('cancel', reply[0], [0, 1, 2, 3] as const, reply);
  switch (code) {
    case 0:
      return { outcome: 'cancelled', units: countReply('cancel', reply[1], reply) };
    case 1:
      return { outcome: 'cancelled_before' };
    case 3:
      return { outcome: 'final', status: stringReply('cancel', reply[1], reply) };
    case 2: {
      const fields = reply[1];
      if (!Array.isArray(fields) || fields.length === 0 || !fields.every((f) => typeof f === 'string' && PAYLOAD_FIELDS.includes(f))) {
        throw new ScriptReplyError('cancel', reply);
      }
      return { outcome: 'payload_mismatch', fields: fields as PayloadField[] };
    }
  }
}

/** cancel-requested-2.lua's answer. `status` is the order's: accepted, created or cancelled. */
export type CancelRequestResult =
  /** This request is the first recorded; `reason` is the one recorded ('' for none). */
  | { outcome: 'recorded'; status: string; reason: string }
  /** Requested before: `reason` is the one recorded first ('' for none). */
  | { outcome: 'requested_before'; status: string; reason: string }
  /** The order became final meanwhile (rejected, expired). */
  | { outcome: 'final'; status: string }
  /** No such order any more. */
  | { outcome: 'not_found' };

/**
 * Records a confirmed cancellation request on order:<id> (cancelRequestedAt, cancelReason), once.
 * `by`: the caller's token subject (auth on), kept as cancelRequestedBy and on the history entry.
 */
export async function recordCancelRequest(
  redis: RedisClient,
  orderId: string,
  reason: string | undefined,
  now: Date,
  by?: string,
): Promise<CancelRequestResult> {
  const reply = arrayReply(
    'cancelRequested',
    await confirmed(redis, 'cancelRequested', () =>
      scripts(redis).cancelRequested(keys.order(orderId), keys.history(orderId), reason ?? '', isoAt(now.getTime()), by ?? ''),
    ),
    3,
  );
  const code = codeReply('cancelRequested', reply[0], [0, 1, 3, 4] as const, reply);
  const status = stringReply('cancelRequested', reply[1], reply);
  const recorded = stringReply('cancelRequested', reply[2], reply);
  switch (code) {
    case 0:
      return { outcome: 'recorded', status, reason: recorded };
    case 1:
      return { outcome: 'requested_before', status, reason: recorded };
    case 3:
      return { outcome: 'final', status };
    case 4:
      return { outcome: 'not_found' };
  }
}
