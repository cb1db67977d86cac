// One order, one trace: the gateway, the processor and the notifier (in-process, on the test
// servers) and a local webhook receiver. The trace continues the client's traceparent through
// the AMQP headers of order.placed and order.created to the webhook, and every log line about
// the order carries its orderId and that traceId.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SpanKind,
  createBroker,
  createRedis,
  delayQueueOf,
  keys,
  loadConfig,
  queues,
  redisReady,
  setupTracing,
  waitForBroker,
  type Broker,
  type RedisClient,
  type RunningService,
  type ServiceName,
  type Tracing,
} from '@order-pipeline/shared';
import { start as startGateway } from '../api-gateway/src/app.js';
import { start as startNotifier } from '../notifier/src/app.js';
import { start as startProcessor } from '../order-processor/src/app.js';
import { openTopologyChannel, takeAtLeast } from './helpers/broker.js';
import { waitFor } from './helpers/processes.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();
const SKU = 'trace-sku';

/** Every log line the three services wrote, parsed. */
const lines: Record<string, unknown>[] = [];
/** A logger like the services' own (JSON lines with `service`), writing into `lines`. */
function captureLogger(service: ServiceName): Logger {
  return pino(
    { level: 'debug', base: { service }, formatters: { level: (label) => ({ level: label }) } },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
}

/** Webhook receiver: keeps the headers of every POST by order id. */
const hooks = new Map<string, IncomingHttpHeaders>();
let receiver: Server;
let webhookUrl = '';

const exporter = new InMemorySpanExporter();
let tracing: Tracing;
const clients: { redis: RedisClient; broker: Broker }[] = [];
const services: RunningService[] = [];
let gateway = '';

async function clientsFor(service: ServiceName, log: Logger) {
  const config = loadConfig(service, {
    REDIS_URL: redisUrl,
    RABBITMQ_URLS: rabbitmqUrls.join(','),
    LOG_LEVEL: 'debug',
    // Two webhook attempts, 20 ms apart: the failing webhook's message reaches the dead-letter queue fast.
    ...(service === 'notifier' ? { NOTIFY_WEBHOOK_URL: webhookUrl, NOTIFY_RETRY_SCHEDULE: '0,20ms' } : {}),
  });
  const redis = createRedis(config.redis, { log });
  // Named after the service, as runService does: the spans' tracer (scope) name says which one.
  const broker = createBroker({ urls: config.rabbitmqUrls, queueType: config.queueType, log, publishTimeoutMs: 5000, name: service });
  clients.push({ redis, broker });
  await Promise.all([redisReady(redis), waitForBroker(broker, 20_000)]);
  // Two attempts, short delays: the failing webhook's message reaches the dead-letter queue fast.
  return { config, redis, broker, log, port: 0, host: '127.0.0.1', maxAttempts: 2, backoffMs: () => 20 };
}

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  tracing = setupTracing({ service: 'order-pipeline-test', spanProcessors: [new SimpleSpanProcessor(exporter)] });
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data: { orderId: string } };
      hooks.set(body.data.orderId, req.headers);
      // This one never accepts: its notification is retried, then dead-lettered.
      res.writeHead(body.data.orderId === 'trace-3' ? 500 : 200).end('ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  webhookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/orders`;

  const gw = await startGateway(await clientsFor('api-gateway', captureLogger('api-gateway')));
  services.push(gw);
  gateway = gw.address;
  services.push(await startProcessor(await clientsFor('order-processor', captureLogger('order-processor'))));
  services.push(await startNotifier(await clientsFor('notifier', captureLogger('notifier'))));
  await clients[0]?.redis.set(keys.inventory(SKU), '10');
});

afterAll(async () => {
  for (const s of services) await s.stop();
  for (const { redis, broker } of clients) {
    await broker.close();
    redis.disconnect();
  }
  await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
  await tracing?.shutdown();
});

/** Places an order and waits until its webhook came and the notifier's span has ended. */
async function placeAndFollow(id: string, headers: Record<string, string> = {}): Promise<IncomingHttpHeaders> {
  const res = await fetch(`${gateway}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ id, sku: SKU, qty: 1 }),
  });
  expect(res.status).toBe(202);
  const hook = await waitFor(`the webhook for ${id}`, () => hooks.get(id), 15_000);
  await waitFor(`the notifier's span for ${id}`, () =>
    exporter.getFinishedSpans().some((s) => s.name === 'notifier.queue process' && s.attributes['order.id'] === id) ? true : undefined,
  );
  return hook;
}

/** The one span of the trace with this name and kind, checking which service made it. */
function spanOf(spans: ReadableSpan[], name: string, kind: SpanKind, service: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name && s.kind === kind);
  expect(
    found.map((s) => s.name),
    `one ${name} span`,
  ).toEqual([name]);
  const span = found[0] as ReadableSpan;
  expect(span.instrumentationScope.name, `${name} comes from ${service}`).toBe(service);
  return span;
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const idOf = (s: ReadableSpan) => s.spanContext().spanId;

