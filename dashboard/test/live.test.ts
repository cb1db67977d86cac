// GET /events, the live page's stream, against real Redis and RabbitMQ: what a snapshot holds, one
// shared poll for every watcher and none without watchers, broker nodes up and down, Redis down,
// and a stop that does not wait on open streams.
import {
  createLogger,
  createRedis,
  keys,
  loadConfig,
  redisReady,
  waitForBroker,
  type Broker,
  type Config,
  type RedisClient,
} from '@order-pipeline/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBroker } from '../../test/helpers/broker.js';
import { freePort, waitFor } from '../../test/helpers/processes.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Dashboard } from '../src/app.js';
import type { Figures } from '../src/figures.js';
import { ratesBetween, type Snapshot } from '../src/snapshot.js';

const { redisUrl, rabbitmqUrls } = testServers();
const log = createLogger('dashboard', 'silent');

let deadPort = 0;
let config: Config;
let seed: RedisClient;
let dashRedis: RedisClient;
let broker: Broker;
let dash: Dashboard;
const cleanups: (() => Promise<unknown>)[] = [];

interface Stream {
  events: { event: string; data: string }[];
  /** Text before the first event (the retry field). */
  raw: string;
  headers: Headers;
  ended: Promise<void>;
  close(): void;
}

/** Opens an event stream and collects its events until closed. */
async function open(base: string): Promise<Stream> {
  const abort = new AbortController();
  const res = await fetch(`${base}/events`, { signal: abort.signal, headers: { Accept: 'text/event-stream' } });
  expect(res.status).toBe(200);
  const stream: Stream = { events: [], raw: '', headers: res.headers, ended: Promise.resolve(), close: () => abort.abort() };
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  stream.ended = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        const text = decoder.decode(value, { stream: true });
        stream.raw += text;
        buffer += text;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data !== undefined) stream.events.push({ event, data });
        }
      }
    } catch {
      // Aborted by the test.
    }
  })();
  return stream;
}

const snapshots = (s: Stream): Snapshot[] => s.events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data) as Snapshot);

function snapshotWhen(s: Stream, what: string, ok: (snap: Snapshot) => boolean): Promise<Snapshot> {
  return waitFor(what, () => snapshots(s).find(ok), 15_000);
}

async function calls(command: string): Promise<number> {
  const info = await seed.info('commandstats');
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  deadPort = await freePort();
  // One node that answers and one that does not: the page must show both.
  config = loadConfig('dashboard', {
    REDIS_URL: redisUrl,
    RABBITMQ_URLS: [...rabbitmqUrls, `amqp://guest:secret@127.0.0.1:${deadPort}`].join(','),
    LOG_LEVEL: 'silent',
  });
  seed = createRedis({ url: redisUrl });
  dashRedis = createRedis({ url: redisUrl });
  broker = newBroker(config, log, 'live-test');
  await Promise.all([redisReady(seed), redisReady(dashRedis), waitForBroker(broker, 20_000)]);
  await seed.mset(keys.stats.accepted, '5', keys.processedCount, '4', keys.inventory('live-sku'), '9');
  await seed.hset(keys.order('live-o1'), {
    id: 'live-o1',
    sku: 'live-sku',
    qty: '2',
    status: 'created',
    createdAt: new Date().toISOString(),
  });
  await seed.hset(keys.notification('live-o1'), { status: 'sent', attempts: '1' });
  await seed.hset(keys.order('live-o2'), { id: 'live-o2', sku: 'nope', qty: '1', status: 'rejected', reason: 'unknown_sku' });
  await seed.hset(keys.order('live-o3'), { id: 'live-o3', sku: 'live-sku', qty: '1', status: 'cancelled', cancelReason: 'gone' });
  // A confirmed cancellation request the processor has not decided yet.
  await seed.hset(keys.order('live-o4'), {
    id: 'live-o4',
    sku: 'live-sku',
    qty: '1',
    status: 'created',
    cancelRequestedAt: new Date().toISOString(),
  });
  await seed.lpush(keys.recentOrders, 'live-o1', 'live-o2', 'live-o3', 'live-o4');
  dash = await start({ config, redis: dashRedis, broker, log, port: 0, host: '127.0.0.1', liveEveryMs: 200 });
});

afterAll(async () => {
  await dash?.stop();
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await broker?.close();
  seed?.disconnect();
  dashRedis?.disconnect();
});

