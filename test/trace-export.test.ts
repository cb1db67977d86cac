// The real, built processes with OTEL_EXPORTER_OTLP_ENDPOINT pointed at a small local OTLP/HTTP
// receiver: the spans of one order reach it from the gateway, the processor and the notifier,
// each under its own service.name and all in the client's trace, and a stop exports what is
// still batched.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '@order-pipeline/shared';
import { Redis } from 'ioredis';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { waitFor } from './helpers/processes.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();

interface ExportedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

/** OTLP/JSON export requests, as the exporter sends them (JSON by default in this version). */
interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans?: { spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string }[] }[];
  }[];
}

const spans: ExportedSpan[] = [];
const paths = new Set<string>();
let collector: Server;
let webhook: Server;
const webhookTraceparents: string[] = [];
let pipeline: Pipeline;
let gateway = '';

/** A server that answers 200 to everything and hands each request's (gunzipped) body to `onBody`. */
async function receiver(
  onBody: (path: string, headers: Record<string, unknown>, body: Buffer) => void,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      onBody(req.url ?? '', req.headers, req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  const c = await receiver((path, _headers, body) => {
    paths.add(path);
    const req = JSON.parse(body.toString('utf8')) as ExportRequest;
    for (const rs of req.resourceSpans ?? []) {
      const service = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
      for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ service, ...s });
    }
  });
  collector = c.server;
  const w = await receiver((_path, headers) => webhookTraceparents.push(String(headers.traceparent)));
  webhook = w.server;

  pipeline = await startPipeline({
    redisUrl,
    rabbitmqUrls,
    services: ['api-gateway', 'order-processor', 'notifier'],
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: c.url, NOTIFY_WEBHOOK_URL: `${w.url}/hooks` },
  });
  gateway = pipeline.base['api-gateway'];
});

afterAll(async () => {
  await pipeline?.stop();
  await new Promise<void>((resolve) => (collector ? collector.close(() => resolve()) : resolve()));
  await new Promise<void>((resolve) => (webhook ? webhook.close(() => resolve()) : resolve()));
});

describe('exporting spans over OTLP/HTTP', () => {
  it('sends the spans of one order from all three services, in one trace, by the time they stop', async () => {
    const redis = new Redis(redisUrl);
    try {
      await redis.set(keys.inventory('otlp-sku'), '5');
    } finally {
      redis.disconnect();
    }
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const res = await fetch(`${gateway}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-b7ad6b7169203331-01` },
      body: JSON.stringify({ id: 'otlp-1', sku: 'otlp-sku', qty: 1 }),
    });
    expect(res.status).toBe(202);
    await waitFor('the webhook call', () => (webhookTraceparents.length > 0 ? true : undefined), 15_000);
    expect(webhookTraceparents[0]).toMatch(new RegExp(`^00-${traceId}-`));

    // The batch exporter waits up to 5 s; a stop (SIGTERM) exports what is left at once.
    expect(await pipeline.stop()).toEqual({ 'api-gateway': 0, 'order-processor': 0, notifier: 0 });

    expect([...paths]).toEqual(['/v1/traces']);
    const ours = spans.filter((s) => s.traceId === traceId);
    const names = (service: string) =>
      ours
        .filter((s) => s.service === service)
        .map((s) => s.name)
        .sort();
    expect(names('api-gateway')).toEqual(['POST /orders', 'orders.direct publish']);
    expect(names('order-processor')).toEqual(['orders.queue process', 'orders.topic publish']);
    expect(names('notifier')).toEqual(['POST', 'notifier.queue process']);
    // Across processes, each consumer span is the child of the publish span of the process before.
    const byName = (name: string) => ours.find((s) => s.name === name);
    expect(byName('orders.queue process')?.parentSpanId).toBe(byName('orders.direct publish')?.spanId);
    expect(byName('notifier.queue process')?.parentSpanId).toBe(byName('orders.topic publish')?.spanId);
  });
});
