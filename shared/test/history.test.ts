// The order's history, its indexes and its retention, written by the Lua scripts on a real Redis:
// each change adds one entry in the script that makes it, a redelivery or resend adds none, the
// id moves between the status sets with the change, and every key of the order expires at its
// acceptance time plus the retention.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  acceptOrders,
  cancelOrder,
  claimNotification,
  claimOrders,
  createRedis,
  expireOrder,
  keys,
  listIndex,
  recordCancelRequest,
  recordNotificationFailed,
  recordNotificationSent,
  redisReady,
  reserveOrder,
  type Order,
  type RedisClient,
} from '../src/index.js';
import { resetRedis } from '../../test/helpers/servers.js';

const redisUrl = inject('redisUrl');
let redis: RedisClient;

beforeAll(async () => {
  await resetRedis(redisUrl);
  redis = createRedis({ url: redisUrl });
  await redisReady(redis);
});

afterAll(() => redis?.disconnect());

const DAY = 86_400_000;
const RETENTION = 30 * DAY;

async function history(id: string): Promise<Record<string, unknown>[]> {
  return (await redis.lrange(keys.history(id), 0, -1)).map((e) => JSON.parse(e) as Record<string, unknown>);
}

/** Claims and accepts the order as the gateway does, at `at`. */
async function accept(order: Order, at: Date, retentionMs = RETENTION): Promise<string> {
  const token = randomUUID();
  await claimOrders(redis, 5000, [{ id: order.id, fingerprint: 'fp', token }]);
  const acceptance = { ...order, token, fingerprint: 'fp', response: '{}' };
  expect(await acceptOrders(redis, 60, at, [acceptance], retentionMs)).toEqual([{ outcome: 'accepted' }]);
  return token;
}

/** The status sets that hold the id. */
async function statusSets(id: string): Promise<string[]> {
  const out: string[] = [];
  for (const s of ['accepted', 'created', 'rejected', 'expired', 'cancelled'] as const) {
    if ((await redis.zscore(keys.ordersByStatus(s), id)) !== null) out.push(s);
  }
  return out;
}

