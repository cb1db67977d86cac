import { keys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { arrayReply, countReply, scripts } from './commands.js';

// rate-limit-1.lua's wrapper: one caller's request counted in its fixed window.

export interface RateCount {
  /** Requests of this caller in the current window, this one included. */
  count: number;
  /** ms until the window ends (and the count starts again). */
  msLeft: number;
}

/** Counts one request of `caller` (e.g. `sub:alice`, `ip:10.0.0.7`) in a window of `windowMs`. */
export async function countRequest(redis: RedisClient, caller: string, windowMs: number): Promise<RateCount> {
  const reply = arrayReply('rateLimit', await scripts(redis).rateLimit(keys.rateLimit(caller), windowMs), 2);
  return { count: countReply('rateLimit', reply[0], reply), msLeft: countReply('rateLimit', reply[1], reply) };
}
