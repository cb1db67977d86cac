import { Gauge, Registry } from 'prom-client';
import { TransientError, keys, queues, type RedisClient } from '@order-pipeline/shared';

// The dashboard's read model: every figure comes straight from Redis (counters bumped inside the
// Lua scripts, inventory keys) and from passive checks of the queues, at request time.

/** SCAN page size: large enough for few round trips, small enough not to stall Redis. */
export const SCAN_COUNT = 500;

/** Every queue of the topology, in the order the dashboard shows them. */
export const QUEUE_NAMES: readonly string[] = Object.values(queues);

export interface QueueFigures {
  messages: number;
  consumers: number;
}

export interface Figures {
  processed_orders_count: number;
  /** Only when `sku` was asked for; null when the SKU has no (integer) stock key. */
  inventory_level?: number | null;
  /** Only when `orderId` was asked for; null when the order has no notification record. */
  notification_status?: string | null;
  /** `cancelled`: orders cancelled (stats:orders:cancelled), whether or not their stock had been reserved. */
  orders: { accepted: number; duplicates: number; created: number; rejected: number; cancelled: number };
  notifications: { sent: number; failed: number };
  /** Units in stock by SKU, sorted by SKU. */
  inventory: Record<string, number>;
  /** Inventory keys whose value is not a whole number (left out of `inventory`); only when there are any. */
  inventory_invalid?: Record<string, string>;
  /** Depth and consumers of each queue; null when the broker cannot be asked. */
  queues: Record<string, QueueFigures> | null;
  generatedAt: string;
}

export interface FiguresQuery {
  sku?: string;
  orderId?: string;
}

/** What the dashboard needs from a channel: passive declare (never creates a queue). */
export interface QueueChecker {
  checkQueue(queue: string): Promise<{ messageCount: number; consumerCount: number }>;
}

const INTEGER = /^-?\d+$/;

/** A Redis string as a whole number, or undefined when it is missing or not one. */
export function parseInteger(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || !INTEGER.test(value.trim())) return undefined;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

const count = (value: string | null | undefined): number => parseInteger(value) ?? 0;

/**
 * Reads every figure. Redis failures reject with TransientError (the caller answers 503); a broker
 * that cannot be asked only makes `queues` null, so the dashboard still shows what it can.
 */
export async function readFigures(redis: RedisClient, queueChannel: QueueChecker | null, query: FiguresQuery = {}): Promise<Figures> {
  const queuesPromise = readQueues(queueChannel).catch(() => null);
  let counters: (string | null)[];
  let stock: { inventory: Record<string, number>; invalid: Record<string, string> };
  let level: string | null | undefined;
  let status: string | null | undefined;
  try {
    [counters, stock, level, status] = await Promise.all([
      redis.mget(
        keys.stats.accepted,
        keys.stats.duplicates,
        keys.processedCount,
        keys.stats.rejected,
        keys.stats.notificationsSent,
        keys.stats.notificationsFailed,
        keys.stats.cancelled,
      ),
      readInventory(redis),
      query.sku === undefined ? undefined : redis.get(keys.inventory(query.sku)),
      query.orderId === undefined ? undefined : redis.hget(keys.notification(query.orderId), 'status'),
    ]);
  } catch (err) {
    throw new TransientError(`Redis is unavailable: ${(err as Error).message}`, { cause: err });
  }
  const [accepted, duplicates, created, rejected, sent, failed, cancelled] = counters;
  const figures: Figures = {
    processed_orders_count: count(created),
    ...(query.sku === undefined ? {} : { inventory_level: parseInteger(level) ?? null }),
    ...(query.orderId === undefined ? {} : { notification_status: status ?? null }),
    orders: {
      accepted: count(accepted),
      duplicates: count(duplicates),
      created: count(created),
      rejected: count(rejected),
      cancelled: count(cancelled),
    },
    notifications: { sent: count(sent), failed: count(failed) },
    inventory: stock.inventory,
    ...(Object.keys(stock.invalid).length > 0 ? { inventory_invalid: stock.invalid } : {}),
    queues: await queuesPromise,
    generatedAt: new Date().toISOString(),
  };
  return figures;
}

/**
 * Every `inventory:<sku>` key, by SCAN (never KEYS: it would block Redis on a large keyspace)
 * with one MGET per page. Values that are not whole numbers are kept apart, not summed.
 */
export async function readInventory(redis: RedisClient): Promise<{ inventory: Record<string, number>; invalid: Record<string, string> }> {
  const found = new Map<string, string>();
  const invalid = new Map<string, string>();
  let cursor = '0';
  do {
    const [next, page] = await redis.scan(cursor, 'MATCH', keys.inventoryPattern, 'COUNT', SCAN_COUNT);
    cursor = next;
    // SCAN may return a key more than once (the keyspace can be rehashed between calls).
    const fresh = page.filter((k) => !found.has(k) && !invalid.has(k));
    if (fresh.length === 0) continue;
    const values = await redis.mget(...fresh);
    fresh.forEach((key, i) => {
      const raw = values[i];
      // Deleted between SCAN and MGET (or not a string): not stock.
      if (raw === null || raw === undefined) return;
      if (parseInteger(raw) === undefined) invalid.set(key, raw);
      else found.set(key, raw);
    });
  } while (cursor !== '0');

  const sku = (key: string) => key.slice(keys.inventoryPrefix.length);
  const inventory: Record<string, number> = {};
  for (const key of [...found.keys()].sort()) inventory[sku(key)] = parseInteger(found.get(key)) as number;
  const bad: Record<string, string> = {};
  for (const key of [...invalid.keys()].sort()) bad[sku(key)] = (invalid.get(key) as string).slice(0, 100);
  return { inventory, invalid: bad };
}

