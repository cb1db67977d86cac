// The Lua scripts on a real Redis, at the edges the services' tests do not reach: a script the
// client resends after a reconnect (ioredis does this for commands in flight) must not count
// twice, and a bad inventory value must be refused before anything is written.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  MAX_INVENTORY_DELTA,
  MAX_INVENTORY_LEVEL,
  ScriptReplyError,
  acceptOrders,
  cancelOrder,
  recordCancelRequest,
  adjustInventory,
  claimNotification,
  claimOrders,
  createRedis,
  expireOrder,
  keys,
  recordNotificationFailed,
  recordNotificationSent,
  redisReady,
  releaseClaim,
  reserveOrder,
  type RedisClient,
} from '../src/index.js';
import { loadLuaScripts } from '../src/redis.js';
import { waitFor } from '../../test/helpers/processes.js';
import { resetRedis } from '../../test/helpers/servers.js';

const redisUrl = inject('redisUrl');
let redis: RedisClient;

beforeAll(async () => {
  await resetRedis(redisUrl);
  redis = createRedis({ url: redisUrl });
  await redisReady(redis);
});

afterAll(() => redis?.disconnect());

const now = () => new Date().toISOString();
const CLAIMED = { outcome: 'claimed' };
const ACCEPTED = { outcome: 'accepted' };
const NOT_OURS = { outcome: 'not_ours' };

describe('claim (gateway)', () => {
  it('treats the same claim sent twice as one: the second answer is still "claimed"', async () => {
    const claim = { id: 'lua-claim-1', fingerprint: 'fp-1', token: randomUUID() };
    expect(await claimOrders(redis, 5000, [claim])).toEqual([CLAIMED]);
    expect(await claimOrders(redis, 5000, [claim])).toEqual([CLAIMED]);
    expect(JSON.parse((await redis.get(keys.idempotency('lua-claim-1'))) ?? '')).toEqual({
      state: 'inflight',
      fp: 'fp-1',
      token: claim.token,
    });
    // Another request with the same payload is told the first is in flight.
    const [reply] = await claimOrders(redis, 5000, [{ ...claim, token: randomUUID() }]);
    expect(reply?.outcome).toBe('in_flight');
  });

  it('decides every claim of a batch as if each ran alone, in order', async () => {
    const id = (n: number) => `lua-batch-${n}-${randomUUID()}`;
    const [fresh, accepted, other, inFlight] = [id(1), id(2), id(3), id(4)];
    const acceptedToken = randomUUID();
    await claimOrders(redis, 5000, [{ id: accepted, fingerprint: 'fa', token: acceptedToken }]);
    expect(
      await acceptOrders(redis, 60, new Date(), [
        { id: accepted, sku: 's', qty: 1, token: acceptedToken, fingerprint: 'fa', response: '{"r":1}' },
      ]),
    ).toEqual([ACCEPTED]);
    await claimOrders(redis, 5000, [{ id: other, fingerprint: 'fo', token: randomUUID() }]);
    const duplicatesBefore = Number(await redis.get(keys.stats.duplicates));

    const replies = await claimOrders(redis, 5000, [
      { id: fresh, fingerprint: 'ff', token: randomUUID() },
      { id: accepted, fingerprint: 'fa', token: randomUUID() },
      { id: other, fingerprint: 'not-fo', token: randomUUID() },
      { id: inFlight, fingerprint: 'fi', token: randomUUID() },
      // The same id twice in one batch: the second finds the first in flight.
      { id: inFlight, fingerprint: 'fi', token: randomUUID() },
    ]);
    expect(replies.slice(0, 4)).toEqual([CLAIMED, { outcome: 'replay', response: '{"r":1}' }, { outcome: 'mismatch' }, CLAIMED]);
    expect(replies[4]).toEqual({ outcome: 'in_flight', leaseLeftMs: expect.any(Number) });
    expect(replies[4]).toMatchObject({ leaseLeftMs: expect.toSatisfy((ms: number) => ms > 4000) });
    expect(Number(await redis.get(keys.stats.duplicates))).toBe(duplicatesBefore + 1);
  });

  it('an unreadable record fails only its own claim and acceptance, not the rest of the batch', async () => {
    const [notJson, aHash, fresh] = ['lua-bad-json', 'lua-bad-type', `lua-beside-bad-${randomUUID()}`];
    await redis.set(keys.idempotency(notJson), 'not json');
    await redis.del(keys.idempotency(aHash));
    await redis.hset(keys.idempotency(aHash), 'state', 'inflight');
    const freshToken = randomUUID();
    const claims = await claimOrders(redis, 5000, [
      { id: notJson, fingerprint: 'f', token: randomUUID() },
      { id: aHash, fingerprint: 'f', token: randomUUID() },
      { id: fresh, fingerprint: 'f', token: freshToken },
    ]);
    expect(claims).toEqual([{ outcome: 'unreadable' }, { outcome: 'unreadable' }, CLAIMED]);

    await redis.del(keys.order(notJson));
    await redis.set(keys.order(aHash), 'a string where a hash belongs');
    const acceptance = (id: string, token: string) => ({ id, sku: 's', qty: 1, token, fingerprint: 'f', response: '{}' });
    const accepts = await acceptOrders(redis, 60, new Date(), [
      acceptance(notJson, randomUUID()),
      acceptance(aHash, randomUUID()),
      acceptance(fresh, freshToken),
    ]);
    expect(accepts).toEqual([NOT_OURS, NOT_OURS, ACCEPTED]);
    expect(await redis.get(keys.idempotency(notJson))).toBe('not json');
    expect(await redis.hgetall(keys.idempotency(aHash))).toEqual({ state: 'inflight' });
    expect(await redis.get(keys.order(aHash))).toBe('a string where a hash belongs');
    expect(JSON.parse((await redis.get(keys.idempotency(fresh))) ?? '')).toMatchObject({ state: 'accepted' });
    expect(await redis.hget(keys.order(fresh), 'status')).toBe('accepted');
  });

  it('refuses a fingerprint or token that would break the record it builds', async () => {
    await expect(claimOrders(redis, 5000, [{ id: 'lua-claim-bad', fingerprint: 'a"b', token: randomUUID() }])).rejects.toThrow(
      /fingerprint and token/,
    );
    expect(await redis.exists(keys.idempotency('lua-claim-bad'))).toBe(0);
  });
});

