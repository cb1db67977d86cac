import type { RedisClient } from '../redis.js';
import { ScriptReplyError, arrayReply, scripts } from './commands.js';

// GET /orders's read of an order index, through list-orders-1.lua (it lays out KEYS and ARGV and
// checks the reply; ScriptReplyError when it is unexpected).

/** A place in an index: the entry's score (acceptance time in ms) and id. */
export interface IndexEntry {
  score: number;
  id: string;
}

/**
 * Up to `count` entries of the sorted set `key` after `after` (from the newest when undefined),
 * newest first, once entries scored below `cutoffMs` are removed.
 */
export async function listIndex(
  redis: RedisClient,
  key: string,
  cutoffMs: number,
  count: number,
  after: IndexEntry | undefined,
): Promise<IndexEntry[]> {
  const reply = arrayReply('listOrders', await scripts(redis).listOrders(key, cutoffMs, count, after?.score ?? '', after?.id ?? ''));
  if (reply.length % 2 !== 0 || reply.length > 2 * count) throw new ScriptReplyError('listOrders', reply);
  const entries: IndexEntry[] = [];
  for (let i = 0; i < reply.length; i += 2) {
    const id = reply[i];
    const score = Number(reply[i + 1]);
    if (typeof id !== 'string' || typeof reply[i + 1] !== 'string' || !Number.isFinite(score))
      throw new ScriptReplyError('listOrders', reply);
    entries.push({ id, score });
  }
  return entries;
}
