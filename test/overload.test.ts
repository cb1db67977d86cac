// Overload, with the real built gateway and processor on their own Redis and RabbitMQ node.
//
// A broker resource alarm (the node's memory watermark set near zero): the gateway answers 503
// Broker Blocked at once instead of waiting out PUBLISH_TIMEOUT_MS (to POST /orders and to POST
// /orders/{id}/cancel, neither writing anything), /readyz says `broker blocked`,
// and everything recovers when the watermark is back.
//
// Admission control: autocannon offers the gateway 1000 orders a second for 40 s with
// ORDER_TTL_MS=20000 while one processor with PREFETCH=1 drains less (240-740/s measured). The gateway
// must refuse (503 Overloaded with Retry-After, nothing claimed) instead of accepting orders that
// would expire in the queue: at most 1 % of the accepted orders end expired, p99 stays under 2 s,
// no timeouts, no 5xx but 503. Why the offered load has a ceiling: the test's load generator, the
// gateway and the processor share one 2-core machine (with other work on it), and an unpaced
// generator answered by cheap 503s turns into a storm of tens of thousands of requests a second
// that starves the processor itself of CPU, so the drain falls by half or more within seconds
// for a reason no production deployment has (clients there are separate machines, and follow
// Retry-After). 1000/s still outruns the drain; the bounds are the issue's, unchanged.
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys, queues } from '@order-pipeline/shared';
import {
  haveBinaries,
  startRabbitCluster,
  startRedis,
  type RabbitCluster,
  type RabbitNode,
  type RedisServer,
} from '../scripts/local-servers.mjs';
import { queueDepths } from './helpers/chaos.js';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { waitFor } from './helpers/processes.js';

const bins = haveBinaries();
const PUBLISH_TIMEOUT_MS = 2000;
const ORDER_TTL_MS = 20_000;
const SATURATION_S = 40;
const SKU = 'overload-sku';
/** Requests offered per second during the saturation. */
const OFFERED_PER_S = 1000;

async function post(base: string, body: unknown): Promise<{ status: number; type?: string; retryAfter: string | null; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${base}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const json = (await res.json()) as { type?: string };
  return { status: res.status, type: json.type, retryAfter: res.headers.get('retry-after'), ms: performance.now() - t0 };
}

