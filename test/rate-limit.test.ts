// RATE_LIMIT_PER_MINUTE across two real gateway processes sharing one Redis: a caller's requests
// are counted once whichever gateway takes them, the one over the limit gets a 429 with
// Retry-After and the draft's RateLimit-Policy / RateLimit headers and writes nothing, and another
// caller keeps its own count. Prints sent, accepted, limited. The 401, 403 and 429 refusals of
// POST /orders are counted in gateway_order_refusals_total by reason.
import { SignJWT } from 'jose';
import type { Channel, ChannelModel } from 'amqplib';
import { queues } from '@order-pipeline/shared';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainQueue, openTopologyChannel } from './helpers/broker.js';
import { expectDocumented } from './helpers/openapi.js';
import { sampleValue, samples } from './helpers/prometheus.js';
import { freePort, startService, waitReady, type ServiceProcess } from './helpers/processes.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();
const SECRET = 'rate-limit-test-secret-of-32-bytes-at-least';
const LIMIT = 6;

const gateways: ServiceProcess[] = [];
const bases: string[] = [];
let amqp: ChannelModel;
let ch: Channel;
let redis: Redis;

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = new Redis(redisUrl);
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, 'quorum'));
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    gateways.push(
      startService('api-gateway', {
        REDIS_URL: redisUrl,
        RABBITMQ_URLS: rabbitmqUrls.join(','),
        GATEWAY_PORT: String(port),
        AUTH_JWT_SECRET: SECRET,
        RATE_LIMIT_PER_MINUTE: String(LIMIT),
      }),
    );
    bases.push(`http://127.0.0.1:${port}`);
  }
  await Promise.all(bases.map((b) => waitReady(b)));
});

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await amqp?.close().catch(() => undefined);
  redis?.disconnect();
});

const token = (sub: string) =>
  new SignJWT({ scope: 'orders:write orders:read' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(SECRET));

async function place(base: string, bearer: string, id: string): Promise<Response> {
  const init = {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ id, sku: 'sku-rl', qty: 1 }),
  };
  const res = await fetch(`${base}/orders`, init);
  const text = await res.text();
  expectDocumented({ method: 'POST', path: '/orders', status: res.status, headers: res.headers, body: text });
  return res;
}

describe('RATE_LIMIT_PER_MINUTE with two gateways', () => {
  it('counts a caller once across both: the requests past the limit get 429 and write nothing', async () => {
    const alice = await token('alice');
    const sent = 2 * LIMIT;
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < sent; i++) {
      // Alternating gateways: each alone would allow all of them.
      last = await place(bases[i % 2] as string, alice, `rl-${i}`);
      statuses.push(last.status);
      if (i === 0) {
        expect(last.headers.get('ratelimit-policy')).toBe(`"default";q=${LIMIT};w=60`);
        expect(last.headers.get('ratelimit')).toMatch(new RegExp(`^"default";r=${LIMIT - 1};t=\\d+$`));
      }
    }
    const accepted = statuses.filter((s) => s === 202).length;
    const limited = statuses.filter((s) => s === 429).length;
    console.log(`rate limit ${LIMIT}/min over 2 gateways: sent ${sent}, accepted ${accepted}, limited ${limited}`);
    expect(statuses).toEqual([...Array<number>(LIMIT).fill(202), ...Array<number>(LIMIT).fill(429)]);
    const retryAfter = Number(last?.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(last?.headers.get('ratelimit')).toBe(`"default";r=0;t=${retryAfter}`);
    // Only the accepted ones were published and recorded.
    expect((await drainQueue(ch, queues.orders)).map((m) => m.properties.messageId as string).sort()).toEqual(
      Array.from({ length: LIMIT }, (_, i) => `rl-${i}:order.placed`).sort(),
    );
    expect(await redis.exists(`order:rl-${LIMIT}`)).toBe(0);

    // Another caller has its own count; health stays open for the limited one's address.
    const bob = await token('bob');
    expect((await place(bases[1] as string, bob, 'rl-bob')).status).toBe(202);
    expect((await fetch(`${bases[0]}/healthz`)).status).toBe(200);
  });

  it('counts the refusals of the guards in gateway_order_refusals_total: 401, 403 and 429 by reason', async () => {
    const reasons = ['unauthorized', 'insufficient-scope', 'too-many-requests'] as const;
    /** Each reason's count summed over both gateways. */
    const refusals = async () => {
      const all = await Promise.all(bases.map(async (b) => samples(await (await fetch(`${b}/metrics`)).text())));
      return Object.fromEntries(
        reasons.map((reason) => [reason, all.reduce((n, m) => n + (sampleValue(m, 'gateway_order_refusals_total', { reason }) ?? NaN), 0)]),
      );
    };
    const before = await refusals();
    expect(Object.values(before).every(Number.isFinite)).toBe(true);

    expect((await fetch(`${bases[0]}/orders`, { method: 'POST', body: '{}' })).status).toBe(401);
    expect((await place(bases[1] as string, 'not-a-token', 'rl-bad-token')).status).toBe(401);
    const readOnly = await new SignJWT({ scope: 'orders:read' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('reader')
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(SECRET));
    expect((await place(bases[0] as string, readOnly, 'rl-read-only')).status).toBe(403);
    const carol = await token('carol');
    const statuses: number[] = [];
    for (let i = 0; i < LIMIT + 2; i++) statuses.push((await place(bases[i % 2] as string, carol, `rl-carol-${i}`)).status);
    expect(statuses.filter((s) => s === 429)).toHaveLength(2);

    const after = await refusals();
    console.log(`refusals counted: ${JSON.stringify(Object.fromEntries(reasons.map((r) => [r, (after[r] ?? 0) - (before[r] ?? 0)])))}`);
    expect(after).toEqual({
      unauthorized: (before.unauthorized ?? 0) + 2,
      'insufficient-scope': (before['insufficient-scope'] ?? 0) + 1,
      'too-many-requests': (before['too-many-requests'] ?? 0) + 2,
    });
    await drainQueue(ch, queues.orders);
  });
});
