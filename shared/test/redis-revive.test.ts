// A Sentinel failover must not end a client for good. ioredis aborts a client's connect when its
// failover detector sees +switch-master while the client is asking a Sentinel for the primary, and
// then leaves it ended ("Connection is closed." for every command): a consumer held its deliveries
// forever after such a failover. createRedis connects such a client again; closing on purpose
// still closes. The clients here retry every 5 ms instead of backing off, so that each spends much
// of the failover asking the Sentinels, which makes the race likely in every round (without the
// fix, 9 of 20 clients ended in one round on 2026-12-02).
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient } from '@order-pipeline/shared';
import { haveBinaries } from '../../scripts/local-servers.mjs';
import { waitFor } from '../../test/helpers/processes.js';
import { startSentinelGroup, type SentinelGroup } from '../../test/helpers/sentinel.js';

const bins = haveBinaries();
const CLIENTS = 20;
const ROUNDS = 2;

describe.skipIf(!bins.redis)('a client through Sentinel failovers', () => {
  let group: SentinelGroup;
  let clients: RedisClient[] = [];
  let ended = 0;

  beforeAll(async () => {
    group = await startSentinelGroup();
    await group.waitForReplicas(2);
    const sentinels = group.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }));
    clients = Array.from({ length: CLIENTS }, () =>
      createRedis({ url: 'redis://127.0.0.1:1', sentinels, sentinelName: group.name }, { overrides: { retryStrategy: () => 5 } }),
    );
    for (const c of clients) {
      c.on('error', () => undefined);
      c.on('end', () => ended++);
    }
    await waitFor('every client ready', async () => (clients.every((c) => c.status === 'ready') ? true : undefined), 20_000);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await group?.stop();
  });

  it(`every client writes to the new primary after each of ${ROUNDS} primary kills`, async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const old = await group.primary();
      await old.kill();
      await group.waitForFailover(old);
      await waitFor(
        `round ${round}: every client writing to the new primary`,
        async () =>
          (
            await Promise.all(
              clients.map((c, i) =>
                c.set(`revive:${i}`, round).then(
                  () => true,
                  () => false,
                ),
              ),
            )
          ).every(Boolean)
            ? true
            : undefined,
        20_000,
        200,
      );
      console.log(`failover ${round}: clients ended by the race so far ${ended} of ${CLIENTS * round} client failovers; all writing again`);
      if (round === ROUNDS) break;
      await old.start();
      await group.waitForReplicas(2, 30_000);
    }
  }, 240_000);

  it('a client closed on purpose stays closed', async () => {
    const [first] = clients;
    if (!first) throw new Error('no client');
    first.disconnect();
    await sleep(1000);
    expect(first.status).toBe('end');
    clients = clients.slice(1);
  });
});