describe('accept (gateway)', () => {
  it('records only acceptances whose claim is still ours, and counts and lists those once', async () => {
    const id = (n: number) => `lua-acc-${n}-${randomUUID()}`;
    const [mine, taken, lapsed] = [id(1), id(2), id(3)];
    const [tMine, tTaken] = [randomUUID(), randomUUID()];
    await claimOrders(redis, 5000, [
      { id: mine, fingerprint: 'f', token: tMine },
      { id: taken, fingerprint: 'f', token: randomUUID() },
    ]);
    const acceptedBefore = Number(await redis.get(keys.stats.accepted));
    const acceptance = (orderId: string, token: string) => ({
      id: orderId,
      sku: 'sku-acc',
      qty: 2,
      email: 'a@example.com',
      token,
      fingerprint: 'f',
      response: `{"id":"${orderId}"}`,
    });

    const at = new Date();
    // `lapsed` has no claim at all any more (its lease ran out): recorded as ours, like a first claim.
    const replies = await acceptOrders(redis, 60, at, [
      acceptance(mine, tMine),
      acceptance(taken, tTaken),
      acceptance(lapsed, randomUUID()),
    ]);
    expect(replies).toEqual([ACCEPTED, NOT_OURS, ACCEPTED]);
    expect(Number(await redis.get(keys.stats.accepted))).toBe(acceptedBefore + 2);
    expect(JSON.parse((await redis.get(keys.idempotency(mine))) ?? '')).toEqual({
      state: 'accepted',
      fp: 'f',
      response: `{"id":"${mine}"}`,
      token: tMine,
    });
    expect(await redis.ttl(keys.idempotency(mine))).toBeGreaterThan(50);
    expect(JSON.parse((await redis.get(keys.idempotency(taken))) ?? '')).toMatchObject({ state: 'inflight' });
    // Newest first: the list gets the recorded ones in the order given.
    expect(await redis.lrange(keys.recentOrders, 0, 1)).toEqual([lapsed, mine]);
    // The order hash is written only with the acceptance: not for the id another claim holds.
    expect(await redis.exists(keys.order(taken))).toBe(0);
    for (const orderId of [mine, lapsed]) {
      expect(await redis.hgetall(keys.order(orderId))).toEqual({
        id: orderId,
        sku: 'sku-acc',
        qty: '2',
        email: 'a@example.com',
        status: 'accepted',
        createdAt: at.toISOString(),
        updatedAt: at.toISOString(),
      });
    }
    // Sent again (a client resend after a reconnect): still ours, and nothing counts twice.
    expect(await acceptOrders(redis, 60, at, [acceptance(mine, tMine)])).toEqual([ACCEPTED]);
    expect(await redis.lrange(keys.recentOrders, 0, 1)).toEqual([lapsed, mine]);
    expect(Number(await redis.get(keys.stats.accepted))).toBe(acceptedBefore + 2);
  });
});

describe('accept (gateway): the indexes of one batch', () => {
  it('indexes every new order of a batch once, in its own sku set, and prunes each set past the retention', async () => {
    const retentionMs = 60_000;
    const at = new Date();
    const skus = [`lua-idx-a-${randomUUID()}`, `lua-idx-b-${randomUUID()}`];
    // An entry older than the retention in each sku set: pruned by the batch that adds to it.
    for (const sku of skus) await redis.zadd(keys.ordersBySku(sku), at.getTime() - retentionMs - 1, `old-${sku}`);
    const orders = [0, 1, 2, 3, 4].map((n) => ({
      id: `lua-idx-${n}-${randomUUID()}`,
      sku: skus[n % 2] ?? '',
      qty: 1,
      token: randomUUID(),
      fingerprint: 'f',
    }));
    await claimOrders(redis, 5000, orders);
    const replies = await acceptOrders(
      redis,
      60,
      at,
      orders.map((o) => ({ ...o, response: '{}' })),
      retentionMs,
    );
    expect(replies).toEqual(orders.map(() => ACCEPTED));
    for (const o of orders) {
      expect(Number(await redis.zscore(keys.ordersIndex, o.id))).toBe(at.getTime());
      expect(Number(await redis.zscore(keys.ordersByStatus('accepted'), o.id))).toBe(at.getTime());
      expect(Number(await redis.zscore(keys.ordersBySku(o.sku), o.id))).toBe(at.getTime());
      expect(await redis.pexpiretime(keys.order(o.id))).toBe(at.getTime() + retentionMs);
    }
    for (const [i, sku] of skus.entries()) {
      expect(await redis.zrange(keys.ordersBySku(sku), 0, -1)).toEqual(
        orders
          .filter((_, n) => n % 2 === i)
          .map((o) => o.id)
          .sort(),
      );
    }
    // Newest first, in the order given.
    expect(await redis.lrange(keys.recentOrders, 0, 4)).toEqual(orders.map((o) => o.id).reverse());
  });
});

