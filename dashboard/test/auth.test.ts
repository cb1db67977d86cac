// The dashboard with auth on: the figures, the event stream and an order's history want a bearer
// token with orders:read (401 without, 403 without the scope); the page and its script stay open
// (they hold no data); GET /metrics takes METRICS_BEARER_TOKEN as well, for Prometheus.
import { SignJWT } from 'jose';
import { createLogger, createRedis, keys, loadConfig, redisReady, type Broker, type RedisClient } from '@order-pipeline/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newBroker } from '../../test/helpers/broker.js';
import { checkedFetch } from '../../test/helpers/openapi.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Dashboard } from '../src/app.js';

const { redisUrl, rabbitmqUrls } = testServers();
const SECRET = 'dashboard-auth-test-secret-of-32-bytes!';
const METRICS_TOKEN = 'prometheus-scrape-token';
const log = createLogger('dashboard', 'silent');
const config = loadConfig('dashboard', {
  REDIS_URL: redisUrl,
  RABBITMQ_URLS: rabbitmqUrls.join(','),
  LOG_LEVEL: 'silent',
  AUTH_JWT_SECRET: SECRET,
  METRICS_BEARER_TOKEN: METRICS_TOKEN,
});

let redis: RedisClient;
let broker: Broker;
let dash: Dashboard;

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = createRedis({ url: redisUrl });
  await redisReady(redis);
  await redis.hset(keys.order('dash-auth-1'), 'status', 'accepted');
  broker = newBroker(config, log, 'dashboard-auth-test');
  await broker.connection.connect({ timeout: 20_000 });
  dash = await start({ config, redis, broker, log, port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await dash?.stop();
  await broker?.close();
  redis?.disconnect();
});

const token = (scope: string) =>
  new SignJWT({ scope })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('viewer')
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(SECRET));

async function status(path: string, bearer?: string): Promise<number> {
  const init = bearer ? { headers: { authorization: `Bearer ${bearer}` } } : {};
  // The open stream never ends: its status alone, then hang up (the others are checked against the document).
  const res = path === '/events' ? await fetch(`${dash.address}${path}`, init) : await checkedFetch(`${dash.address}${path}`, init);
  if (path === '/events') await res.body?.cancel();
  else await res.arrayBuffer();
  return res.status;
}

describe('the dashboard with auth on', () => {
  it('refuses the figures, the stream and the history without a token, or with one lacking orders:read', async () => {
    const writer = await token('orders:write');
    for (const path of ['/metrics', '/events', '/orders/dash-auth-1/history']) {
      expect(await status(path), path).toBe(401);
      expect(await status(path, 'junk'), path).toBe(401);
      expect(await status(path, writer), path).toBe(403);
    }
  });

  it('answers them with orders:read; the page, its script and health stay open', async () => {
    const viewer = await token('orders:read');
    for (const path of ['/metrics', '/events', '/orders/dash-auth-1/history']) expect(await status(path, viewer), path).toBe(200);
    for (const path of ['/', '/app.js', '/healthz', '/readyz']) expect(await status(path), path).toBe(200);
    const page = await (await fetch(`${dash.address}/`)).text();
    expect(page).toContain('data-auth="on"');
    expect(page).toContain('id="login"');
  });

  it('takes METRICS_BEARER_TOKEN on /metrics, and only there', async () => {
    expect(await status('/metrics', METRICS_TOKEN)).toBe(200);
    expect(await status('/events', METRICS_TOKEN)).toBe(401);
  });
});
