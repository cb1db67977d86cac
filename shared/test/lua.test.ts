// The Lua scripts on a real Redis, at the edges the services' tests do not reach: a script the
// client resends after a reconnect (ioredis does this for commands in flight) must not count
// twice, and a bad inventory value must be refused before anything is written.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { acceptOrders, claimOrders, createRedis, keys, redisReady, type RedisClient } from '../src/index.js';
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

describe('claim (gateway)', () => {
  it('treats the same claim sent twice as one: the second answer is still "claimed"', async () => {
    const claim = { id: 'lua-claim-1', fingerprint: 'fp-1', token: randomUUID() };
    expect(await claimOrders(redis, 5000, [claim])).toEqual([[0]]);
    expect(await claimOrders(redis, 5000, [claim])).toEqual([[0]]);
    expect(JSON.parse((await redis.get(keys.idempotency('lua-claim-1'))) ?? '')).toEqual({
      state: 'inflight',
      fp: 'fp-1',
      token: claim.token,
    });
    // Another request with the same payload is told the first is in flight.
    const [reply] = await claimOrders(redis, 5000, [{ ...claim, token: randomUUID() }]);
    expect(reply?.[0]).toBe(3);
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
    ).toEqual([1]);
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
    expect(replies[0]).toEqual([0]);
    expect(replies[1]).toEqual([1, '{"r":1}']);
    expect(replies[2]).toEqual([2]);
    expect(replies[3]).toEqual([0]);
    expect(replies[4]?.[0]).toBe(3);
    expect(replies[4]?.[1]).toBeGreaterThan(4000);
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
    expect(claims).toEqual([[4], [4], [0]]);

    await redis.del(keys.order(notJson));
    await redis.set(keys.order(aHash), 'a string where a hash belongs');
    const acceptance = (id: string, token: string) => ({ id, sku: 's', qty: 1, token, fingerprint: 'f', response: '{}' });
    const accepts = await acceptOrders(redis, 60, new Date(), [
      acceptance(notJson, randomUUID()),
      acceptance(aHash, randomUUID()),
      acceptance(fresh, freshToken),
    ]);
    expect(accepts).toEqual([0, 0, 1]);
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
    expect(replies).toEqual([1, 0, 1]);
    expect(Number(await redis.get(keys.stats.accepted))).toBe(acceptedBefore + 2);
    expect(JSON.parse((await redis.get(keys.idempotency(mine))) ?? '')).toEqual({
      state: 'accepted',
      fp: 'f',
      response: `{"id":"${mine}"}`,
    });
    expect(await redis.ttl(keys.idempotency(mine))).toBeGreaterThan(50);
    expect(JSON.parse((await redis.get(keys.idempotency(taken))) ?? '')).toMatchObject({ state: 'inflight' });
    // Newest first: the list gets the recorded ones in the order given.
    expect(await redis.lrange(keys.recentOrders, 0, 1)).toEqual([lapsed, mine]);
    // Every order hash is written, also the one whose record another claim holds.
    for (const orderId of [mine, taken, lapsed]) {
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
    // Sent again (a client resend after a reconnect): nothing counts twice.
    expect(await acceptOrders(redis, 60, at, [acceptance(mine, tMine)])).toEqual([0]);
    expect(Number(await redis.get(keys.stats.accepted))).toBe(acceptedBefore + 2);
  });
});

describe('release (gateway)', () => {
  it('deletes only a claim that is still ours', async () => {
    const key = keys.idempotency('lua-release-1');
    const mine = randomUUID();
    await claimOrders(redis, 5000, [{ id: 'lua-release-1', fingerprint: 'f', token: mine }]);
    expect(await redis.release(key, randomUUID())).toBe(0);
    expect(await redis.exists(key)).toBe(1);
    expect(await redis.release(key, mine)).toBe(1);
    expect(await redis.exists(key)).toBe(0);
  });
});

describe('reserve (processor)', () => {
  it.each(['10.0', '1e3', ' 5', '0x10', 'abc'])('refuses inventory %j before writing anything', async (value) => {
    const id = `lua-bad-stock-${randomUUID()}`;
    await redis.set(keys.inventory('lua-bad'), value);
    await expect(
      redis.reserve(keys.order(id), keys.inventory('lua-bad'), keys.processedCount, keys.stats.rejected, id, 'lua-bad', 1, '', now()),
    ).rejects.toThrow(/not a whole number/);
    expect(await redis.exists(keys.order(id))).toBe(0);
    expect(await redis.get(keys.inventory('lua-bad'))).toBe(value);
  });

  it('decides once: the same order again changes nothing and gives the same outcome', async () => {
    await redis.set(keys.inventory('lua-once'), 3);
    const run = () =>
      redis.reserve(
        keys.order('lua-once-1'),
        keys.inventory('lua-once'),
        keys.processedCount,
        keys.stats.rejected,
        'lua-once-1',
        'lua-once',
        2,
        '',
        now(),
      );
    const processedBefore = Number(await redis.get(keys.processedCount));
    expect(await run()).toEqual([0, 'created', '']);
    expect(await run()).toEqual([1, 'created', '']);
    expect(await redis.get(keys.inventory('lua-once'))).toBe('1');
    expect(Number(await redis.get(keys.processedCount))).toBe(processedBefore + 1);
  });
});