describe('accept (gateway): a claim that is not ours records nothing', () => {
  const acceptance = (id: string, token: string, qty: number) => ({
    id,
    sku: 'sku-lapse',
    qty,
    token,
    fingerprint: `f${qty}`,
    response: `{"id":"${id}","qty":${qty}}`,
  });
  const lapse = async (id: string) => {
    // Stands in for waiting the lease out: the in-flight record is gone either way.
    await redis.pexpire(keys.idempotency(id), 1);
    await waitFor('the lease to lapse', async () => ((await redis.exists(keys.idempotency(id))) === 0 ? true : undefined), 5000);
  };

  it('after a lapsed lease another request re-took, it writes no record, no order, no count, no list entry', async () => {
    const id = `lua-lapsed-${randomUUID()}`;
    const [first, second] = [randomUUID(), randomUUID()];
    await claimOrders(redis, 5000, [{ id, fingerprint: 'f1', token: first }]);
    await lapse(id);
    expect(await claimOrders(redis, 5000, [{ id, fingerprint: 'f5', token: second }])).toEqual([CLAIMED]);
    const [acceptedBefore, recordBefore] = [await redis.get(keys.stats.accepted), await redis.get(keys.idempotency(id))];

    expect(await acceptOrders(redis, 60, new Date(), [acceptance(id, first, 1)])).toEqual([NOT_OURS]);
    expect(await redis.exists(keys.order(id))).toBe(0);
    expect(await redis.get(keys.idempotency(id))).toBe(recordBefore);
    expect(await redis.get(keys.stats.accepted)).toBe(acceptedBefore);
    expect(await redis.lrange(keys.recentOrders, 0, -1)).not.toContain(id);

    // The request that holds the claim records its own payload.
    expect(await acceptOrders(redis, 60, new Date(), [acceptance(id, second, 5)])).toEqual([ACCEPTED]);
    expect(await redis.hgetall(keys.order(id))).toMatchObject({ qty: '5', status: 'accepted' });
  });

  it('refuses when order:<id> already holds a different payload (the processor filled it from another copy)', async () => {
    const id = `lua-filled-${randomUUID()}`;
    const token = randomUUID();
    await claimOrders(redis, 5000, [{ id, fingerprint: 'f1', token }]);
    // Another copy of the id, with qty 5, reached the processor first: it filled the order in.
    await redis.set(keys.inventory('sku-lapse'), 100);
    expect(await reserveOrder(redis, { id, sku: 'sku-lapse', qty: 5 }, new Date())).toEqual({ outcome: 'created' });
    const orderBefore = await redis.hgetall(keys.order(id));
    const recordBefore = await redis.get(keys.idempotency(id));
    const acceptedBefore = await redis.get(keys.stats.accepted);

    expect(await acceptOrders(redis, 60, new Date(), [acceptance(id, token, 1)])).toEqual([{ outcome: 'payload_mismatch' }]);
    expect(await redis.hgetall(keys.order(id))).toEqual(orderBefore);
    expect(await redis.get(keys.idempotency(id))).toBe(recordBefore);
    expect(await redis.get(keys.stats.accepted)).toBe(acceptedBefore);
    expect(await redis.lrange(keys.recentOrders, 0, -1)).not.toContain(id);

    // The same payload as the filled-in order is accepted: the processor only got there first.
    const other = `lua-filled-same-${randomUUID()}`;
    const t2 = randomUUID();
    await claimOrders(redis, 5000, [{ id: other, fingerprint: 'f5', token: t2 }]);
    await reserveOrder(redis, { id: other, sku: 'sku-lapse', qty: 5 }, new Date());
    expect(await acceptOrders(redis, 60, new Date(), [acceptance(other, t2, 5)])).toEqual([ACCEPTED]);
    expect(await redis.hget(keys.order(other), 'status')).toBe('created');
  });
});

describe('release (gateway)', () => {
  it('deletes only a claim that is still ours', async () => {
    const key = keys.idempotency('lua-release-1');
    const mine = randomUUID();
    await claimOrders(redis, 5000, [{ id: 'lua-release-1', fingerprint: 'f', token: mine }]);
    expect(await releaseClaim(redis, 'lua-release-1', randomUUID())).toEqual(NOT_OURS);
    expect(await redis.exists(key)).toBe(1);
    expect(await releaseClaim(redis, 'lua-release-1', mine)).toEqual({ outcome: 'released' });
    expect(await redis.exists(key)).toBe(0);
    expect(await releaseClaim(redis, 'lua-release-1', mine)).toEqual(NOT_OURS);
  });
  it('leaves an unreadable record alone and answers not ours, like claim and accept', async () => {
    const [notJson, notObject, aHash] = ['lua-release-bad-json', 'lua-release-bad-number', 'lua-release-bad-type'];
    await redis.set(keys.idempotency(notJson), 'not json');
    await redis.set(keys.idempotency(notObject), '42');
    await redis.del(keys.idempotency(aHash));
    await redis.hset(keys.idempotency(aHash), 'state', 'inflight');
    for (const id of [notJson, notObject, aHash]) expect(await releaseClaim(redis, id, randomUUID())).toEqual(NOT_OURS);
    expect(await redis.get(keys.idempotency(notJson))).toBe('not json');
    expect(await redis.get(keys.idempotency(notObject))).toBe('42');
    expect(await redis.hgetall(keys.idempotency(aHash))).toEqual({ state: 'inflight' });
  });
});

