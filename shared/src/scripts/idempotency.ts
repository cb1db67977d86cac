import { isoAt } from '../clock.js';
import { DEFAULT_ORDER_RETENTION_MS } from '../config.js';
import { keys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { ScriptReplyError, arrayReply, codeReply, countReply, scripts, stringReply } from './commands.js';
import { confirmed } from './replication.js';

// The gateway's idempotency steps, one wrapper per script: claim-n.lua and accept-n.lua (over a
// list: a list of one is the plain case, the gateway batches them) and release-1.lua. Each lays
// out its script's KEYS and ARGV and checks the reply (ScriptReplyError when it is unexpected).

export interface Claim {
  id: string;
  /** sha256 (hex) of the canonical payload. */
  fingerprint: string;
  /** This request's claim token (a UUID): only it may accept or release the claim. */
  token: string;
}

/** One claim's answer (claim-n.lua). */
export type ClaimResult =
  /** The id is ours: publish, then accept or release. */
  | { outcome: 'claimed' }
  /** Already accepted with the same payload: answer with the stored response. */
  | { outcome: 'replay'; response: string }
  /** The id is taken by a different payload. */
  | { outcome: 'mismatch' }
  /** The first request is still in flight; its lease has this many ms left. */
  | { outcome: 'in_flight'; leaseLeftMs: number }
  /** The record under the id is not a JSON string (written by something else): left alone. */
  | { outcome: 'unreadable' };

/** Claims each order id (SET NX with a lease of `leaseMs`) or learns who holds it; one result per claim. */
export async function claimOrders(redis: RedisClient, leaseMs: number, claims: readonly Claim[]): Promise<ClaimResult[]> {
  const keyList: string[] = [keys.stats.duplicates];
  const args: (string | number)[] = [leaseMs];
  for (const c of claims) {
    // The script builds the in-flight JSON record by concatenation: both must be JSON-safe.
    if (!SAFE.test(c.fingerprint) || !SAFE.test(c.token)) throw new Error(`claim of ${c.id}: fingerprint and token must match ${SAFE}`);
    keyList.push(keys.idempotency(c.id));
    args.push(c.fingerprint, c.token);
  }
  const reply = arrayReply(
    'claim',
    await confirmed(redis, 'claim', () => scripts(redis).claim(keyList.length, ...keyList, ...args)),
    claims.length,
  );
  return reply.map((one) => claimResult(arrayReply('claim', one)));
}
const SAFE = /^[A-Za-z0-9_-]+$/;

function claimResult(r: unknown[]): ClaimResult {
  const code = codeReply('claim', r[0], [0, 1, 2, 3, 4] as const, r);
  const length = code === 1 || code === 3 ? 2 : 1;
  if (r.length !== length) throw new ScriptReplyError('claim', r);
  switch (code) {
    case 0:
      return { outcome: 'claimed' };
    case 1:
      return { outcome: 'replay', response: stringReply('claim', r[1], r) };
    case 2:
      return { outcome: 'mismatch' };
    case 3:
      return { outcome: 'in_flight', leaseLeftMs: countReply('claim', r[1], r) };
    case 4:
      return { outcome: 'unreadable' };
  }
}

export interface Acceptance {
  id: string;
  sku: string;
  qty: number;
  email?: string | undefined;
  /** The token of the claim being turned into an acceptance. */
  token: string;
  /** sha256 (hex) of the canonical payload, kept so a replay with another payload is refused. */
  fingerprint: string;
  /** The 202 body, stored so a replay answers with it. */
  response: string;
  /**
   * The subject of the caller's bearer token (auth on), recorded as the order's `placedBy` and on
   * its `accepted` history entry. Not part of the fingerprint: see docs/security.md.
   */
  placedBy?: string | undefined;
}

/**
 * The accepted record stored under idemp:<id> for the TTL. It keeps the claim's token so that the
 * same acceptance sent again (a client resend after a reconnect) is known as ours.
 */
export function acceptedRecord(a: Pick<Acceptance, 'fingerprint' | 'response' | 'token'>): string {
  // The same text as JSON.stringify({ state, fp, response, token }), written out: the fingerprint
  // and token are JSON-safe (SAFE, checked at the claim), so only the response needs escaping.
  return `{"state":"accepted","fp":${JSON.stringify(a.fingerprint)},"response":${JSON.stringify(a.response)},"token":${JSON.stringify(a.token)}}`;
}

/** One acceptance's answer (accept-n.lua). Only 'accepted' wrote anything. */
export type AcceptResult =
  /** This claim recorded the acceptance and the order (now, or on an earlier send of the same call). */
  | { outcome: 'accepted' }
  /** The claim is no longer ours (its lease ran out and another request took the id), or the record is unreadable. */
  | { outcome: 'not_ours' }
  /** The claim is ours but order:<id> already holds a different payload (the processor filled it from another copy). */
  | { outcome: 'payload_mismatch' };

const ACCEPT_RESULTS: readonly AcceptResult[] = [{ outcome: 'not_ours' }, { outcome: 'accepted' }, { outcome: 'payload_mismatch' }];

/**
 * Records confirmed orders: each one's accepted record (for `ttlSeconds`) and its order hash,
 * never overwriting the processor's status, and only while its claim is still ours and the order
 * hash holds no other payload. One result per acceptance.
 */
export async function acceptOrders(
  redis: RedisClient,
  ttlSeconds: number,
  now: Date,
  acceptances: readonly Acceptance[],
  retentionMs: number = DEFAULT_ORDER_RETENTION_MS,
): Promise<AcceptResult[]> {
  const keyList: string[] = [keys.stats.accepted, keys.recentOrders, keys.ordersIndex, keys.ordersByStatus('accepted')];
  const args: (string | number)[] = [ttlSeconds, isoAt(now.getTime()), now.getTime(), retentionMs];
  for (const a of acceptances) {
    keyList.push(keys.idempotency(a.id), keys.order(a.id), keys.history(a.id), keys.ordersBySku(a.sku));
    args.push(a.token, acceptedRecord(a), a.id, a.sku, a.qty, a.email ?? '', a.placedBy ?? '');
  }
  const reply = arrayReply(
    'accept',
    await confirmed(redis, 'accept', () => scripts(redis).accept(keyList.length, ...keyList, ...args)),
    acceptances.length,
  );
  return reply.map((one) => ACCEPT_RESULTS[codeReply('accept', one, [0, 1, 2] as const, reply)] as AcceptResult);
}

/** release-1.lua's answer. */
export type ReleaseResult = { outcome: 'released' } | { outcome: 'not_ours' };

/** Deletes the in-flight claim on `id` after a failed publish, only while it is still this token's. */
export async function releaseClaim(redis: RedisClient, id: string, token: string): Promise<ReleaseResult> {
  const reply = await scripts(redis).release(keys.idempotency(id), token);
  return codeReply('release', reply, [0, 1] as const) === 1 ? { outcome: 'released' } : { outcome: 'not_ours' };
}
