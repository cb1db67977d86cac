import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { keys } from '@order-pipeline/shared';

// A steady, bounded load of orders from clients that behave as the API asks: a 503 or 409 is
// retried with the same id and payload until it gets a definite answer, so every order ends
// accepted (or the test says why not). Then an audit of Redis: was every accepted order applied
// exactly once and notified?

export interface LoadOptions {
  /** Base URL of the gateway; a function if it can change between requests. */
  gatewayUrl: string | (() => string);
  idPrefix: string;
  skus: readonly string[];
  /** Orders in flight at once (each is one client retrying its order). */
  concurrency?: number;
  /** New orders started per second over all clients; unpaced when absent. */
  ratePerSecond?: number;
  /** Stop starting new orders after this many. */
  maxOrders?: number;
  /** Pause before retrying a 503/409/connection error (shorter than Retry-After keeps tests quick). */
  retryDelayMs?: number;
  /** A request still unanswered after this long is aborted, counted as hung, and retried. */
  requestTimeoutMs?: number;
  /** After stop(), how long clients keep retrying the orders they hold before giving up. */
  settleTimeoutMs?: number;
  /**
   * Every n-th order, once accepted, is cancelled by its client (POST /orders/{id}/cancel), which
   * retries 503s and connection errors as it does for the placement. None when absent.
   */
  cancelEvery?: number;
}

export interface PlacedOrder {
  sku: string;
  qty: number;
}

export interface LoadReport {
  /** Distinct orders started. */
  sent: number;
  /** HTTP requests made, retries included. */
  requests: number;
  /** Orders answered 202 (or 200: a replay of an earlier attempt the client did not hear). */
  accepted: Map<string, PlacedOrder>;
  /** Orders that never got a 2xx before the client gave up. They may or may not exist. */
  abandoned: Map<string, PlacedOrder>;
  /** Accepted orders whose cancellation was answered 202 or 200 (see cancelEvery). */
  cancelled: Set<string>;
  /** Accepted orders whose cancellation never got a definite answer before the client gave up. */
  cancelAbandoned: Set<string>;
  /** Answers by status; 0 counts connection errors, -1 requests aborted as hung. */
  statuses: Record<number, number>;
  /** 503 answers without a Retry-After header (the contract says every 503 has one). */
  unavailableWithoutRetryAfter: number;
  /** Answers the contract does not allow for a well-formed order (e.g. 422, 400, 500). */
  unexpected: { id: string; status: number; body: string }[];
  /** Longest time between two successive 2xx answers, over the whole run. */
  longestGapMs: number;
  /** Slowest single answered request. */
  slowestMs: number;
  elapsedMs: number;
}

export interface Load {
  /** Orders accepted so far. */
  acceptedCount(): number;
  /** Answers with this status so far. */
  count(status: number): number;
  /** Resolves once `n` more orders are accepted than when called (or rejects after timeoutMs). */
  waitForAccepted(n: number, timeoutMs?: number): Promise<void>;
  /** Stops starting orders, lets clients settle the ones they hold, and reports. */
  stop(): Promise<LoadReport>;
}