describe('reserve (processor)', () => {
  it.each(['10.0', '1e3', ' 5', '0x10', 'abc'])('refuses inventory %j before writing anything', async (value) => {
    const id = `lua-bad-stock-${randomUUID()}`;
    await redis.set(keys.inventory('lua-bad'), value);
    await expect(reserveOrder(redis, { id, sku: 'lua-bad', qty: 1 }, new Date())).rejects.toThrow(/not a whole number/);
    expect(await redis.exists(keys.order(id))).toBe(0);
    expect(await redis.get(keys.inventory('lua-bad'))).toBe(value);
  });

  it('decides once: the same order again changes nothing and gives the same outcome', async () => {
    await redis.set(keys.inventory('lua-once'), 3);
    const run = () => reserveOrder(redis, { id: 'lua-once-1', sku: 'lua-once', qty: 2 }, new Date());
    const processedBefore = Number(await redis.get(keys.processedCount));
    expect(await run()).toEqual({ outcome: 'created' });
    expect(await run()).toEqual({ outcome: 'decided_before', status: 'created', reason: '' });
    expect(await redis.get(keys.inventory('lua-once'))).toBe('1');
    expect(Number(await redis.get(keys.processedCount))).toBe(processedBefore + 1);
  });
});

describe('expire and reserve (processor): an order is never both expired and created', () => {
  const reserve = (id: string, sku: string) => reserveOrder(redis, { id, sku, qty: 1 }, new Date());
  const expire = (id: string, sku: string) => expireOrder(redis, { id, sku, qty: 1 }, new Date());
  const before = (status: string, reason = '') => ({ outcome: 'decided_before', status, reason });

  it('expires an undecided order once; reserve then refuses it and takes no stock', async () => {
    await redis.set(keys.inventory('lua-exp'), 5);
    const processed = Number((await redis.get(keys.processedCount)) ?? 0);
    await redis.hset(keys.order('lua-exp-1'), 'status', 'accepted', 'id', 'lua-exp-1');
    expect(await expire('lua-exp-1', 'lua-exp')).toEqual({ outcome: 'expired' });
    expect(await expire('lua-exp-1', 'lua-exp')).toEqual(before('expired'));
    expect(await reserve('lua-exp-1', 'lua-exp')).toEqual(before('expired'));
    expect(await redis.get(keys.inventory('lua-exp'))).toBe('5');
    expect(Number((await redis.get(keys.processedCount)) ?? 0)).toBe(processed);
    expect(await redis.hgetall(keys.order('lua-exp-1'))).toMatchObject({ status: 'expired', id: 'lua-exp-1', sku: 'lua-exp', qty: '1' });
  });

  it('leaves a created or rejected order as it is', async () => {
    await redis.set(keys.inventory('lua-exp2'), 5);
    expect(await reserve('lua-exp-2', 'lua-exp2')).toEqual({ outcome: 'created' });
    expect(await expire('lua-exp-2', 'lua-exp2')).toEqual(before('created'));
    expect(await reserve('lua-exp-3', 'no-such-sku')).toEqual({ outcome: 'rejected', reason: 'unknown_sku' });
    expect(await expire('lua-exp-3', 'no-such-sku')).toEqual(before('rejected', 'unknown_sku'));
    expect(await redis.hget(keys.order('lua-exp-2'), 'status')).toBe('created');
  });
});

describe('reserve and expire (processor): a copy with another payload than order:<id> changes nothing', () => {
  it.each([
    ['accepted', null],
    ['created', 'created'],
  ])('an order that is %s', async (_, decided) => {
    const id = `lua-mm-${randomUUID()}`;
    const recorded = { id, sku: 'lua-mm', qty: 2, email: 'a@example.com' };
    await redis.set(keys.inventory('lua-mm'), 10);
    await acceptOrders(redis, 60, new Date(), [{ ...recorded, token: 't', fingerprint: 'f', response: '{}' }]);
    if (decided) expect(await reserveOrder(redis, recorded, new Date())).toEqual({ outcome: 'created' });
    const [orderBefore, stockBefore] = [await redis.hgetall(keys.order(id)), await redis.get(keys.inventory('lua-mm'))];
    const processedBefore = await redis.get(keys.processedCount);

    const { email: _email, ...noEmail } = recorded;
    for (const [copy, fields] of [
      [{ ...recorded, qty: 3 }, ['qty']],
      [{ ...recorded, sku: 'lua-mm-2', email: 'b@example.com' }, ['sku', 'email']],
      [noEmail, ['email']],
    ] as const) {
      expect(await reserveOrder(redis, copy, new Date())).toEqual({ outcome: 'payload_mismatch', fields });
      expect(await expireOrder(redis, copy, new Date())).toEqual({ outcome: 'payload_mismatch', fields });
    }
    expect(await redis.hgetall(keys.order(id))).toEqual(orderBefore);
    expect(await redis.get(keys.inventory('lua-mm'))).toBe(stockBefore);
    expect(await redis.get(keys.processedCount)).toBe(processedBefore);
  });
});

