import { isoAt } from '../clock.js';
import { keys } from '../keys.js';
import { ID_REGEX } from '../messages.js';
import type { RedisClient } from '../redis.js';
import { ScriptReplyError, arrayReply, codeReply, countReply, scripts, stringReply } from './commands.js';
import { confirmed } from './replication.js';

// Stock adjustments, one wrapper for inventory-adjust-n.lua: it lays out the script's KEYS and
// ARGV and checks the reply (ScriptReplyError when it is unexpected).

/** Highest stock level PUT /inventory/{sku} sets and an increase may reach. */
export const MAX_INVENTORY_LEVEL = 1_000_000_000;
/** Largest |delta| of one adjustment. */
export const MAX_INVENTORY_DELTA = 1_000_000_000;
/** An idempotency key as the script takes it: no ':' (the record's key splits at the last one). */
const KEY_REGEX = /^[A-Za-z0-9_.~+/=-]{1,128}$/;

export interface Adjustment {
  sku: string;
  /** A non-zero whole number, |delta| <= MAX_INVENTORY_DELTA. */
  delta: number;
  /** The request's Idempotency-Key (unquoted); without it the adjustment is applied every time. */
  idempotencyKey?: string | undefined;
  /** This request's token (a UUID): a resend of the same call is known as ours, not as a replay. */
  token: string;
}

/** inventory-adjust-n.lua's answer. Only 'applied' changed anything. */
export type AdjustResult =
  /** Applied now: the new level (stored as the key's answer when there is a key). */
  | { outcome: 'applied'; available: number }
  /** The key's stored answer: an earlier request with the same key and delta was applied. */
  | { outcome: 'replayed'; available: number }
  /** The key was used with another delta (that one). */
  | { outcome: 'key_reused'; delta: string }
  /** The level would go below 0; `available` is the level now. */
  | { outcome: 'insufficient'; available: number }
  /** The level would pass MAX_INVENTORY_LEVEL; `available` is the level now. */
  | { outcome: 'over_limit'; available: number }
  /** inventory:<sku> does not exist: the SKU was never stocked. */
  | { outcome: 'unknown_sku' }
  /** inventory:<sku> is not a whole number from 0 (written by something else); `raw` is what it holds. */
  | { outcome: 'unreadable_level'; raw: string }
  /** The key's record is unreadable (written by something else). */
  | { outcome: 'unreadable_record' };

/**
 * Adds `delta` to the SKU's level atomically, never below 0 nor past MAX_INVENTORY_LEVEL; with an
 * idempotency key, at most once per key (the answer is kept `ttlSeconds`).
 */
export async function adjustInventory(redis: RedisClient, a: Adjustment, ttlSeconds: number, now: Date): Promise<AdjustResult> {
  if (!ID_REGEX.test(a.sku)) throw new Error(`adjustment: sku must match ${ID_REGEX}`);
  if (!Number.isInteger(a.delta) || a.delta === 0 || Math.abs(a.delta) > MAX_INVENTORY_DELTA) {
    throw new Error(`adjustment of ${a.sku}: delta must be a non-zero whole number of at most ${MAX_INVENTORY_DELTA}`);
  }
  if (a.idempotencyKey !== undefined && !KEY_REGEX.test(a.idempotencyKey)) {
    throw new Error(`adjustment of ${a.sku}: idempotency key must match ${KEY_REGEX}`);
  }
  const keyList = [keys.inventory(a.sku)];
  if (a.idempotencyKey !== undefined) keyList.push(keys.inventoryIdempotency(a.sku, a.idempotencyKey));
  const reply = arrayReply(
    'inventoryAdjust',
    await confirmed(redis, 'inventoryAdjust', () =>
      scripts(redis).inventoryAdjust(
        keyList.length,
        ...keyList,
        String(a.delta),
        MAX_INVENTORY_LEVEL,
        ttlSeconds,
        a.token,
        isoAt(now.getTime()),
      ),
    ),
  );
  const code = codeReply('inventoryAdjust', reply[0], [0, 1, 2, 3, 4, 5, 6, 7] as const, reply);
  if (reply.length !== (code === 5 || code === 7 ? 1 : 2)) throw new ScriptReplyError('inventoryAdjust', reply);
  switch (code) {
    case 0:
      return { outcome: 'applied', available: countReply('inventoryAdjust', reply[1], reply) };
    case 1:
      return { outcome: 'replayed', available: countReply('inventoryAdjust', reply[1], reply) };
    case 2:
      return { outcome: 'key_reused', delta: stringReply('inventoryAdjust', reply[1], reply) };
    case 3:
      return { outcome: 'insufficient', available: countReply('inventoryAdjust', reply[1], reply) };
    case 4:
      return { outcome: 'over_limit', available: countReply('inventoryAdjust', reply[1], reply) };
    case 5:
      return { outcome: 'unknown_sku' };
    case 6:
      return { outcome: 'unreadable_level', raw: stringReply('inventoryAdjust', reply[1], reply) };
    case 7:
      return { outcome: 'unreadable_record' };
  }
}