describe('tracing one order through the pipeline', () => {
  it("continues the client's traceparent from the gateway through both queues to the webhook", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientSpanId = '00f067aa0ba902b7';
    const hook = await placeAndFollow('trace-1', { traceparent: `00-${traceId}-${clientSpanId}-01`, tracestate: 'shop=checkout' });

    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const server = spanOf(spans, 'POST /orders', SpanKind.SERVER, 'api-gateway');
    const placed = spanOf(spans, 'orders.direct publish', SpanKind.PRODUCER, 'api-gateway');
    const processed = spanOf(spans, 'orders.queue process', SpanKind.CONSUMER, 'order-processor');
    const outcome = spanOf(spans, 'orders.topic publish', SpanKind.PRODUCER, 'order-processor');
    const notified = spanOf(spans, 'notifier.queue process', SpanKind.CONSUMER, 'notifier');
    const webhook = spanOf(spans, 'POST', SpanKind.CLIENT, 'notifier');

    // Parent -> child, across the broker twice.
    expect(parentOf(server)).toBe(clientSpanId);
    expect(parentOf(placed)).toBe(idOf(server));
    expect(parentOf(processed)).toBe(idOf(placed));
    expect(parentOf(outcome)).toBe(idOf(processed));
    expect(parentOf(notified)).toBe(idOf(outcome));
    expect(parentOf(webhook)).toBe(idOf(notified));

    // The webhook request carries the client span's context, and the client's tracestate.
    expect(hook.traceparent).toBe(`00-${traceId}-${idOf(webhook)}-01`);
    expect(hook.tracestate).toBe('shop=checkout');

    for (const s of [server, placed, processed, outcome, notified, webhook]) expect(s.attributes['order.id'], s.name).toBe('trace-1');
    expect(placed.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.destination.name': 'orders.direct',
      'messaging.rabbitmq.destination.routing_key': 'order.placed',
    });
    expect(processed.attributes).toMatchObject({ 'messaging.destination.name': 'orders.queue', 'messaging.consume.outcome': 'ack' });
    expect(outcome.attributes).toMatchObject({
      'messaging.destination.name': 'orders.topic',
      'messaging.rabbitmq.destination.routing_key': 'order.created',
    });
    expect(server.attributes['http.response.status_code']).toBe(202);
    expect(webhook.attributes['http.response.status_code']).toBe(200);
    expect(server.resource.attributes['service.name']).toBe('order-pipeline-test');

    // Every log line about the order carries its id and the trace id, in all three services.
    const about = lines.filter((l) => l.orderId === 'trace-1');
    expect(new Set(about.map((l) => l.service))).toEqual(new Set(['api-gateway', 'order-processor', 'notifier']));
    for (const l of about) expect(l, String(l.msg)).toMatchObject({ traceId });
  });

  it('starts a new trace for a request without traceparent, and the webhook still gets one', async () => {
    const hook = await placeAndFollow('trace-2');
    const server = exporter.getFinishedSpans().find((s) => s.name === 'POST /orders' && s.attributes['order.id'] === 'trace-2');
    expect(server).toBeDefined();
    expect(server?.parentSpanContext).toBeUndefined();
    const traceId = server?.spanContext().traceId;
    expect(hook.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    const about = lines.filter((l) => l.orderId === 'trace-2');
    expect(about.length).toBeGreaterThan(2);
    for (const l of about) expect(l, String(l.msg)).toMatchObject({ traceId });
  });

  it('keeps the trace in the retry copy and the dead letter of a notification the webhook refuses', async () => {
    const traceId = 'a3ce929d0e0e47364bf92f3577b34da6';
    const res = await fetch(`${gateway}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body: JSON.stringify({ id: 'trace-3', sku: SKU, qty: 1 }),
    });
    expect(res.status).toBe(202);
    const { amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, 'quorum');
    try {
      const [dead] = await takeAtLeast(ch, queues.notifierDlq, 1);
      const spans = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
      await waitFor('the dead letter publish span', () => (spans().some((s) => s.name === 'orders.dlx publish') ? true : undefined));
      const consumed = spans().filter((s) => s.name === 'notifier.queue process');
      // The webhook's retry copy waits in its delay queue (published through the default exchange).
      const retry = spans().find((s) => s.name === `${delayQueueOf(20)} publish`);
      const deadLetter = spans().find((s) => s.name === 'orders.dlx publish');
      // The first delivery is acked once its retry copy is confirmed; the second is dead-lettered.
      expect(consumed.map((s) => s.attributes['messaging.consume.outcome']).sort()).toEqual(['ack', 'dead_letter']);
      const [first, second] = consumed[0]?.attributes['messaging.consume.outcome'] === 'ack' ? consumed : [...consumed].reverse();
      // first delivery -> retry copy (through the delay queue) -> second delivery -> dead letter, one trace.
      expect(parentOf(retry as ReadableSpan)).toBe(idOf(first as ReadableSpan));
      expect(parentOf(second as ReadableSpan)).toBe(idOf(retry as ReadableSpan));
      expect(parentOf(deadLetter as ReadableSpan)).toBe(idOf(second as ReadableSpan));
      expect(String(dead?.properties.headers?.traceparent)).toBe(`00-${traceId}-${idOf(deadLetter as ReadableSpan)}-01`);
      const about = lines.filter((l) => l.orderId === 'trace-3');
      expect(about.some((l) => l.msg === 'notification failed; retrying later')).toBe(true);
      for (const l of about) expect(l, String(l.msg)).toMatchObject({ traceId });
    } finally {
      await amqp.close();
    }
  });
});
