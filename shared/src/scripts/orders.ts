import { isoAt } from '../clock.js';
import { DEFAULT_ORDER_RETENTION_MS } from '../config.js';
import { keys } from '../keys.js';
import type { Order, RejectReason } from '../messages.js';
import type { RedisClient } from '../redis.js';
import { ScriptReplyError, arrayReply, codeReply, stringReply, scripts } from './commands.js';
import { confirmed } from './replication.js';

// The processor's once-only decisions on an order, one wrapper per script: reserve-10.lua and
// expire-order-6.lua. Each lays out its script's KEYS and ARGV and checks the reply
// (ScriptReplyError when it is unexpected).

/** The order was decided before (a redelivery or duplicate copy, or an expired order): nothing changed. */
export interface DecidedBefore {
  outcome: 'decided_before';
  /** Its status in order:<id>: created, rejected, expired, ... */
  status: string;
  /** Its reason ('' for none), e.g. out_of_stock for a rejected order. */
  reason: string;
}

/**
 * The copy's payload differs from the one order:<id> records (the gateway's acceptance, or the
 * processor's fill-in from an earlier copy): another request's copy of the id. Nothing changed.
 */
export interface PayloadMismatch {
  outcome: 'payload_mismatch';
  /** The fields that differ. */
  fields: PayloadField[];
}
export type PayloadField = 'sku' | 'qty' | 'email';
const PAYLOAD_FIELDS: readonly string[] = ['sku', 'qty', 'email'] satisfies PayloadField[];

/** reserve-10.lua's answer. */
export type ReserveResult = { outcome: 'created' } | { outcome: 'rejected'; reason: RejectReason } | DecidedBefore | PayloadMismatch;

const REJECT_REASONS: readonly string[] = ['out_of_stock', 'unknown_sku'] satisfies RejectReason[];

/**
 * Decides the order once: reserves its stock (created) or rejects it (unknown_sku,
 * out_of_stock). Rejects with a Redis ReplyError when inventory:<sku> is not a whole number
 * (nothing is written then).
 */
export async function reserveOrder(
  redis: RedisClient,
  order: Order,
  now: Date,
  retentionMs: number = DEFAULT_ORDER_RETENTION_MS,
): Promise<ReserveResult> {
  const reply = arrayReply(
    'reserve',
    await confirmed(redis, 'reserve', () =>
      scripts(redis).reserve(
        keys.order(order.id),
        keys.inventory(order.sku),
        keys.processedCount,
        keys.stats.rejected,
        keys.history(order.id),
        keys.ordersIndex,
        keys.ordersBySku(order.sku),
        keys.ordersByStatus('accepted'),
        keys.ordersByStatus('created'),
        keys.ordersByStatus('rejected'),
        order.id,
        order.sku,
        order.qty,
        order.email ?? '',
        isoAt(now.getTime()),
        now.getTime(),
        retentionMs,
      ),
    ),
  );
  const code = codeReply('reserve', reply[0], [0, 1, 2] as const, reply);
  if (code === 2) return payloadMismatch('reserve', reply);
  if (reply.length !== 3) throw new ScriptReplyError('reserve', reply);
  const status = stringReply('reserve', reply[1], reply);
  const reason = stringReply('reserve', reply[2], reply);
  if (code === 1) return { outcome: 'decided_before', status, reason };
  if (status === 'created' && reason === '') return { outcome: 'created' };
  if (status === 'rejected' && REJECT_REASONS.includes(reason)) return { outcome: 'rejected', reason: reason as RejectReason };
  throw new ScriptReplyError('reserve', reply);
}

/** expire-order-6.lua's answer. */
export type ExpireResult = { outcome: 'expired' } | DecidedBefore | PayloadMismatch;

/** Marks an undecided order expired; a decided one (created, rejected, expired) is left as it is. */
export async function expireOrder(
  redis: RedisClient,
  order: Order,
  now: Date,
  retentionMs: number = DEFAULT_ORDER_RETENTION_MS,
): Promise<ExpireResult> {
  const reply = arrayReply(
    'expireOrder',
    await confirmed(redis, 'expireOrder', () =>
      scripts(redis).expireOrder(
        keys.order(order.id),
        keys.history(order.id),
        keys.ordersIndex,
        keys.ordersBySku(order.sku),
        keys.ordersByStatus('accepted'),
        keys.ordersByStatus('expired'),
        order.id,
        order.sku,
        order.qty,
        order.email ?? '',
        isoAt(now.getTime()),
        now.getTime(),
        retentionMs,
      ),
    ),
  );
  const code = codeReply('expireOrder', reply[0], [0, 1, 2] as const, reply);
  if (code === 2) return payloadMismatch('expireOrder', reply);
  if (reply.length !== 3) throw new ScriptReplyError('expireOrder', reply);
  const status = stringReply('expireOrder', reply[1], reply);
  const reason = stringReply('expireOrder', reply[2], reply);
  if (code === 1) return { outcome: 'decided_before', status, reason };
  if (status === 'expired' && reason === '') return { outcome: 'expired' };
  throw new ScriptReplyError('expireOrder', reply);
}

function payloadMismatch(script: string, reply: unknown[]): PayloadMismatch {
  const fields = reply[1];
  if (
    reply.length !== 2 ||
    !Array.isArray(fields) ||
    fields.length === 0 ||
    !fields.every((f) => typeof f === 'string' && PAYLOAD_FIELDS.includes(f))
  ) {
    throw new ScriptReplyError(script, reply);
  }
  return { outcome: 'payload_mismatch', fields: fields as PayloadField[] };
}
