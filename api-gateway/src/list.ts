import type { Context } from 'koa';
import {
  HttpProblem,
  ID_REGEX,
  ScriptReplyError,
  ORDER_STATUSES,
  keys,
  listIndex,
  orderRetentionMs,
  type Config,
  type IndexEntry,
  type Logger,
  type OrderStatus,
  type RedisClient,
} from '@order-pipeline/shared';
import { orderView } from './orders.js';

// GET /orders: orders newest first from the indexes the scripts write with each change
// (orders:index, orders:by-sku:<sku>, orders:by-status:<status>), never a scan of all orders.
// With both filters the smaller of the two sets is read and the other field checked on each
// order; a page then may hold fewer than `limit` items while `next` is not null.

export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 100;
/** At most this many reads of the index per request, so a filter that matches little stays bounded. */
const MAX_ROUNDS = 5;
const PARAMS = new Set(['sku', 'status', 'limit', 'cursor']);

export interface ListQuery {
  sku?: string;
  status?: OrderStatus;
  limit: number;
  after?: IndexEntry;
}

function invalid(name: string, message: string): HttpProblem {
  return new HttpProblem(400, 'Invalid Query', `${name} ${message}`, { errors: [{ path: name, message }] });
}

/** The cursor of an entry: base64url of JSON [score, id]; opaque to clients. */
export function encodeCursor(entry: IndexEntry): string {
  return Buffer.from(JSON.stringify([entry.score, entry.id])).toString('base64url');
}

export function decodeCursor(cursor: string): IndexEntry | undefined {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!Array.isArray(v) || v.length !== 2) return undefined;
    const [score, id] = v as unknown[];
    if (typeof score !== 'number' || !Number.isSafeInteger(score) || score < 0) return undefined;
    if (typeof id !== 'string' || !ID_REGEX.test(id)) return undefined;
    return { score, id };
  } catch {
    return undefined;
  }
}

/** The query of GET /orders, or a 400 `invalid-query` problem naming the parameter. */
export function parseListQuery(query: Record<string, string | string[] | undefined>): ListQuery {
  for (const name of Object.keys(query)) if (!PARAMS.has(name)) throw invalid(name, 'is not a parameter of GET /orders');
  const one = (name: string): string | undefined => {
    const v = query[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw invalid(name, 'must be given once');
    return v;
  };
  const out: ListQuery = { limit: DEFAULT_LIMIT };
  const sku = one('sku');
  if (sku !== undefined) {
    if (!ID_REGEX.test(sku)) throw invalid('sku', 'must be 1-64 characters of A-Z a-z 0-9 _ . : -');
    out.sku = sku;
  }
  const status = one('status');
  if (status !== undefined) {
    if (!(ORDER_STATUSES as readonly string[]).includes(status)) throw invalid('status', `must be one of ${ORDER_STATUSES.join(', ')}`);
    out.status = status as OrderStatus;
  }
  const limit = one('limit');
  if (limit !== undefined) {
    if (!/^[1-9][0-9]{0,2}$/.test(limit) || Number(limit) > MAX_LIMIT)
      throw invalid('limit', `must be a whole number from 1 to ${MAX_LIMIT}`);
    out.limit = Number(limit);
  }
  const cursor = one('cursor');
  if (cursor !== undefined) {
    const after = decodeCursor(cursor);
    if (!after) throw invalid('cursor', 'is not a cursor this API gave');
    out.after = after;
  }
  return out;
}

function unavailable(): HttpProblem {
  return new HttpProblem(503, 'Service Unavailable', 'The order store is not reachable; retry shortly', {}, { 'Retry-After': '1' });
}

export async function listOrders(ctx: Context, deps: { config: Config; redis: RedisClient; log: Logger }): Promise<void> {
  const q = parseListQuery(ctx.query);
  try {
    ctx.body = await readPage(deps.redis, q, Date.now() - orderRetentionMs(deps.config));
  } catch (err) {
    // A script and its wrapper disagreeing is a defect (500), not an outage.
    if (err instanceof HttpProblem || err instanceof ScriptReplyError) throw err;
    deps.log.warn({ err: (err as Error).message }, 'order listing failed; answering 503');
    throw unavailable();
  }
}

async function indexKey(redis: RedisClient, q: ListQuery): Promise<string> {
  if (q.sku !== undefined && q.status !== undefined) {
    const bySku = keys.ordersBySku(q.sku);
    const byStatus = keys.ordersByStatus(q.status);
    const [skuCount, statusCount] = await Promise.all([redis.zcard(bySku), redis.zcard(byStatus)]);
    return skuCount <= statusCount ? bySku : byStatus;
  }
  if (q.sku !== undefined) return keys.ordersBySku(q.sku);
  if (q.status !== undefined) return keys.ordersByStatus(q.status);
  return keys.ordersIndex;
}

async function readPage(redis: RedisClient, q: ListQuery, cutoffMs: number): Promise<{ items: unknown[]; next: string | null }> {
  const key = await indexKey(redis, q);
  const items: unknown[] = [];
  let after = q.after;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const want = q.limit - items.length;
    // One more than needed tells whether anything follows the page.
    const entries = await listIndex(redis, key, cutoffMs, want + 1, after);
    const examined = entries.slice(0, want);
    const m = redis.multi();
    for (const e of examined) m.hgetall(keys.order(e.id)).hgetall(keys.notification(e.id)).hgetall(keys.cancellationNotification(e.id));
    const replies = examined.length > 0 ? ((await m.exec()) ?? []) : [];
    const gone: string[] = [];
    examined.forEach((e, i) => {
      const [order, notification, cancellation] = [0, 1, 2].map((k) => {
        const reply = replies[3 * i + k];
        if (!reply || reply[0]) throw reply?.[0] ?? new Error('no reply');
        return reply[1] as Record<string, string>;
      }) as [Record<string, string>, Record<string, string>, Record<string, string>];
      if (Object.keys(order).length === 0) {
        gone.push(e.id);
        return;
      }
      // The set read may lag a change made since (or be the narrower of two filters): check both.
      if (q.sku !== undefined && order.sku !== q.sku) return;
      if (q.status !== undefined && order.status !== q.status) return;
      items.push(orderView(order, notification, cancellation));
    });
    // An order whose keys expired (or were deleted) leaves the set it was found in.
    if (gone.length > 0) await redis.zrem(key, ...gone);
    if (entries.length <= want) return { items, next: null };
    after = examined[examined.length - 1];
    if (items.length >= q.limit) break;
  }
  return { items, next: after ? encodeCursor(after) : null };
}
