// The consumers' ops server (order-processor and notifier: /healthz, /readyz, /metrics): a request
// that fails with a thrown error is answered as a 500 problem and timed as one, not as the 404 Koa
// has set before anything answered.
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServer, createLogger, createMetrics, startOpsServer } from '../src/index.js';

let server: Server | undefined;

afterEach(async () => {
  if (server) await closeServer(server, 100);
  server = undefined;
});

describe('startOpsServer', () => {
  it('times a readiness check that throws with the status it was answered with (500)', async () => {
    const metrics = createMetrics('ops-test');
    const ops = await startOpsServer({
      log: createLogger('ops-test', 'silent'),
      metrics,
      checks: [
        {
          name: 'broken',
          ok: () => {
            throw new Error('the check itself failed');
          },
        },
      ],
      port: 0,
      host: '127.0.0.1',
    });
    server = ops.server;

    const res = await fetch(`${ops.address}/readyz`);
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);

    const text = await (await fetch(`${ops.address}/metrics`)).text();
    const series = text.split('\n').filter((l) => l.startsWith('http_request_duration_seconds_count') && l.includes('route="/readyz"'));
    expect(series).toEqual([expect.stringMatching(/status="500"/)]);
    expect(series[0]).toMatch(/ 1$/);
  });
});