describe('history and index, per script', () => {
  it('accept then reserve: accepted, created once each however often the gateway resends or the processor gets the message', async () => {
    const order = { id: `h-1-${randomUUID()}`, sku: 'h-sku-1', qty: 2 };
    await redis.set(keys.inventory('h-sku-1'), 10);
    const at = new Date('2030-01-01T00:00:00.000Z');
    const token = await accept(order, at);
    // The gateway resending the same acceptance (a reconnect) records nothing more.
    await acceptOrders(redis, 60, at, [{ ...order, token, fingerprint: 'fp', response: '{}' }]);
    expect(await statusSets(order.id)).toEqual(['accepted']);
    const later = new Date(at.getTime() + 1000);
    expect(await reserveOrder(redis, order, later)).toEqual({ outcome: 'created' });
    expect((await reserveOrder(redis, order, new Date(at.getTime() + 2000))).outcome).toBe('decided_before');
    expect(await history(order.id)).toEqual([
      { at: at.toISOString(), event: 'accepted' },
      { at: later.toISOString(), event: 'created' },
    ]);
    expect(await statusSets(order.id)).toEqual(['created']);
    expect(Number(await redis.zscore(keys.ordersIndex, order.id))).toBe(at.getTime());
    expect(Number(await redis.zscore(keys.ordersBySku('h-sku-1'), order.id))).toBe(at.getTime());
    // Every key of the order ends at the acceptance plus the retention.
    for (const key of [keys.order(order.id), keys.history(order.id)]) {
      expect(await redis.call('PEXPIRETIME', key)).toBe(at.getTime() + RETENTION);
    }
  });

  it('reserve before the acceptance (a fast processor): the processor indexes it, the acceptance adds its entry and moves nothing back', async () => {
    const order = { id: `h-2-${randomUUID()}`, sku: 'h-sku-unknown', qty: 1 };
    const first = new Date('2030-01-02T00:00:00.000Z');
    expect(await reserveOrder(redis, order, first)).toEqual({ outcome: 'rejected', reason: 'unknown_sku' });
    const at = new Date(first.getTime() + 500);
    await accept(order, at);
    expect(await history(order.id)).toEqual([
      { at: first.toISOString(), event: 'rejected', reason: 'unknown_sku' },
      { at: at.toISOString(), event: 'accepted' },
    ]);
    expect(await statusSets(order.id)).toEqual(['rejected']);
    expect(Number(await redis.zscore(keys.ordersIndex, order.id))).toBe(first.getTime());
    expect(await redis.call('PEXPIRETIME', keys.order(order.id))).toBe(first.getTime() + RETENTION);
    expect(await redis.call('PEXPIRETIME', keys.history(order.id))).toBe(first.getTime() + RETENTION);
  });

  it('an acceptance of an order decided without a history (by hand, or by an earlier version) gives the history an expiry', async () => {
    const order = { id: `h-2b-${randomUUID()}`, sku: 'h-sku-2b', qty: 1 };
    await redis.hset(keys.order(order.id), { ...order, qty: '1', status: 'created', createdAt: 'x' });
    await accept(order, new Date(), DAY);
    expect(await history(order.id)).toEqual([{ at: expect.any(String), event: 'accepted' }]);
    const ttl = await redis.pttl(keys.history(order.id));
    expect(ttl).toBeGreaterThan(DAY - 60_000);
    expect(ttl).toBeLessThanOrEqual(DAY);
  });

  it('expire: one entry however often, and the id moves from accepted to expired', async () => {
    const order = { id: `h-3-${randomUUID()}`, sku: 'h-sku-3', qty: 1 };
    const at = new Date('2030-01-03T00:00:00.000Z');
    await accept(order, at);
    const later = new Date(at.getTime() + 1000);
    expect(await expireOrder(redis, order, later)).toEqual({ outcome: 'expired' });
    expect((await expireOrder(redis, order, later)).outcome).toBe('decided_before');
    expect((await reserveOrder(redis, order, later)).outcome).toBe('decided_before');
    expect(await history(order.id)).toEqual([
      { at: at.toISOString(), event: 'accepted' },
      { at: later.toISOString(), event: 'expired' },
    ]);
    expect(await statusSets(order.id)).toEqual(['expired']);
  });

  it('cancel request and cancel: one entry each however often, units given back recorded, created -> cancelled', async () => {
    const order = { id: `h-4-${randomUUID()}`, sku: 'h-sku-4', qty: 3 };
    await redis.set(keys.inventory('h-sku-4'), 10);
    const at = new Date('2030-01-04T00:00:00.000Z');
    await accept(order, at);
    await reserveOrder(redis, order, at);
    const asked = new Date(at.getTime() + 1000);
    expect((await recordCancelRequest(redis, order.id, 'too slow', asked)).outcome).toBe('recorded');
    expect((await recordCancelRequest(redis, order.id, 'again', asked)).outcome).toBe('requested_before');
    const done = new Date(at.getTime() + 2000);
    expect(await cancelOrder(redis, order, 'too slow', done)).toEqual({ outcome: 'cancelled', units: 3 });
    expect(await cancelOrder(redis, order, 'too slow', done)).toEqual({ outcome: 'cancelled_before' });
    expect(await history(order.id)).toEqual([
      { at: at.toISOString(), event: 'accepted' },
      { at: at.toISOString(), event: 'created' },
      { at: asked.toISOString(), event: 'cancel_requested', reason: 'too slow' },
      { at: done.toISOString(), event: 'cancelled', reason: 'too slow', units: 3 },
    ]);
    expect(await statusSets(order.id)).toEqual(['cancelled']);
    expect(await redis.call('PEXPIRETIME', keys.history(order.id))).toBe(at.getTime() + RETENTION);
  });

  it('cancel of an order nobody recorded yet: indexes it as cancelled, with its retention', async () => {
    const order = { id: `h-5-${randomUUID()}`, sku: 'h-sku-5', qty: 1 };
    const at = new Date('2030-01-05T00:00:00.000Z');
    expect(await cancelOrder(redis, order, undefined, at)).toEqual({ outcome: 'cancelled', units: 0 });
    expect(await history(order.id)).toEqual([{ at: at.toISOString(), event: 'cancelled', units: 0 }]);
    expect(await statusSets(order.id)).toEqual(['cancelled']);
    expect(await redis.call('PEXPIRETIME', keys.order(order.id))).toBe(at.getTime() + RETENTION);
  });

  it('notifications: sent once per kind, failed only when it becomes failed; each record expires with the history', async () => {
    const order = { id: `h-6-${randomUUID()}`, sku: 'h-sku-6', qty: 1 };
    const at = new Date('2030-01-06T00:00:00.000Z');
    await accept(order, at);
    const t1 = randomUUID();
    expect((await claimNotification(redis, order.id, t1, 5000, 'log')).outcome).toBe('claimed');
    expect(await redis.call('PEXPIRETIME', keys.notification(order.id))).toBe(at.getTime() + RETENTION);
    const sentAt = '2030-01-06T00:00:01.000Z';
    expect(await recordNotificationSent(redis, order.id, sentAt)).toEqual({ outcome: 'recorded' });
    expect(await recordNotificationSent(redis, order.id, sentAt)).toEqual({ outcome: 'recorded_before' });

    const t2 = randomUUID();
    await claimNotification(redis, order.id, t2, 5000, 'webhook', 'cancelled');
    const failedAt = new Date('2030-01-06T00:00:02.000Z');
    // A retry left: no entry; the last attempt: one; the same attempt again: not ours, no entry.
    expect(await recordNotificationFailed(redis, order.id, t2, 'boom', false, 'cancelled', RETENTION, failedAt)).toEqual({
      outcome: 'recorded',
    });
    const t3 = randomUUID();
    await claimNotification(redis, order.id, t3, 5000, 'webhook', 'cancelled');
    expect(await recordNotificationFailed(redis, order.id, t3, 'boom 2', true, 'cancelled', RETENTION, failedAt)).toEqual({
      outcome: 'recorded',
    });
    expect(await recordNotificationFailed(redis, order.id, t3, 'boom 2', true, 'cancelled', RETENTION, failedAt)).toEqual({
      outcome: 'not_ours',
    });
    expect((await history(order.id)).slice(1)).toEqual([
      { at: sentAt, event: 'notification_sent', kind: 'outcome', channel: 'log', attempts: 1 },
      { at: failedAt.toISOString(), event: 'notification_failed', kind: 'cancelled', channel: 'webhook', attempts: 2, error: 'boom 2' },
    ]);
    expect(await redis.call('PEXPIRETIME', keys.cancellationNotification(order.id))).toBe(at.getTime() + RETENTION);
  });

  it('a notification of an order that is gone keeps its records for the retention from now', async () => {
    const id = `h-7-${randomUUID()}`;
    const t = randomUUID();
    await claimNotification(redis, id, t, 5000, 'log', 'outcome', 60_000);
    await recordNotificationSent(redis, id, new Date().toISOString(), 'outcome', 60_000);
    for (const key of [keys.notification(id), keys.history(id)]) {
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(50_000);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
  });

  it('keeps the newest 100 entries', async () => {
    const order = { id: `h-8-${randomUUID()}`, sku: 'h-sku-8', qty: 1 };
    const at = new Date('2030-01-08T00:00:00.000Z');
    await accept(order, at);
    await redis.rpush(keys.history(order.id), ...Array.from({ length: 99 }, (_, i) => JSON.stringify({ at: 'x', event: `filler-${i}` })));
    expect(await redis.llen(keys.history(order.id))).toBe(100);
    await expireOrder(redis, order, at);
    const entries = await history(order.id);
    expect(entries).toHaveLength(100);
    expect(entries[0]).toEqual({ at: 'x', event: 'filler-0' });
    expect(entries[99]).toEqual({ at: at.toISOString(), event: 'expired' });
  });
});

describe('retention', () => {
  it('the order and its history vanish after the retention, and the acceptance prunes the index of all orders', async () => {
    const order = { id: `h-r-${randomUUID()}`, sku: 'h-sku-r', qty: 1 };
    await accept(order, new Date(), 300);
    expect(await redis.pttl(keys.order(order.id))).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 400));
    expect(await redis.exists(keys.order(order.id), keys.history(order.id))).toBe(0);
    expect(await redis.zscore(keys.ordersIndex, order.id)).not.toBeNull();
    // The next acceptance removes index entries past the retention.
    await accept({ id: `h-r2-${randomUUID()}`, sku: 'h-sku-r', qty: 1 }, new Date(), 300);
    expect(await redis.zscore(keys.ordersIndex, order.id)).toBeNull();
  });

  it('a late redelivery after the retention starts the order anew: indexed now, with a fresh retention', async () => {
    const order = { id: `h-r3-${randomUUID()}`, sku: 'h-sku-r3', qty: 1 };
    const old = Date.now() - 2 * DAY;
    await redis.zadd(keys.ordersIndex, old, order.id);
    const now = new Date();
    await reserveOrder(redis, order, now, DAY);
    expect(Number(await redis.zscore(keys.ordersIndex, order.id))).toBe(now.getTime());
    expect(await redis.call('PEXPIRETIME', keys.order(order.id))).toBe(now.getTime() + DAY);
  });
});