describe('GET /events', () => {
  it('streams snapshots with the figures, recent orders, queues and broker nodes', async () => {
    const s = await open(dash.address);
    cleanups.push(async () => s.close());
    expect(s.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(s.headers.get('cache-control')).toBe('no-store');
    const snap = await snapshotWhen(
      s,
      'a snapshot with queues and probed nodes',
      (x) => x.figures?.queues != null && x.brokers.nodes.every((n) => n.checkedAt),
    );
    expect(s.raw.startsWith('retry: ')).toBe(true);
    expect(snap.redis).toEqual({ up: true });
    expect(snap.figures?.orders.accepted).toBe(5);
    expect(snap.figures?.inventory).toEqual({ 'live-sku': 9 });
    expect(Object.keys(snap.figures?.queues ?? {})).toContain('orders.queue.dlq');
    expect(snap.recent.map((o) => [o.id, o.status, o.reason, o.notification?.status])).toEqual([
      ['live-o4', 'cancelling', undefined, undefined],
      ['live-o3', 'cancelled', undefined, undefined],
      ['live-o2', 'rejected', 'unknown_sku', undefined],
      ['live-o1', 'created', undefined, 'sent'],
    ]);
    expect(snap.recent[3]).toMatchObject({ sku: 'live-sku', qty: 2 });
    // Credentials never leave the server.
    const live = rabbitmqUrls[0] as string;
    const liveNode = `${new URL(live).hostname}:${new URL(live).port}`;
    expect(snap.brokers.connectedTo).toBe(liveNode);
    expect(snap.brokers.nodes.map((n) => [n.node, n.up])).toEqual([
      [liveNode, true],
      [`127.0.0.1:${deadPort}`, false],
    ]);
    expect(s.raw).not.toMatch(/guest|secret/);
    s.close();
  });

  it('computes rates from the counters between snapshots', async () => {
    const s = await open(dash.address);
    cleanups.push(async () => s.close());
    await snapshotWhen(s, 'a snapshot with rates', (x) => x.rates !== null);
    await seed.incrby(keys.stats.accepted, 10);
    const snap = await snapshotWhen(s, 'a positive order rate', (x) => (x.rates?.accepted ?? 0) > 0);
    expect(snap.history.length).toBeGreaterThan(0);
    expect(snap.history.some((p) => p.accepted > 0)).toBe(true);
    s.close();
  });

  it('serves every watcher from one shared poll, and polls nothing while nobody watches', async () => {
    // Earlier tests' streams are closed: wait until the feed has noticed.
    const quiet = async () => {
      const before = await calls('lrange');
      // An observation window, not a synchronisation: with nobody watching the count must not move.
      await new Promise((r) => setTimeout(r, 1000));
      return (await calls('lrange')) === before ? true : undefined;
    };
    await waitFor('no polling without watchers', quiet, 10_000, 0);

    const a = await open(dash.address);
    const b = await open(dash.address);
    cleanups.push(
      async () => a.close(),
      async () => b.close(),
    );
    const lrangeBefore = await calls('lrange');
    await waitFor(
      'both watchers got 5 more snapshots',
      () => (snapshots(a).length >= 6 && snapshots(b).length >= 6 ? true : undefined),
      15_000,
    );
    a.close();
    b.close();
    const polled = (await calls('lrange')) - lrangeBefore;
    // The same snapshots (one poll each) reached both watchers.
    const at = (s: Stream) => snapshots(s).map((x) => x.generatedAt);
    const common = at(a).filter((t) => at(b).includes(t));
    expect(common.length).toBeGreaterThanOrEqual(5);
    // One LRANGE per tick, not one per watcher per tick.
    expect(polled).toBeLessThanOrEqual(Math.max(at(a).length, at(b).length) + 1);
    await waitFor('no polling after the watchers left', quiet, 10_000, 0);
  });

  it('stops at once with a stream open, ending the stream', async () => {
    const d = await start({ config, redis: dashRedis, broker, log, port: 0, host: '127.0.0.1', liveEveryMs: 200 });
    const s = await open(d.address);
    await snapshotWhen(s, 'a first snapshot', () => true);
    const t0 = Date.now();
    await d.stop();
    // Bounded by the stop's grace for leftover connections (2 s), with room for a busy machine.
    expect(Date.now() - t0).toBeLessThan(4000);
    await s.ended;
    const refused = await fetch(`${d.address}/events`).then(
      () => 'answered',
      () => 'refused',
    );
    expect(refused).toBe('refused');
  });

  it('reports Redis down in the snapshot and keeps streaming', async () => {
    const deadRedis = createRedis({ url: `redis://127.0.0.1:${await freePort()}` }, { overrides: { retryStrategy: () => 1000 } });
    deadRedis.on('error', () => undefined);
    cleanups.push(async () => deadRedis.disconnect());
    const d = await start({ config, redis: deadRedis, broker, log, port: 0, host: '127.0.0.1', liveEveryMs: 200 });
    cleanups.push(() => d.stop());
    const s = await open(d.address);
    cleanups.push(async () => s.close());
    await waitFor(
      'two snapshots saying Redis is down',
      () => (snapshots(s).filter((x) => !x.redis.up).length >= 2 ? true : undefined),
      15_000,
    );
    const snap = snapshots(s)[0] as Snapshot;
    expect(snap.figures).toBeNull();
    expect(snap.redis.error).toMatch(/Redis/);
    expect(snap.brokers.connectedTo).not.toBeNull();
    s.close();
  });
});

describe('ratesBetween', () => {
  const f = (accepted: number, sent: number): Figures => ({
    processed_orders_count: 0,
    orders: { accepted, duplicates: 0, created: 0, rejected: 0, cancelled: 0 },
    notifications: { sent, failed: 0 },
    inventory: {},
    queues: null,
    generatedAt: '',
  });
  it('divides the counters’ change by the seconds between them, never below zero', () => {
    expect(ratesBetween(f(10, 4), f(30, 8), 2)).toEqual({ accepted: 10, created: 0, rejected: 0, cancelled: 0, sent: 2 });
    // A counter reset by hand is no negative rate.
    expect(ratesBetween(f(30, 0), f(0, 0), 1).accepted).toBe(0);
    expect(ratesBetween(f(0, 0), f(5, 0), 0).accepted).toBe(0);
  });
});
