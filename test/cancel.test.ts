// An order's cancellation through the four real processes (built as `npm start` runs them) on real
// Redis and RabbitMQ, notifying a real local webhook: place, cancel, the stock comes back once,
// the cancellation is notified once. Every answer is checked against the OpenAPI document.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '@order-pipeline/shared';
import { webhookIdOf } from '../notifier/src/senders.js';
import { checkedFetch as fetch } from './helpers/openapi.js';
import { startPipeline, type Pipeline } from './helpers/pipeline.js';
import { waitFor } from './helpers/processes.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();
const SKU = 'cancel-e2e-sku';

let redis: Redis;
let pipeline: Pipeline;
let gateway = '';
let server: Server;
const posts: { headers: IncomingHttpHeaders; body: Record<string, unknown> }[] = [];

interface OrderView {
  status: string;
  cancelReason?: string;
  notifications?: Record<string, { status: string; attempts: number }>;
}

async function getOrder(id: string): Promise<OrderView> {
  return (await (await fetch(`${gateway}/orders/${id}`)).json()) as OrderView;
}

describe('an order cancelled end to end', () => {
  beforeAll(async () => {
    await resetAll(redisUrl, rabbitmqUrls);
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        posts.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const webhook = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
    redis = new Redis(redisUrl);
    pipeline = await startPipeline({ redisUrl, rabbitmqUrls, env: { NOTIFY_WEBHOOK_URL: webhook } });
    gateway = pipeline.base['api-gateway'];
  }, 90_000);

  afterAll(async () => {
    const codes = await pipeline?.stop();
    redis?.disconnect();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    expect(codes).toEqual({ 'api-gateway': 0, 'order-processor': 0, notifier: 0, dashboard: 0 });
  }, 30_000);

  it('place, cancel: the stock comes back once and the cancellation is notified once', async () => {
    await redis.set(keys.inventory(SKU), 10);
    const placed = await fetch(`${gateway}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'e2e-cancel-1', sku: SKU, qty: 3, email: 'e2e@example.com' }),
    });
    expect(placed.status).toBe(202);
    await waitFor('the order created and notified', async () => {
      const o = await getOrder('e2e-cancel-1');
      return o.status === 'created' && o.notifications?.created?.status === 'sent' ? o : undefined;
    });
    expect(await redis.get(keys.inventory(SKU))).toBe('7');

    const cancel = await fetch(`${gateway}/orders/e2e-cancel-1/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'found it cheaper' }),
    });
    expect(cancel.status).toBe(202);
    expect(cancel.headers.get('location')).toBe('/orders/e2e-cancel-1');
    const done = await waitFor('the order cancelled and the cancellation notified', async () => {
      const o = await getOrder('e2e-cancel-1');
      return o.status === 'cancelled' && o.notifications?.cancelled?.status === 'sent' ? o : undefined;
    });
    expect(done).toMatchObject({
      cancelReason: 'found it cheaper',
      notifications: { created: { status: 'sent', attempts: 1 }, cancelled: { status: 'sent', attempts: 1 } },
    });
    expect(await redis.get(keys.inventory(SKU))).toBe('10');

    // Cancelling again changes nothing and is answered from the order.
    const again = await fetch(`${gateway}/orders/e2e-cancel-1/cancel`, { method: 'POST' });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: 'cancelled', duplicate: true });

    const figures = (await (await fetch(`${pipeline.base.dashboard}/metrics`)).json()) as { orders: { cancelled: number } };
    expect(figures.orders.cancelled).toBe(1);
    // Let a stray redelivery show up before counting what the webhook got.
    await new Promise((r) => setTimeout(r, 500));
    expect(await redis.get(keys.inventory(SKU))).toBe('10');
    expect(posts.map((p) => [p.headers['idempotency-key'], p.body.type])).toEqual([
      [webhookIdOf('e2e-cancel-1', 'order.created'), 'order.created'],
      [webhookIdOf('e2e-cancel-1', 'order.cancelled'), 'order.cancelled'],
    ]);
    expect(posts[1]?.body).toMatchObject({ status: 'cancelled', reason: 'found it cheaper', email: 'e2e@example.com' });
  });
});