async function postCancel(base: string, id: string): Promise<{ status: number; type?: string; retryAfter: string | null; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${base}/orders/${id}/cancel`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
  const json = (await res.json()) as { type?: string };
  return { status: res.status, type: json.type, retryAfter: res.headers.get('retry-after'), ms: performance.now() - t0 };
}

async function readyz(base: string): Promise<{ status: number; down: string[] }> {
  const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) });
  const body = (await res.json()) as { down?: string[] };
  return { status: res.status, down: body.down ?? [] };
}

describe.skipIf(!bins.redis || !bins.rabbitmq)('overload (needs the local server binaries)', () => {
  let redisServer: RedisServer;
  let rabbit: RabbitCluster;
  let node: RabbitNode;
  let redis: Redis;
  let pipeline: Pipeline;
  const gateway = () => pipeline.base['api-gateway'];

  beforeAll(async () => {
    [redisServer, rabbit] = await Promise.all([startRedis(), startRabbitCluster({ nodes: 1 })]);
    node = rabbit.nodes[0] as RabbitNode;
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    await redis.set(keys.inventory(SKU), 100_000_000);
    pipeline = await startPipeline({
      redisUrl: redisServer.url,
      rabbitmqUrls: rabbit.urls,
      services: ['api-gateway', 'order-processor'],
      env: {
        PUBLISH_TIMEOUT_MS: String(PUBLISH_TIMEOUT_MS),
        ORDER_TTL_MS: String(ORDER_TTL_MS),
        // One delivery at a time: the processor drains far less than the gateway accepts. On a
        // classic queue, since a quorum queue with so low a prefetch drains at the pace of its
        // log's disk writes once publishes stop (each ack is its own write), several times slower
        // than while publishes flow: a swing no measured rate can foresee (docs/running-many.md).
        PREFETCH: '1',
        QUEUE_TYPE: 'classic',
        LOG_LEVEL: 'warn',
      },
    });
  }, 120_000);

  afterAll(async () => {
    // Whatever happened, the node's watermark is back for the next test.
    await node?.ctl('set_vm_memory_high_watermark', '0.4').catch(() => undefined);
    await pipeline?.stop();
    redis?.disconnect();
    await Promise.all([redisServer?.stop(), rabbit?.stop()]);
  }, 60_000);

  it('under a memory alarm the gateway answers 503 broker-blocked at once, says so in /readyz, and recovers', async () => {
    const before = await post(gateway(), { id: 'blocked-before', sku: SKU, qty: 1 });
    expect(before.status).toBe(202);

    await node.ctl('set_vm_memory_high_watermark', '0.0000001');
    const refused: { id: string; ms: number }[] = [];
    let slowFirst = 0;
    try {
      // The broker tells a connection it is blocked when the alarm goes off or at its next
      // publish; until the gateway has heard it, a publish waits out its timeout (503 too).
      let n = 0;
      await waitFor(
        'a 503 broker-blocked',
        async () => {
          const id = `blocked-${n++}`;
          const r = await post(gateway(), { id, sku: SKU, qty: 1 });
          expect(r.status).toBe(503);
          expect(r.retryAfter).not.toBeNull();
          if (r.type !== '/problems/broker-blocked') {
            slowFirst++;
            return undefined;
          }
          refused.push({ id, ms: r.ms });
          return true;
        },
        30_000,
        100,
      );
      expect((await readyz(gateway())).down).toContain('broker blocked');
      // From now on at once, not after the publish timeout, and nothing claimed.
      for (let i = 0; i < 50; i++) {
        const id = `blocked-fast-${i}`;
        const r = await post(gateway(), { id, sku: SKU, qty: 1 });
        expect([r.status, r.type, r.retryAfter]).toEqual([503, '/problems/broker-blocked', '5']);
        refused.push({ id, ms: r.ms });
      }
      const slowest = Math.max(...refused.map((r) => r.ms));
      console.log(
        `broker blocked: ${slowFirst} request(s) waited out the publish timeout before the gateway heard of the alarm; ` +
          `then ${refused.length} refused at once, slowest ${Math.round(slowest)} ms`,
      );
      expect(slowest).toBeLessThan(PUBLISH_TIMEOUT_MS / 2);
      expect(await redis.exists(...refused.map((r) => keys.idempotency(r.id)))).toBe(0);
      // A cancellation publishes too: refused the same way, at once, and nothing recorded.
      const cancel = await postCancel(gateway(), 'blocked-before');
      console.log(`broker blocked: POST /orders/{id}/cancel answered ${cancel.status} ${cancel.type} in ${Math.round(cancel.ms)} ms`);
      expect([cancel.status, cancel.type, cancel.retryAfter]).toEqual([503, '/problems/broker-blocked', '5']);
      expect(cancel.ms).toBeLessThan(PUBLISH_TIMEOUT_MS / 2);
      expect(await redis.hget(keys.order('blocked-before'), 'cancelRequestedAt')).toBeNull();
    } finally {
      await node.ctl('set_vm_memory_high_watermark', '0.4');
    }
    await waitFor('the gateway ready again', async () => ((await readyz(gateway())).status === 200 ? true : undefined), 30_000, 200);
    const again = await post(gateway(), { id: 'blocked-after', sku: SKU, qty: 1 });
    expect(again.status).toBe(202);
    await waitFor(
      'the order after the alarm created',
      async () => ((await redis.hget(keys.order('blocked-after'), 'status')) === 'created' ? true : undefined),
      20_000,
      200,
    );
  }, 90_000);

  it('saturated for 40 s, the gateway sheds what could not be processed in time: at most 1 % of accepted orders expire', async () => {
    const accepted = new Set<string>();
    const problems = new Map<string, number>();
    const statuses = new Map<number, number>();
    let withoutRetryAfter = 0;
    let n = 0;
    const acceptedAt: number[] = [];
    const started = Date.now();
    const result = await autocannon({
      url: gateway(),
      connections: 64,
      // More than the processor drains here: see the
      // comment at the top on why the offered load has a ceiling at all.
      overallRate: OFFERED_PER_S,
      duration: SATURATION_S,
      timeout: 10,
      requests: [
        {
          method: 'POST',
          path: '/orders',
          headers: { 'content-type': 'application/json' },
          setupRequest: (req) => ({ ...req, body: JSON.stringify({ id: `ov-${n++}`, sku: SKU, qty: 1 }) }),
          onResponse: (status, body, _context, headers) => {
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
            if (status === 202) {
              accepted.add((JSON.parse(body) as { id: string }).id);
              acceptedAt.push(Date.now() - started);
            } else if (status === 503) {
              const type = (JSON.parse(body) as { type?: string }).type ?? '?';
              problems.set(type, (problems.get(type) ?? 0) + 1);
              const h = headers as unknown as Record<string, string> | string[];
              const has = Array.isArray(h) ? h.some((x) => /^retry-after$/i.test(x)) : Object.keys(h).some((k) => /^retry-after$/i.test(k));
              if (!has) withoutRetryAfter++;
            }
          },
        },
      ],
    });

    // Every accepted order decided (the backlog drains within the time to live by construction).
    await waitFor(
      'orders.queue drained',
      async () => {
        const d = (await queueDepths(node))[queues.orders];
        return d && d.messages === 0 ? true : undefined;
      },
      ORDER_TTL_MS + 30_000,
      500,
    );
    const ids = [...accepted];
    const byStatus = new Map<string, number>();
    for (let i = 0; i < ids.length; i += 1000) {
      const pipe = redis.pipeline();
      for (const id of ids.slice(i, i + 1000)) pipe.hget(keys.order(id), 'status');
      for (const [, status] of (await pipe.exec()) ?? []) byStatus.set(String(status), (byStatus.get(String(status)) ?? 0) + 1);
    }
    const expired = byStatus.get('expired') ?? 0;
    const lastTenS = acceptedAt.filter((t) => t > (SATURATION_S - 10) * 1000).length;
    const figures = {
      requests: result.requests.total,
      accepted: accepted.size,
      'accepted/s': Math.round(accepted.size / SATURATION_S),
      'accepted in the last 10 s': lastTenS,
      expired,
      'expired %': ((100 * expired) / Math.max(1, accepted.size)).toFixed(2),
      decided: Object.fromEntries(byStatus),
      statuses: Object.fromEntries(statuses),
      '503 problem types': Object.fromEntries(problems),
      'p50 ms': result.latency.p50,
      'p99 ms': result.latency.p99,
      'max ms': result.latency.max,
      timeouts: result.timeouts,
      errors: result.errors,
    };
    const transitions = pipeline
      .proc('api-gateway')
      .output()
      .split('\n')
      .filter((l) => /admitting orders again|refusing new orders/.test(l));
    console.log(`admission transitions (${transitions.length}), the first:\n${transitions.slice(0, 6).join('\n')}`);
    console.log(`overload test (${SATURATION_S} s saturation, ORDER_TTL_MS ${ORDER_TTL_MS}):\n${JSON.stringify(figures, null, 2)}`);

    // The gateway did shed (otherwise this run tested nothing), and kept accepting as it drained.
    // At least 5 % of the requests: the processor drained 240-740 orders/s in the runs of
    // 2026-12-02 (a quieter machine drains more), so 1000/s outruns it by a wide margin.
    expect(problems.get('/problems/overloaded') ?? 0).toBeGreaterThan(0.05 * result.requests.total);
    expect(lastTenS).toBeGreaterThan(0);
    expect(expired / accepted.size).toBeLessThanOrEqual(0.01);
    expect(result.latency.p99).toBeLessThan(2000);
    expect(result.timeouts).toBe(0);
    expect(result.errors).toBe(0);
    for (const status of statuses.keys()) expect([202, 503], `status ${status}`).toContain(status);
    expect(withoutRetryAfter).toBe(0);
    // A refused order claimed nothing: every order of the run is either accepted or unknown.
    expect((byStatus.get('null') ?? 0) + (byStatus.get('undefined') ?? 0)).toBe(0);
  }, 150_000);
});