describe('cancel (processor)', () => {
  it('refuses inventory that is not a whole number before giving a created order back', async () => {
    await redis.set(keys.inventory('lua-cx-bad'), 5);
    const order = { id: `lua-cx-bad-${randomUUID()}`, sku: 'lua-cx-bad', qty: 2 };
    expect(await reserveOrder(redis, order, new Date())).toEqual({ outcome: 'created' });
    await redis.set(keys.inventory('lua-cx-bad'), '3.0');
    await expect(cancelOrder(redis, order, 'x', new Date())).rejects.toThrow(/not a whole number/);
    expect(await redis.hget(keys.order(order.id), 'status')).toBe('created');
    expect(await redis.hget(keys.order(order.id), 'cancelReason')).toBeNull();
  });

  it('reserve treats a cancelled order as decided: a late placement reserves nothing', async () => {
    await redis.set(keys.inventory('lua-cx-late'), 4);
    const order = { id: `lua-cx-late-${randomUUID()}`, sku: 'lua-cx-late', qty: 1 };
    expect(await cancelOrder(redis, order, '', new Date())).toEqual({ outcome: 'cancelled', units: 0 });
    expect(await reserveOrder(redis, order, new Date())).toEqual({ outcome: 'decided_before', status: 'cancelled', reason: '' });
    expect(await expireOrder(redis, order, new Date())).toEqual({ outcome: 'decided_before', status: 'cancelled', reason: '' });
    expect(await redis.get(keys.inventory('lua-cx-late'))).toBe('4');
  });
});

describe('cancelRequested (gateway)', () => {
  const at = new Date('2026-01-01T00:00:00.000Z');
  it('records the first confirmed request once; the first reason stays', async () => {
    const id = `lua-cr-${randomUUID()}`;
    await redis.hset(keys.order(id), 'id', id, 'status', 'accepted', 'updatedAt', 'then');
    expect(await recordCancelRequest(redis, id, 'first', at)).toEqual({ outcome: 'recorded', status: 'accepted', reason: 'first' });
    expect(await recordCancelRequest(redis, id, 'second', new Date())).toEqual({
      outcome: 'requested_before',
      status: 'accepted',
      reason: 'first',
    });
    expect(await redis.hgetall(keys.order(id))).toEqual({
      id,
      status: 'accepted',
      cancelReason: 'first',
      cancelRequestedAt: at.toISOString(),
      updatedAt: at.toISOString(),
    });
  });

  it('leaves a rejected or expired order alone and writes nothing for a missing one', async () => {
    for (const status of ['rejected', 'expired']) {
      const id = `lua-cr-${status}-${randomUUID()}`;
      await redis.hset(keys.order(id), 'status', status);
      expect(await recordCancelRequest(redis, id, 'x', at)).toEqual({ outcome: 'final', status });
      expect(await redis.hgetall(keys.order(id))).toEqual({ status });
    }
    const missing = `lua-cr-missing-${randomUUID()}`;
    expect(await recordCancelRequest(redis, missing, 'x', at)).toEqual({ outcome: 'not_found' });
    expect(await redis.exists(keys.order(missing))).toBe(0);
  });

  it('marks an order the processor cancelled already without touching its status or time', async () => {
    const id = `lua-cr-done-${randomUUID()}`;
    await redis.hset(keys.order(id), 'status', 'cancelled', 'updatedAt', 'then', 'cancelReason', 'processor');
    expect(await recordCancelRequest(redis, id, 'gateway', at)).toEqual({ outcome: 'recorded', status: 'cancelled', reason: 'processor' });
    expect(await redis.hgetall(keys.order(id))).toMatchObject({ status: 'cancelled', updatedAt: 'then', cancelReason: 'processor' });
  });
});