export function startLoad(opts: LoadOptions): Load {
  const concurrency = opts.concurrency ?? 8;
  const retryDelayMs = opts.retryDelayMs ?? 200;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
  const settleTimeoutMs = opts.settleTimeoutMs ?? 60_000;
  const gateway = typeof opts.gatewayUrl === 'string' ? () => opts.gatewayUrl as string : opts.gatewayUrl;
  const report: LoadReport = {
    sent: 0,
    requests: 0,
    accepted: new Map(),
    abandoned: new Map(),
    cancelled: new Set(),
    cancelAbandoned: new Set(),
    statuses: {},
    unavailableWithoutRetryAfter: 0,
    unexpected: [],
    longestGapMs: 0,
    slowestMs: 0,
    elapsedMs: 0,
  };
  const started = performance.now();
  let lastSuccess = started;
  let stopping = false;
  let settleDeadline = Infinity;

  const nextSlot = (n: number) => (opts.ratePerSecond ? started + (n * 1000) / opts.ratePerSecond : 0);

  /**
   * POSTs `body` to `path` until it gets a definite answer: a 503, 409 (placements only: the first
   * request is in flight), connection error or hang is retried after retryDelayMs. Resolves with
   * the status, or undefined when the settle deadline passed first.
   */
  async function untilDefinite(path: string, body: string, retry409: boolean): Promise<{ status: number; text: string } | undefined> {
    for (;;) {
      if (performance.now() > settleDeadline) return undefined;
      report.requests++;
      const t0 = performance.now();
      let status: number;
      let text = '';
      let retryAfter: string | null = null;
      try {
        const res = await fetch(`${gateway()}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(requestTimeoutMs),
        });
        status = res.status;
        retryAfter = res.headers.get('retry-after');
        text = await res.text();
        report.slowestMs = Math.max(report.slowestMs, performance.now() - t0);
      } catch (err) {
        status = (err as Error).name === 'TimeoutError' ? -1 : 0;
      }
      report.statuses[status] = (report.statuses[status] ?? 0) + 1;
      if (status === 503 && retryAfter === null) report.unavailableWithoutRetryAfter++;
      if (status === 503 || status <= 0 || (retry409 && status === 409)) {
        await sleep(retryDelayMs);
        continue;
      }
      return { status, text };
    }
  }

  async function placeOne(id: string, order: PlacedOrder, cancel: boolean): Promise<void> {
    const answer = await untilDefinite('/orders', JSON.stringify({ id, sku: order.sku, qty: order.qty }), true);
    if (answer === undefined) {
      report.abandoned.set(id, order);
      return;
    }
    if (answer.status !== 200 && answer.status !== 202) {
      report.unexpected.push({ id, status: answer.status, body: answer.text.slice(0, 300) });
      return;
    }
    const now = performance.now();
    report.longestGapMs = Math.max(report.longestGapMs, now - lastSuccess);
    lastSuccess = now;
    report.accepted.set(id, order);
    if (!cancel) return;
    const cancelled = await untilDefinite(`/orders/${encodeURIComponent(id)}/cancel`, JSON.stringify({ reason: 'load test' }), false);
    if (cancelled === undefined) report.cancelAbandoned.add(id);
    else if (cancelled.status === 200 || cancelled.status === 202) report.cancelled.add(id);
    else report.unexpected.push({ id, status: cancelled.status, body: cancelled.text.slice(0, 300) });
  }

  const waiters = new Set<() => void>();
  async function client(worker: number): Promise<void> {
    for (;;) {
      if (stopping || (opts.maxOrders !== undefined && report.sent >= opts.maxOrders)) return;
      const n = report.sent++;
      const wait = nextSlot(n) - performance.now();
      if (wait > 0) await sleep(wait);
      const sku = opts.skus[n % opts.skus.length];
      if (sku === undefined) throw new Error('no SKUs given');
      const cancel = opts.cancelEvery !== undefined && n % opts.cancelEvery === 0;
      await placeOne(`${opts.idPrefix}-${n}`, { sku, qty: 1 + (n % 3) }, cancel);
      for (const w of waiters) w();
      void worker;
    }
  }
  const clients = Array.from({ length: concurrency }, (_, i) => client(i));

  return {
    acceptedCount: () => report.accepted.size,
    count: (status) => report.statuses[status] ?? 0,
    async waitForAccepted(n, timeoutMs = 60_000) {
      const target = report.accepted.size + n;
      const deadline = Date.now() + timeoutMs;
      while (report.accepted.size < target) {
        if (Date.now() > deadline) throw new Error(`only ${report.accepted.size} of ${target} orders accepted after ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const done = () => {
            waiters.delete(done);
            resolve();
          };
          waiters.add(done);
          setTimeout(done, 200);
        });
      }
    },
    async stop() {
      stopping = true;
      settleDeadline = performance.now() + settleTimeoutMs;
      await Promise.all(clients);
      report.elapsedMs = performance.now() - started;
      return report;
    },
  };
}

/** A webhook receiver on loopback that answers 200 and counts deliveries by Idempotency-Key. */
export interface WebhookSink {
  url: string;
  deliveries: Map<string, number>;
  /** Deliveries beyond the first for the same key. */
  repeats(): number;
  close(): Promise<void>;
}

export interface WebhookSinkOptions {
  /** Answer each delivery only after this long (a slow receiver keeps notifications in hand). */
  delayMs?: number;
}