/** Messages and consumers of every queue of the topology; rejects when any check fails. */
export async function readQueues(queueChannel: QueueChecker | null): Promise<Record<string, QueueFigures> | null> {
  if (!queueChannel) return null;
  const checks = await Promise.all(QUEUE_NAMES.map((q) => queueChannel.checkQueue(q)));
  const result: Record<string, QueueFigures> = {};
  QUEUE_NAMES.forEach((q, i) => {
    const c = checks[i] as { messageCount: number; consumerCount: number };
    result[q] = { messages: c.messageCount, consumers: c.consumerCount };
  });
  return result;
}

/** Media types for which the dashboard answers Prometheus text instead of JSON. */
const PROMETHEUS_TYPES = ['text/plain', 'application/openmetrics-text'] as const;
const JSON_TYPE = 'application/json';

interface MediaRange {
  type: string;
  subtype: string;
  q: number;
}

function parseAccept(header: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const part of header.split(',')) {
    const [range, ...params] = part.split(';');
    const m = /^\s*([a-z0-9!#$%&'*+.^_`|~-]+)\/([a-z0-9!#$%&'*+.^_`|~-]+)\s*$/i.exec(range ?? '');
    if (!m) continue;
    let q = 1;
    for (const p of params) {
      const qm = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (qm) q = Math.min(1, Math.max(0, Number(qm[1]) || 0));
    }
    ranges.push({ type: (m[1] as string).toLowerCase(), subtype: (m[2] as string).toLowerCase(), q });
  }
  return ranges;
}

/** The q-value the header gives a media type: that of the most specific matching range (RFC 9110 12.5.1). */
function qualityOf(ranges: MediaRange[], mediaType: string): number {
  const [type, subtype] = mediaType.split('/') as [string, string];
  let best = -1;
  let q = 0;
  for (const r of ranges) {
    const specificity =
      r.type === type && r.subtype === subtype
        ? 2
        : r.type === type && r.subtype === '*'
          ? 1
          : r.type === '*' && r.subtype === '*'
            ? 0
            : -1;
    if (specificity > best) {
      best = specificity;
      q = r.q;
    }
  }
  return q;
}

/**
 * True when the Accept header ranks text/plain or OpenMetrics above JSON by q-value. A tie, no
 * header or a bare `*\/*` (curl, browsers) gets JSON.
 */
export function prefersPrometheus(acceptHeader: string | undefined): boolean {
  if (!acceptHeader) return false;
  const ranges = parseAccept(acceptHeader);
  const json = qualityOf(ranges, JSON_TYPE);
  const text = Math.max(...PROMETHEUS_TYPES.map((t) => qualityOf(ranges, t)));
  return text > 0 && text > json;
}

/**
 * The figures as Prometheus text, from a registry of gauges built for this scrape (so a SKU or
 * queue that disappeared leaves no stale series, and concurrent scrapes do not share state).
 * `also` registries (e.g. the process's own metrics) are appended to the same exposition.
 */
export async function toPrometheus(figures: Figures, also: Registry[] = []): Promise<{ contentType: string; body: string }> {
  const registry = new Registry();
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Gauge<L>({ name, help, labelNames, registers: [registry] });

  const orders = gauge(
    'pipeline_orders',
    'Orders by state: accepted by the gateway, duplicate requests, created (stock reserved), rejected, cancelled (before or after its stock was reserved)',
    ['state'],
  );
  for (const [state, n] of Object.entries(figures.orders)) orders.set({ state }, n);

  const notifications = gauge('pipeline_notifications', 'Notifications by final status', ['status']);
  for (const [status, n] of Object.entries(figures.notifications)) notifications.set({ status }, n);

  const inventory = gauge('pipeline_inventory_units', 'Units in stock by SKU', ['sku']);
  for (const [sku, n] of Object.entries(figures.inventory)) inventory.set({ sku }, n);

  gauge('pipeline_inventory_invalid_keys', 'Inventory keys whose value is not a whole number', []).set(
    Object.keys(figures.inventory_invalid ?? {}).length,
  );

  // Absent queue series mean "unknown", not zero: the up gauge says which.
  gauge('pipeline_queues_up', '1 when the queue figures could be read from the broker, else 0', []).set(figures.queues ? 1 : 0);
  if (figures.queues) {
    const messages = gauge('pipeline_queue_messages', 'Messages ready in the queue', ['queue']);
    const consumers = gauge('pipeline_queue_consumers', 'Consumers of the queue', ['queue']);
    for (const [queue, q] of Object.entries(figures.queues)) {
      messages.set({ queue }, q.messages);
      consumers.set({ queue }, q.consumers);
    }
  }

  // Text format 0.0.4 expositions concatenate (distinct metric names); each keeps its own default labels.
  const parts = [await registry.metrics(), ...(await Promise.all(also.map((r) => r.metrics())))];
  return { contentType: registry.contentType, body: parts.join('') };
}