describe('notifyClaim (notifier)', () => {
  it('counts an attempt once when the same claim is sent twice', async () => {
    const key = keys.notification('lua-notify-1');
    const token = randomUUID();
    expect(await claimNotification(redis, 'lua-notify-1', token, 5000, 'log')).toEqual({ outcome: 'claimed', attempts: 1 });
    expect(await claimNotification(redis, 'lua-notify-1', token, 5000, 'log')).toEqual({ outcome: 'claimed', attempts: 1 });
    expect(await redis.hget(key, 'attempts')).toBe('1');
    // Another sender meets the live lease.
    const other = await claimNotification(redis, 'lua-notify-1', randomUUID(), 5000, 'log');
    expect(other).toEqual({ outcome: 'leased', leaseLeftMs: expect.any(Number) });
    expect(other).toMatchObject({ leaseLeftMs: expect.toSatisfy((ms: number) => ms > 4000 && ms <= 5000) });
  });

  it('takes a failed notification back out of the failed count when it is retried', async () => {
    const id = 'lua-notify-2';
    const key = keys.notification(id);
    const first = randomUUID();
    await claimNotification(redis, id, first, 5000, 'log');
    const failedBefore = Number(await redis.get(keys.stats.notificationsFailed));
    // Not this attempt's lease: nothing recorded.
    expect(await recordNotificationFailed(redis, id, randomUUID(), 'boom', true)).toEqual(NOT_OURS);
    expect(await recordNotificationFailed(redis, id, first, 'boom', true)).toEqual({ outcome: 'recorded' });
    expect(Number(await redis.get(keys.stats.notificationsFailed))).toBe(failedBefore + 1);
    const second = randomUUID();
    expect(await claimNotification(redis, id, second, 5000, 'log')).toEqual({ outcome: 'claimed', attempts: 2 });
    expect(Number(await redis.get(keys.stats.notificationsFailed))).toBe(failedBefore);
    expect(await recordNotificationSent(redis, id, now())).toEqual({ outcome: 'recorded' });
    expect(await recordNotificationSent(redis, id, now())).toEqual({ outcome: 'recorded_before' });
    expect(await claimNotification(redis, id, randomUUID(), 5000, 'log')).toEqual({ outcome: 'already_sent', attempts: 2 });
    expect(await redis.hgetall(key)).toMatchObject({ status: 'sent', attempts: '2' });
  });
});

// Each wrapper checks its script's reply. A real script never answers outside its header, so a
// client whose command runs a stand-in script produces the unexpected reply.
describe('the wrappers refuse a reply their script does not list', () => {
  const cases: [string, string, number | undefined, (r: RedisClient) => Promise<unknown>][] = [
    [
      'claim',
      'return {{0}, {9}}',
      undefined,
      (r) =>
        claimOrders(
          r,
          5000,
          [1, 2].map((n) => ({ id: `lua-shape-${n}`, fingerprint: 'f', token: 't' })),
        ),
    ],
    ['claim', 'return {}', undefined, (r) => claimOrders(r, 5000, [{ id: 'lua-shape-1', fingerprint: 'f', token: 't' }])],
    ['claim', 'return {{1}}', undefined, (r) => claimOrders(r, 5000, [{ id: 'lua-shape-1', fingerprint: 'f', token: 't' }])],
    ['claim', "return {{3, 'soon'}}", undefined, (r) => claimOrders(r, 5000, [{ id: 'lua-shape-1', fingerprint: 'f', token: 't' }])],
    [
      'accept',
      'return {7}',
      undefined,
      (r) => acceptOrders(r, 60, new Date(), [{ id: 'lua-shape-1', sku: 's', qty: 1, token: 't', fingerprint: 'f', response: '{}' }]),
    ],
    ['release', "return 'OK'", 1, (r) => releaseClaim(r, 'lua-shape-1', 't')],
    ['reserve', "return {0, 'created', 'out_of_stock'}", 4, (r) => reserveOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, new Date())],
    [
      'reserve',
      "return {0, 'rejected', 'no_reason_listed'}",
      4,
      (r) => reserveOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, new Date()),
    ],
    ['reserve', "return {0, 'created'}", 4, (r) => reserveOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, new Date())],
    ['expireOrder', "return {0, 'created', ''}", 1, (r) => expireOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, new Date())],
    ['expireOrder', 'return {2, {}}', 1, (r) => expireOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, new Date())],
    ['reserve', "return {2, {'price'}}", 4, (r) => reserveOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, new Date())],
    ['cancel', 'return {0, -1}', 3, (r) => cancelOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, undefined, new Date())],
    ['cancel', 'return {5, 0}', 3, (r) => cancelOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, undefined, new Date())],
    ['cancel', "return {2, {'price'}}", 3, (r) => cancelOrder(r, { id: 'lua-shape-1', sku: 's', qty: 1 }, undefined, new Date())],
    ['cancelRequested', "return {0, 'accepted'}", 1, (r) => recordCancelRequest(r, 'lua-shape-1', undefined, new Date())],
    ['cancelRequested', "return {2, 'accepted', ''}", 1, (r) => recordCancelRequest(r, 'lua-shape-1', undefined, new Date())],
    ['notifyClaim', 'return {3, 1}', 2, (r) => claimNotification(r, 'lua-shape-1', 't', 5000, 'log')],
    ['notifyClaim', 'return {0, -1}', 2, (r) => claimNotification(r, 'lua-shape-1', 't', 5000, 'log')],
    ['notifySent', 'return 2', 2, (r) => recordNotificationSent(r, 'lua-shape-1', now())],
    ['notifyFail', 'return {1}', 2, (r) => recordNotificationFailed(r, 'lua-shape-1', 't', 'boom', false)],
  ];
  it.each(cases)('%s answering %s: ScriptReplyError naming the script', async (name, lua, numberOfKeys, call) => {
    const stand = createRedis({ url: redisUrl });
    try {
      await redisReady(stand);
      stand.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
      const err = await call(stand).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ScriptReplyError);
      expect((err as ScriptReplyError).message).toContain(`from the ${name} script`);
    } finally {
      stand.disconnect();
    }
  });
});