export async function startWebhookSink(opts: WebhookSinkOptions = {}): Promise<WebhookSink> {
  const deliveries = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const key = String(req.headers['idempotency-key'] ?? '');
    req.resume();
    req.on('end', () => {
      if (key) deliveries.set(key, (deliveries.get(key) ?? 0) + 1);
      const answer = () => {
        if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      };
      if (opts.delayMs) setTimeout(answer, opts.delayMs).unref();
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    deliveries,
    repeats: () => [...deliveries.values()].reduce((sum, n) => sum + n - 1, 0),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface AuditResult {
  sent: number;
  accepted: number;
  /**
   * Accepted orders that did not take their whole effect by the deadline: created and notified,
   * or, when cancelled, cancelled with the cancellation notified (and the first outcome notified
   * too when stock had been reserved). Must be 0.
   */
  lost: string[];
  /**
   * Units reserved or given back beyond once per order: stock must have moved by exactly the
   * quantities of the orders created and not cancelled. Must be 0.
   */
  appliedTwice: number;
  /** Orders the client gave up on that nonetheless exist (accepted without the client hearing it). */
  createdButAbandoned: number;
  stockDelta: number;
  createdQty: number;
  processedCount: number;
  createdOrders: number;
  /** Orders now cancelled; of them, those whose stock had been reserved and was given back. */
  cancelledOrders: number;
  refunded: Set<string>;
  notified: number;
  /** Cancelled orders whose cancellation notice is recorded as sent. */
  cancellationsNotified: number;
  /** Webhook deliveries beyond the first per order (the receiver dedupes them by Idempotency-Key). */
  webhookRepeats: number;
}

export interface AuditOptions {
  redis: Redis;
  report: LoadReport;
  /** Stock of each SKU before the load began. */
  initialStock: Record<string, number>;
  /** orders.processed.count before the load began. */
  initialProcessed?: number;
  webhook?: WebhookSink;
  /** How long to wait for every accepted order to be created and notified. */
  settleTimeoutMs?: number;
}

/**
 * Waits until every accepted order is created and notified (or the deadline passes), then checks
 * that stock and the processed count moved exactly once per created order.
 */
export async function auditOrders(opts: AuditOptions): Promise<AuditResult> {
  const { redis, report } = opts;
  const deadline = Date.now() + (opts.settleTimeoutMs ?? 60_000);
  const read = async (id: string) => {
    const [[status, refunded], notification, cancellation] = await Promise.all([
      redis.hmget(keys.order(id), 'status', 'refunded'),
      redis.hget(keys.notification(id), 'status'),
      redis.hget(keys.cancellationNotification(id), 'status'),
    ]);
    return { status, refunded: Number(refunded ?? 0), notification, cancellation };
  };
  const settled = async (id: string) => {
    const o = await read(id);
    if (!report.cancelled.has(id)) return o.status === 'created' && o.notification === 'sent';
    // A cancel taken after the placement was rejected leaves the order rejected, and notified.
    if (o.status === 'rejected') return o.notification === 'sent';
    return o.status === 'cancelled' && o.cancellation === 'sent' && (o.refunded === 0 || o.notification === 'sent');
  };
  let pending = [...report.accepted.keys()];
  while (pending.length > 0 && Date.now() < deadline) {
    const done = await Promise.all(pending.map(settled));
    pending = pending.filter((_, i) => !done[i]);
    if (pending.length > 0) await sleep(250);
  }

  // Every order the clients ever sent, accepted or not, counts toward what stock should show.
  const all = new Map([...report.accepted, ...report.abandoned]);
  let createdQty = 0;
  let createdOrders = 0;
  let createdButAbandoned = 0;
  let cancelledOrders = 0;
  const refunded = new Set<string>();
  let notified = 0;
  let cancellationsNotified = 0;
  for (const [id, order] of all) {
    const o = await read(id);
    if (o.status === 'created') {
      createdQty += order.qty;
      createdOrders++;
      if (!report.accepted.has(id)) createdButAbandoned++;
    }
    if (o.status === 'cancelled') {
      cancelledOrders++;
      if (o.refunded > 0) refunded.add(id);
    }
    if (o.notification === 'sent') notified++;
    if (o.cancellation === 'sent') cancellationsNotified++;
  }
  let stockDelta = 0;
  for (const [sku, before] of Object.entries(opts.initialStock)) stockDelta += before - Number(await redis.get(keys.inventory(sku)));
  const processedCount = Number((await redis.get(keys.processedCount)) ?? 0) - (opts.initialProcessed ?? 0);
  return {
    sent: report.sent,
    accepted: report.accepted.size,
    lost: pending,
    // A reserved order counts once in orders.processed.count, cancelled later or not.
    appliedTwice: Math.abs(stockDelta - createdQty) + Math.max(0, processedCount - createdOrders - refunded.size),
    createdButAbandoned,
    stockDelta,
    createdQty,
    processedCount,
    createdOrders,
    cancelledOrders,
    refunded,
    notified,
    cancellationsNotified,
    webhookRepeats: opts.webhook?.repeats() ?? 0,
  };
}

/** One line of figures for a test's output. */
export function formatFigures(title: string, report: LoadReport, audit: AuditResult, extra: Record<string, string | number> = {}): string {
  const figures: Record<string, string | number> = {
    sent: report.sent,
    accepted: audit.accepted,
    lost: audit.lost.length,
    'applied twice': audit.appliedTwice,
    '503s': report.statuses[503] ?? 0,
    '409s': report.statuses[409] ?? 0,
    'connection errors': report.statuses[0] ?? 0,
    hung: report.statuses[-1] ?? 0,
    'longest gap ms': Math.round(report.longestGapMs),
    'slowest answer ms': Math.round(report.slowestMs),
    'webhook repeats': audit.webhookRepeats,
    'elapsed s': (report.elapsedMs / 1000).toFixed(1),
    ...extra,
  };
  return `${title}: ${Object.entries(figures)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}`;
}