describe('every index stays within the retention', () => {
  it('the scripts prune the sets they write: all orders, the sku, accepted at acceptance, each other status as an order enters it', async () => {
    const stale = 'h-stale';
    const sets = [
      keys.ordersIndex,
      keys.ordersBySku('h-prune'),
      ...(['accepted', 'created', 'rejected', 'expired', 'cancelled'] as const).map((s) => keys.ordersByStatus(s)),
    ];
    for (const key of sets) await redis.zadd(key, 1, stale);
    await redis.set(keys.inventory('h-prune'), 10);
    const order = (n: number, sku = 'h-prune') => ({ id: `h-p-${n}-${randomUUID()}`, sku, qty: 1 });
    const now = new Date();
    const [a, b, c, d] = [order(1), order(2, 'h-prune-unknown'), order(3), order(4)];
    await accept(a, now, DAY);
    await reserveOrder(redis, a, now, DAY);
    await reserveOrder(redis, b, now, DAY);
    await expireOrder(redis, c, now, DAY);
    await cancelOrder(redis, d, undefined, now, DAY);
    for (const key of sets) expect([key, await redis.zscore(key, stale)]).toEqual([key, null]);
  });
});

describe('listIndex (list-orders-1.lua)', () => {
  const key = 'test:list-index';

  it('pages newest first, then by id descending within a score, and prunes below the cutoff', async () => {
    await redis.del(key);
    // Ten entries sharing a score (one batch of acceptances), two older, one past the cutoff.
    const same = Array.from({ length: 10 }, (_, i) => `s-${String(i).padStart(2, '0')}`);
    await redis.zadd(key, ...same.flatMap((id) => [1000, id]), 900, 'old-b', 900, 'old-a', 10, 'gone');
    const seen: string[] = [];
    let after: { score: number; id: string } | undefined;
    for (;;) {
      const page = await listIndex(redis, key, 100, 3, after);
      seen.push(...page.map((e) => e.id));
      if (page.length < 3) break;
      after = page[page.length - 1];
    }
    expect(seen).toEqual([...[...same].reverse(), 'old-b', 'old-a']);
    expect(await redis.zscore(key, 'gone')).toBeNull();
  });

  it('goes on after a cursor whose entry left the set, without repeating or skipping', async () => {
    await redis.del(key);
    await redis.zadd(key, 1000, 'a', 1000, 'b', 1000, 'c', 1000, 'd', 999, 'e');
    const first = await listIndex(redis, key, 0, 2, undefined);
    expect(first.map((e) => e.id)).toEqual(['d', 'c']);
    await redis.zrem(key, 'c');
    // Newer entries meanwhile change nothing after the cursor.
    await redis.zadd(key, 2000, 'z');
    const second = await listIndex(redis, key, 0, 10, first[1]);
    expect(second.map((e) => e.id)).toEqual(['b', 'a', 'e']);
  });
});