describe('inventoryAdjust (gateway)', () => {
  const sku = (name: string) => `lua-inv-${name}-${randomUUID().slice(0, 8)}`;
  const adjust = (s: string, delta: number, idempotencyKey?: string, token = randomUUID()) =>
    adjustInventory(redis, { sku: s, delta, idempotencyKey, token }, 60, new Date());

  it('adds and takes, keeping inventory:<sku> a plain integer string the processor can DECRBY', async () => {
    const s = sku('plain');
    await redis.set(keys.inventory(s), '10');
    expect(await adjust(s, 5)).toEqual({ outcome: 'applied', available: 15 });
    expect(await adjust(s, -15)).toEqual({ outcome: 'applied', available: 0 });
    expect(await redis.get(keys.inventory(s))).toBe('0');
    expect(await adjust(s, 7)).toEqual({ outcome: 'applied', available: 7 });
    expect(await reserveOrder(redis, { id: `${s}-order`, sku: s, qty: 7 }, new Date())).toEqual({ outcome: 'created' });
    expect(await redis.get(keys.inventory(s))).toBe('0');
  });

  it('never goes below 0 nor past the limit, and a refusal writes nothing', async () => {
    const s = sku('bounds');
    await redis.set(keys.inventory(s), '3');
    expect(await adjust(s, -4, 'k-low')).toEqual({ outcome: 'insufficient', available: 3 });
    await redis.set(keys.inventory(s), String(MAX_INVENTORY_LEVEL - 1));
    expect(await adjust(s, 2, 'k-high')).toEqual({ outcome: 'over_limit', available: MAX_INVENTORY_LEVEL - 1 });
    expect(await adjust(s, 1)).toEqual({ outcome: 'applied', available: MAX_INVENTORY_LEVEL });
    // Refusals store nothing under their key: a retry is decided afresh.
    expect(await redis.exists(keys.inventoryIdempotency(s, 'k-low'), keys.inventoryIdempotency(s, 'k-high'))).toBe(0);
  });

  it('refuses a SKU never stocked, whatever the sign, and creates nothing', async () => {
    const s = sku('unknown');
    expect(await adjust(s, 5, 'k')).toEqual({ outcome: 'unknown_sku' });
    expect(await adjust(s, -5)).toEqual({ outcome: 'unknown_sku' });
    expect(await redis.exists(keys.inventory(s), keys.inventoryIdempotency(s, 'k'))).toBe(0);
  });

  it('applies once per key: the same delta replays the stored level, another delta is refused', async () => {
    const s = sku('key');
    await redis.set(keys.inventory(s), '10');
    expect(await adjust(s, -3, 'key-1')).toEqual({ outcome: 'applied', available: 7 });
    await redis.set(keys.inventory(s), '50');
    // The stored answer, not the level now; and nothing applied again.
    expect(await adjust(s, -3, 'key-1')).toEqual({ outcome: 'replayed', available: 7 });
    expect(await adjust(s, -4, 'key-1')).toEqual({ outcome: 'key_reused', delta: '-3' });
    expect(await redis.get(keys.inventory(s))).toBe('50');
    const ttl = await redis.ttl(keys.inventoryIdempotency(s, 'key-1'));
    expect(ttl).toBeGreaterThan(50);
    expect(ttl).toBeLessThanOrEqual(60);
    // Keys are per SKU: the same key on another SKU is another key.
    const other = sku('key-other');
    await redis.set(keys.inventory(other), '1');
    expect(await adjust(other, -1, 'key-1')).toEqual({ outcome: 'applied', available: 0 });
  });

  it('treats the same call sent twice (a resend after a reconnect) as applied once, not as a replay', async () => {
    const s = sku('resend');
    await redis.set(keys.inventory(s), '10');
    const token = randomUUID();
    expect(await adjust(s, -2, 'k', token)).toEqual({ outcome: 'applied', available: 8 });
    expect(await adjust(s, -2, 'k', token)).toEqual({ outcome: 'applied', available: 8 });
    expect(await redis.get(keys.inventory(s))).toBe('8');
  });

  it.each(['10.0', '1e3', ' 5', '-1', '007', '+5', 'ten', '1234567890123456'])(
    'refuses a level of %j before writing anything',
    async (raw) => {
      const s = sku('bad');
      await redis.set(keys.inventory(s), raw);
      expect(await adjust(s, 1, 'k')).toEqual({ outcome: 'unreadable_level', raw });
      expect(await redis.get(keys.inventory(s))).toBe(raw);
      expect(await redis.exists(keys.inventoryIdempotency(s, 'k'))).toBe(0);
    },
  );

  it('refuses a level that is not a string, and leaves an unreadable record alone', async () => {
    const s = sku('types');
    await redis.hset(keys.inventory(s), 'n', '1');
    expect(await adjust(s, 1)).toEqual({ outcome: 'unreadable_level', raw: 'not a string' });
    await redis.del(keys.inventory(s));
    await redis.set(keys.inventory(s), '5');
    for (const record of ['not json', '{"delta":-1}', '[1]']) {
      await redis.set(keys.inventoryIdempotency(s, 'k'), record);
      expect(await adjust(s, -1, 'k')).toEqual({ outcome: 'unreadable_record' });
      expect(await redis.get(keys.inventoryIdempotency(s, 'k'))).toBe(record);
    }
    expect(await redis.get(keys.inventory(s))).toBe('5');
  });

  it('refuses arguments the script would take wrongly, before calling it', async () => {
    const s = sku('args');
    for (const delta of [0, 1.5, MAX_INVENTORY_DELTA + 1, -MAX_INVENTORY_DELTA - 1]) {
      await expect(adjust(s, delta)).rejects.toThrow(/delta/);
    }
    for (const key of ['', 'a:b', 'a b', 'x'.repeat(129)]) await expect(adjust(s, 1, key)).rejects.toThrow(/idempotency key/);
    await expect(adjustInventory(redis, { sku: 'a b', delta: 1, token: 't' }, 60, new Date())).rejects.toThrow(/sku/);
  });
});

