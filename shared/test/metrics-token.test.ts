// METRICS_BEARER_TOKEN on the consumers' ops server (order-processor, notifier): /metrics wants
// the token, compared whole; /healthz and /readyz stay open. The gateway's and the dashboard's
// /metrics are tested with their auth (api-gateway/test/auth.test.ts, dashboard/test/auth.test.ts).
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, createLogger, createMetrics, loadConfig, secretsEqual, startOpsServer } from '../src/index.js';

let server: Server | undefined;
let base = '';

beforeAll(async () => {
  const config = loadConfig('order-processor', { METRICS_BEARER_TOKEN: 'ops-scrape-token' });
  const ops = await startOpsServer({
    log: createLogger('ops-test', 'silent'),
    metrics: createMetrics('ops-test'),
    checks: [],
    port: 0,
    host: '127.0.0.1',
    ...(config.metricsBearerToken ? { metricsToken: config.metricsBearerToken } : {}),
  });
  server = ops.server;
  base = ops.address;
});

afterAll(async () => {
  if (server) await closeServer(server, 100);
});

const get = (path: string, token?: string) => fetch(`${base}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});

describe('METRICS_BEARER_TOKEN on the ops server', () => {
  it('answers /metrics only with the token; health stays open', async () => {
    const none = await get('/metrics');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="metrics"');
    expect((await none.json()) as unknown).toMatchObject({ type: '/problems/unauthorized' });
    expect((await get('/metrics', 'ops-scrape-toke')).status).toBe(401);
    expect((await get('/metrics', 'ops-scrape-token-and-more')).status).toBe(401);
    expect((await get('/metrics', 'ops-scrape-token')).status).toBe(200);
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
  });

  it('compares secrets of any length', () => {
    expect(secretsEqual('abc', 'abc')).toBe(true);
    expect(secretsEqual('abc', 'abcd')).toBe(false);
    expect(secretsEqual('', 'abc')).toBe(false);
  });
});