describe('expire and reserve (processor): an order is never both expired and created', () => {
  const reserve = (id: string, sku: string) =>
    redis.reserve(keys.order(id), keys.inventory(sku), keys.processedCount, keys.stats.rejected, id, sku, 1, '', now());
  const expire = (id: string, sku: string) => redis.expire(keys.order(id), id, sku, 1, '', now());

  it('expires an undecided order once; reserve then refuses it and takes no stock', async () => {
    await redis.set(keys.inventory('lua-exp'), 5);
    const processed = Number((await redis.get(keys.processedCount)) ?? 0);
    await redis.hset(keys.order('lua-exp-1'), 'status', 'accepted', 'id', 'lua-exp-1');
    expect(await expire('lua-exp-1', 'lua-exp')).toEqual([0, 'expired', '']);
    expect(await expire('lua-exp-1', 'lua-exp')).toEqual([1, 'expired', '']);
    expect(await reserve('lua-exp-1', 'lua-exp')).toEqual([1, 'expired', '']);
    expect(await redis.get(keys.inventory('lua-exp'))).toBe('5');
    expect(Number((await redis.get(keys.processedCount)) ?? 0)).toBe(processed);
    expect(await redis.hgetall(keys.order('lua-exp-1'))).toMatchObject({ status: 'expired', id: 'lua-exp-1', sku: 'lua-exp', qty: '1' });
  });

  it('leaves a created or rejected order as it is', async () => {
    await redis.set(keys.inventory('lua-exp2'), 5);
    expect(await reserve('lua-exp-2', 'lua-exp2')).toEqual([0, 'created', '']);
    expect(await expire('lua-exp-2', 'lua-exp2')).toEqual([1, 'created', '']);
    expect(await reserve('lua-exp-3', 'no-such-sku')).toEqual([0, 'rejected', 'unknown_sku']);
    expect(await expire('lua-exp-3', 'no-such-sku')).toEqual([1, 'rejected', 'unknown_sku']);
    expect(await redis.hget(keys.order('lua-exp-2'), 'status')).toBe('created');
  });
});

describe('notifyClaim (notifier)', () => {
  it('counts an attempt once when the same claim is sent twice', async () => {
    const key = keys.notification('lua-notify-1');
    const token = randomUUID();
    expect(await redis.notifyClaim(key, keys.stats.notificationsFailed, token, 5000, 'log')).toEqual([0, 1]);
    expect(await redis.notifyClaim(key, keys.stats.notificationsFailed, token, 5000, 'log')).toEqual([0, 1]);
    expect(await redis.hget(key, 'attempts')).toBe('1');
    // Another sender meets the live lease.
    const [code] = await redis.notifyClaim(key, keys.stats.notificationsFailed, randomUUID(), 5000, 'log');
    expect(code).toBe(2);
  });

  it('takes a failed notification back out of the failed count when it is retried', async () => {
    const key = keys.notification('lua-notify-2');
    const first = randomUUID();
    await redis.notifyClaim(key, keys.stats.notificationsFailed, first, 5000, 'log');
    const failedBefore = Number(await redis.get(keys.stats.notificationsFailed));
    expect(await redis.notifyFail(key, keys.stats.notificationsFailed, first, 'boom', '1')).toBe(1);
    expect(Number(await redis.get(keys.stats.notificationsFailed))).toBe(failedBefore + 1);
    expect(await redis.notifyClaim(key, keys.stats.notificationsFailed, randomUUID(), 5000, 'log')).toEqual([0, 2]);
    expect(Number(await redis.get(keys.stats.notificationsFailed))).toBe(failedBefore);
    expect(await redis.notifySent(key, keys.stats.notificationsSent, now())).toBe(1);
    expect(await redis.notifySent(key, keys.stats.notificationsSent, now())).toBe(0);
    expect(await redis.hgetall(key)).toMatchObject({ status: 'sent', attempts: '2' });
  });
});