describe('the inventoryAdjust wrapper refuses a reply its script does not list', () => {
  it.each([
    'return {8, 1}',
    'return {0}',
    'return {0, -1}',
    "return {1, 'seven'}",
    'return {2, 3}',
    'return {5, 1}',
    'return {6}',
    'return 0',
  ])('answering %s: ScriptReplyError naming the script', async (lua) => {
    const stand = createRedis({ url: redisUrl });
    try {
      await redisReady(stand);
      stand.defineCommand('inventoryAdjust', { lua });
      const err = await adjustInventory(stand, { sku: 'lua-shape', delta: 1, token: 't' }, 60, new Date()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ScriptReplyError);
      expect((err as ScriptReplyError).message).toContain('from the inventoryAdjust script');
    } finally {
      stand.disconnect();
    }
  });
});

describe('shared Lua code (lib/)', () => {
  it('goes before exactly the scripts whose header says they use it, and before no other', () => {
    const scripts = loadLuaScripts();
    const using = scripts.filter((s) => s.lua.includes('local function order_change(')).map((s) => s.name);
    expect(using.sort()).toEqual(['accept', 'cancel', 'cancelRequested', 'expireOrder', 'notifyFail', 'notifySent', 'reserve']);
    for (const s of scripts) expect(s.lua.split('local function order_change(').length, s.name).toBeLessThanOrEqual(2);
  });
});

describe('BENCH_SKIP_HISTORY_INDEX (benchmark only)', () => {
  /** Runs `fn` with these environment variables set, restoring them after. */
  const withEnv = <T>(vars: Record<string, string>, fn: () => T): T => {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    Object.assign(process.env, vars);
    try {
      return fn();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  };

  it('is off unless set: no script carries the no-op functions', () => {
    expect(loadLuaScripts().filter((s) => s.lua.includes('BENCH_SKIP_HISTORY_INDEX'))).toEqual([]);
  });

  it('is refused under NODE_ENV=production', () => {
    expect(() => withEnv({ BENCH_SKIP_HISTORY_INDEX: '1', NODE_ENV: 'production' }, loadLuaScripts)).toThrow(/benchmark only/);
  });

  it('decides as always but writes no history and no index entry', async () => {
    const bench = withEnv({ BENCH_SKIP_HISTORY_INDEX: '1' }, () => createRedis({ url: redisUrl }));
    try {
      await redisReady(bench);
      const id = `lua-bench-${randomUUID()}`;
      await redis.set(keys.inventory('lua-bench'), 5);
      expect(await reserveOrder(bench, { id, sku: 'lua-bench', qty: 2 }, new Date())).toEqual({ outcome: 'created' });
      expect(await redis.hget(keys.order(id), 'status')).toBe('created');
      expect(await redis.get(keys.inventory('lua-bench'))).toBe('3');
      expect(await redis.exists(keys.history(id))).toBe(0);
      expect(await redis.zscore(keys.ordersIndex, id)).toBeNull();
      // The same order through the usual scripts is recorded as always.
      const usual = `lua-bench-${randomUUID()}`;
      expect(await reserveOrder(redis, { id: usual, sku: 'lua-bench', qty: 1 }, new Date())).toEqual({ outcome: 'created' });
      expect(await redis.llen(keys.history(usual))).toBe(1);
      expect(await redis.zscore(keys.ordersIndex, usual)).not.toBeNull();
    } finally {
      bench.disconnect();
    }
  });

  it("covers the gateway's acceptance too: the order recorded, no history, no index entry", async () => {
    const bench = withEnv({ BENCH_SKIP_HISTORY_INDEX: '1' }, () => createRedis({ url: redisUrl }));
    try {
      await redisReady(bench);
      const accept = async (client: typeof redis) => {
        const id = `lua-bench-accept-${randomUUID()}`;
        const token = randomUUID();
        await claimOrders(client, 5000, [{ id, fingerprint: 'fb', token }]);
        expect(
          await acceptOrders(client, 60, new Date(), [{ id, sku: 'lua-bench', qty: 1, token, fingerprint: 'fb', response: '{}' }]),
        ).toEqual([ACCEPTED]);
        expect(await redis.hget(keys.order(id), 'status')).toBe('accepted');
        return id;
      };
      const skipped = await accept(bench);
      expect(await redis.exists(keys.history(skipped))).toBe(0);
      expect(await redis.zscore(keys.ordersIndex, skipped)).toBeNull();
      expect(await redis.zscore(keys.ordersBySku('lua-bench'), skipped)).toBeNull();
      const usual = await accept(redis);
      expect(await redis.llen(keys.history(usual))).toBe(1);
      expect(await redis.zscore(keys.ordersIndex, usual)).not.toBeNull();
      expect(await redis.zscore(keys.ordersBySku('lua-bench'), usual)).not.toBeNull();
    } finally {
      bench.disconnect();
    }
  });
});
