import { keys } from './keys.js';
import type { ClaimReply, RedisClient } from './redis.js';

// The gateway's two idempotency steps as functions over a list, laying out the KEYS and ARGV of
// claim-n.lua and accept-n.lua. A list of one is the plain case; the gateway batches them.

export interface Claim {
  id: string;
  /** sha256 (hex) of the canonical payload. */
  fingerprint: string;
  /** This request's claim token (a UUID): only it may accept or release the claim. */
  token: string;
}

/** Claims each order id (SET NX with a lease of `leaseMs`) or learns who holds it; one reply per claim. */
export async function claimOrders(redis: RedisClient, leaseMs: number, claims: readonly Claim[]): Promise<ClaimReply[]> {
  const keyList: string[] = [keys.stats.duplicates];
  const args: (string | number)[] = [leaseMs];
  for (const c of claims) {
    // The script builds the in-flight JSON record by concatenation: both must be JSON-safe.
    if (!SAFE.test(c.fingerprint) || !SAFE.test(c.token)) throw new Error(`claim of ${c.id}: fingerprint and token must match ${SAFE}`);
    keyList.push(keys.idempotency(c.id));
    args.push(c.fingerprint, c.token);
  }
  return redis.claim(keyList.length, ...keyList, ...args);
}
const SAFE = /^[A-Za-z0-9_-]+$/;

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
}

/** The accepted record stored under idemp:<id> for the TTL. */
export function acceptedRecord(a: Pick<Acceptance, 'fingerprint' | 'response'>): string {
  return JSON.stringify({ state: 'accepted', fp: a.fingerprint, response: a.response });
}

/**
 * Records confirmed orders: each one's accepted record (for `ttlSeconds`, only while its claim is
 * still ours) and its order hash, never overwriting the processor's status. One reply per
 * acceptance: 1 recorded by this claim, 0 another claim holds the id.
 */
export async function acceptOrders(
  redis: RedisClient,
  ttlSeconds: number,
  now: Date,
  acceptances: readonly Acceptance[],
): Promise<(0 | 1)[]> {
  const keyList: string[] = [keys.stats.accepted, keys.recentOrders];
  const args: (string | number)[] = [ttlSeconds, now.toISOString()];
  for (const a of acceptances) {
    keyList.push(keys.idempotency(a.id), keys.order(a.id));
    args.push(a.token, acceptedRecord(a), a.id, a.sku, a.qty, a.email ?? '');
  }
  return redis.accept(keyList.length, ...keyList, ...args);
}
