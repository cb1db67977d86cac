import { TransientError, keys, type RedisClient } from '@order-pipeline/shared';
import { parseInteger, readFigures, type Figures, type QueueChecker } from './figures.js';
import type { NodeState } from './nodes.js';

// What the live page shows, read once per tick for every watcher: the figures of GET /metrics,
// the newest orders with their notification, rates from the counters' change since the last
// tick, and which broker nodes answer.

/** Orders listed on the page (the gateway keeps the newest 50 ids in orders:recent). */
export const RECENT_SHOWN = 15;
/** Rate points kept for the sparkline: about a minute at one tick a second. */
export const HISTORY_POINTS = 60;
/** The headline rates span this many snapshots back (about 5 s): steadier than one tick's change. */
export const RATE_WINDOW = 5;

export interface RecentOrder {
  id: string;
  sku: string;
  qty: number | null;
  status: string;
  reason?: string;
  notification: { status: string; attempts: number } | null;
  createdAt?: string;
  updatedAt?: string;
}

export interface Rates {
  /** Orders accepted per second. */
  accepted: number;
  created: number;
  rejected: number;
  cancelled: number;
  /** Notifications sent per second. */
  sent: number;
}

export interface Snapshot {
  generatedAt: string;
  redis: { up: boolean; error?: string };
  /** The figures of GET /metrics; null while Redis cannot be read. */
  figures: Figures | null;
  /** Per second over the last few snapshots (RATE_WINDOW); null on the first one or after an outage. */
  rates: Rates | null;
  /** Orders accepted per second between consecutive snapshots, oldest first. */
  history: { t: string; accepted: number }[];
  recent: RecentOrder[];
  brokers: { connectedTo: string | null; nodes: NodeState[] };
}

/**
 * The newest orders, newest first: LRANGE of orders:recent, then each order's hash and its
 * notification's status in one pipeline (one round trip whatever the count).
 */
export async function readRecentOrders(redis: RedisClient, limit = RECENT_SHOWN): Promise<RecentOrder[]> {
  const listed = await redis.lrange(keys.recentOrders, 0, limit * 2 - 1);
  // An id accepted again after its idempotency record lapsed is listed twice: show it once.
  const ids = [...new Set(listed)].slice(0, limit);
  if (ids.length === 0) return [];
  const pipeline = redis.pipeline();
  for (const id of ids) {
    pipeline.hgetall(keys.order(id));
    pipeline.hmget(keys.notification(id), 'status', 'attempts');
  }
  const replies = (await pipeline.exec()) ?? [];
  const orders: RecentOrder[] = [];
  ids.forEach((id, i) => {
    const [orderErr, order] = replies[i * 2] ?? [null, null];
    const [notifErr, notif] = replies[i * 2 + 1] ?? [null, null];
    if (orderErr || notifErr) throw orderErr ?? notifErr;
    const o = (order ?? {}) as Record<string, string>;
    const [nStatus, nAttempts] = (notif ?? [null, null]) as (string | null)[];
    orders.push({
      id,
      sku: o.sku ?? '',
      qty: parseInteger(o.qty) ?? null,
      // The hash can be gone (deleted by hand): the id alone is still worth showing.
      // As GET /orders/{id} says it: a confirmed cancellation request waiting for the processor.
      status: o.cancelRequestedAt && (o.status === 'accepted' || o.status === 'created') ? 'cancelling' : (o.status ?? 'unknown'),
      ...(o.reason ? { reason: o.reason } : {}),
      notification: nStatus ? { status: nStatus, attempts: parseInteger(nAttempts) ?? 0 } : null,
      ...(o.createdAt ? { createdAt: o.createdAt } : {}),
      ...(o.updatedAt ? { updatedAt: o.updatedAt } : {}),
    });
  });
  return orders;
}

/** Per-second change of the counters between two figures taken `seconds` apart (never negative). */
export function ratesBetween(prev: Figures, next: Figures, seconds: number): Rates {
  const per = (a: number, b: number) => (seconds > 0 ? Math.max(0, b - a) / seconds : 0);
  return {
    accepted: per(prev.orders.accepted, next.orders.accepted),
    created: per(prev.orders.created, next.orders.created),
    rejected: per(prev.orders.rejected, next.orders.rejected),
    cancelled: per(prev.orders.cancelled, next.orders.cancelled),
    sent: per(prev.notifications.sent, next.notifications.sent),
  };
}

export interface SnapshotSources {
  redis: RedisClient;
  queueChecker: () => QueueChecker | null;
  nodes: () => NodeState[];
  connectedTo: () => string | undefined;
}

/**
 * Builds snapshots one after another, remembering the previous figures for the rates and the
 * rate history for the sparkline. Never rejects: Redis being down is part of the snapshot.
 */
export function snapshotter(sources: SnapshotSources) {
  // The last snapshots' figures, oldest first: the newest gives the sparkline's point, the oldest the headline rates.
  let recentFigures: { figures: Figures; at: number }[] = [];
  const history: { t: string; accepted: number }[] = [];

  return {
    async next(): Promise<Snapshot> {
      const now = Date.now();
      const generatedAt = new Date(now).toISOString();
      const brokers = { connectedTo: sources.connectedTo() ?? null, nodes: sources.nodes() };
      let figures: Figures;
      let recent: RecentOrder[];
      try {
        [figures, recent] = await Promise.all([
          readFigures(sources.redis, sources.queueChecker()),
          readRecentOrders(sources.redis).catch((err: unknown) => {
            throw new TransientError(`Redis is unavailable: ${(err as Error).message}`, { cause: err });
          }),
        ]);
      } catch (err) {
        // The rates restart after an outage: a delta across it would be an average, not a rate.
        recentFigures = [];
        return {
          generatedAt,
          redis: { up: false, error: (err as Error).message },
          figures: null,
          rates: null,
          history: [...history],
          recent: [],
          brokers,
        };
      }
      const prev = recentFigures[recentFigures.length - 1];
      const oldest = recentFigures[0];
      const rates = oldest ? ratesBetween(oldest.figures, figures, (now - oldest.at) / 1000) : null;
      if (prev) {
        history.push({ t: generatedAt, accepted: ratesBetween(prev.figures, figures, (now - prev.at) / 1000).accepted });
        if (history.length > HISTORY_POINTS) history.shift();
      }
      recentFigures.push({ figures, at: now });
      if (recentFigures.length > RATE_WINDOW) recentFigures.shift();
      return { generatedAt, redis: { up: true }, figures, rates, history: [...history], recent, brokers };
    },
    /** Forget the previous figures (nobody watched for a while: a delta across the gap is no rate). */
    reset(): void {
      recentFigures = [];
      history.length = 0;
    },
  };
}
