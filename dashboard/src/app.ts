import Koa, { type Context, type Middleware } from 'koa';
import { Router } from '@koa/router';
import type { Channel } from 'amqplib';
import {
  HttpProblem,
  ID_REGEX,
  TransientError,
  bearerToken,
  checkMetricsToken,
  createAuthenticator,
  keys,
  requireScope,
  secretsEqual,
  parseHistory,
  closeServer,
  dependencyChecks,
  createMetrics,
  listen,
  openapiRoute,
  opsMiddleware,
  problemMiddleware,
  timingMiddleware,
  type Broker,
  type Config,
  type Logger,
  type RunningService,
  type ServiceDeps,
} from '@order-pipeline/shared';
import { prefersPrometheus, readFigures, toPrometheus, type Figures, type QueueChecker } from './figures.js';
import { LiveFeed } from './live.js';
import { nodeProber } from './nodes.js';
import { PAGE_CSP, PAGE_HTML, PAGE_HTML_AUTH, PAGE_SCRIPT } from './page.js';
import { snapshotter } from './snapshot.js';

export type DashboardDeps = ServiceDeps;
export type Dashboard = RunningService;

/** Longest wait for the broker's answer to the queue checks; past it `queues` is null. */
const QUEUE_CHECK_TIMEOUT_MS = 2000;
/** How often the live page's broker nodes are probed while someone watches, and the longest probe. */
const NODE_PROBE_EVERY_MS = 5000;
const NODE_PROBE_TIMEOUT_MS = 1500;
/**
 * Longest wait on open connections at stop before they are cut (closeServer's grace). Shorter than
 * the other services' 5 s: a browser keeps spare connections that never carry a request, and
 * nothing here writes, so cutting them is safe.
 */
const STOP_GRACE_MS = 2000;

export interface DashboardOptions {
  /** Time between live snapshots (tests shorten it). */
  liveEveryMs?: number;
  /** closeServer's grace at stop (default STOP_GRACE_MS; tests shorten it). */
  stopGraceMs?: number;
}

export async function start(deps: DashboardDeps & DashboardOptions): Promise<Dashboard> {
  const { config, redis, broker, log } = deps;
  // runService's registry already holds the broker's and Redis' metrics; tests start without one.
  const metrics = deps.metrics ?? createMetrics(config.service);
  const queueChecker = dashboardQueueChecker(broker);
  const noteInvalid = invalidInventoryNoter(log);
  const prober = nodeProber(config.rabbitmqUrls, { everyMs: NODE_PROBE_EVERY_MS, timeoutMs: NODE_PROBE_TIMEOUT_MS });
  const snapshots = snapshotter({
    redis,
    queueChecker: () => queueChecker.current(),
    nodes: () => prober.states(),
    connectedTo: () => broker.currentNode(),
  });
  const feed = new LiveFeed({
    next: async () => {
      const s = await snapshots.next();
      if (s.figures) noteInvalid(s.figures);
      return s;
    },
    reset: () => snapshots.reset(),
    prober,
    log,
    ...(deps.liveEveryMs === undefined ? {} : { everyMs: deps.liveEveryMs }),
  });

  // Auth on: what the page shows (figures, stream, history) wants a token with orders:read; the
  // page and its script hold no data and stay open, so a browser can load them and ask for one.
  const authenticator = config.auth ? createAuthenticator(config.auth) : undefined;
  const reader = requireScope(authenticator, 'orders:read', log);

  const router = new Router();
  router.get('/metrics', metricsGuard(config, reader), async (ctx) => {
    const query = { sku: idParam(ctx, 'sku'), orderId: idParam(ctx, 'order_id') };
    let figures: Figures;
    try {
      figures = await readFigures(redis, queueChecker.current(), query);
    } catch (err) {
      if (!(err instanceof TransientError)) throw err;
      // Logged at debug: the Redis client already logs the outage, and the page polls every second.
      log.debug({ err: err.message }, 'figures unavailable');
      throw new HttpProblem(503, 'Service Unavailable', 'Redis is unavailable; the figures cannot be read', {}, { 'Retry-After': '1' });
    }
    noteInvalid(figures);
    ctx.set('Cache-Control', 'no-store');
    // The same URL answers JSON or Prometheus text: caches must key on Accept.
    ctx.vary('Accept');
    if (prefersPrometheus(ctx.get('Accept') || undefined)) {
      const { contentType, body } = await toPrometheus(figures, [metrics.registry]);
      ctx.type = contentType;
      ctx.body = body;
    } else {
      ctx.body = figures;
    }
  });
  // The live page's stream: a snapshot about every second while the page is open.
  router.get('/events', reader, (ctx) => {
    if (!feed.canAccept()) {
      throw new HttpProblem(
        503,
        'Service Unavailable',
        'Too many live page connections, or the dashboard is stopping',
        {},
        { 'Retry-After': '5' },
      );
    }
    // Koa leaves the response alone from here; the feed writes and ends it.
    ctx.respond = false;
    feed.attach(ctx.res);
  });
  // One order's history for the live page (a click on a recent order); the page may only fetch
  // from its own origin, so the dashboard reads history:<id> itself.
  router.get('/orders/:id/history', reader, async (ctx) => {
    const id = ctx.params.id ?? '';
    if (!ID_REGEX.test(id)) throw new HttpProblem(400, 'Invalid Order Id', 'An order id is 1-64 characters of A-Z a-z 0-9 _ . : -');
    let found: [number, string[]];
    try {
      const [exists, raw] = await Promise.all([redis.exists(keys.order(id)), redis.lrange(keys.history(id), 0, -1)]);
      found = [exists, raw];
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'history unavailable');
      throw new HttpProblem(503, 'Service Unavailable', 'Redis is unavailable; the history cannot be read', {}, { 'Retry-After': '1' });
    }
    const [exists, raw] = found;
    if (exists === 0 && raw.length === 0) throw new HttpProblem(404, 'Order Not Found', `No order with id ${id}`);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { id, history: parseHistory(raw) };
  });
  // The whole pipeline's document (shared/openapi.json), as the gateway serves it: one contract, tagged by service.
  router.get('/openapi.json', openapiRoute);
  router.get('/', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Security-Policy', PAGE_CSP);
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = config.auth ? PAGE_HTML_AUTH : PAGE_HTML;
  });
  // The page's script: a file of this origin, so the CSP needs no inline script.
  router.get('/app.js', (ctx) => {
    ctx.set('Cache-Control', 'no-cache');
    ctx.type = 'text/javascript; charset=utf-8';
    ctx.body = PAGE_SCRIPT;
  });

  const app = new Koa();
  app.use(timingMiddleware(metrics));
  app.use(problemMiddleware(log));
  // On every answer, problems included; the page and the problem pages set their own CSP.
  app.use(async (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
    await next();
  });
  // No metrics registry here: the dashboard's /metrics is the figures route (its process metrics ride along there).
  // The dashboard only reads from the broker: a publishing block does not concern it.
  app.use(opsMiddleware(dependencyChecks(redis, broker, undefined, { publishes: false })));
  app.use(router.routes());
  app.use(router.allowedMethods());

  const { server, address, port } = await listen(app, deps.port ?? config.port, deps.host);
  log.info({ address }, 'dashboard listening');
  return {
    address,
    port,
    async stop() {
      // Ends the event streams first: the server only closes once no response is open.
      feed.close();
      await closeServer(server, deps.stopGraceMs ?? STOP_GRACE_MS);
      await queueChecker.close();
    },
  };
}

/**
 * GET /metrics: the figures the page and Prometheus read. With METRICS_BEARER_TOKEN its token is
 * taken; with auth on, a token with orders:read too; with neither it is open, as before.
 */
function metricsGuard(config: Config, reader: Middleware): Middleware {
  const expected = config.metricsBearerToken;
  return async (ctx, next) => {
    const authorization = ctx.get('authorization') || undefined;
    if (expected !== undefined) {
      const presented = bearerToken(authorization);
      if (presented !== undefined && secretsEqual(presented, expected)) return next();
      if (!config.auth) return checkMetricsToken(authorization, expected);
    }
    return reader(ctx, next);
  };
}

/** `?name=` as an id (1-64 of A-Z a-z 0-9 _ . : -), undefined when absent; 400 problem otherwise. */
function idParam(ctx: Context, name: string): string | undefined {
  const value = ctx.query[name];
  if (value === undefined) return undefined;
  if (typeof value === 'string' && ID_REGEX.test(value)) return value;
  const message = typeof value === 'string' ? 'must be 1-64 characters of A-Z a-z 0-9 _ . : -' : 'must be given once';
  throw new HttpProblem(400, 'Invalid Query', `${name} ${message}`, { errors: [{ path: name, message }] });
}

/**
 * Passive queue checks on the dashboard's own channel. A passive check of a missing queue (one
 * deleted by hand) makes the broker close the channel; the shared broker then reconnects, and
 * every channel's setup declares the topology again.
 */
function dashboardQueueChecker(broker: Broker): { current(): QueueChecker | null; close(): Promise<void> } {
  const channel = broker.channel('dashboard');
  let open = false;
  void channel.addSetup(async (ch: Channel) => {
    open = true;
    ch.on('close', () => (open = false));
  });

  const checker: QueueChecker = {
    async checkQueue(queue) {
      // Checking before the setup has declared the topology would fail on a fresh broker.
      await withTimeout(channel.waitForConnect(), QUEUE_CHECK_TIMEOUT_MS, 'the dashboard channel is not set up');
      return withTimeout(channel.checkQueue(queue), QUEUE_CHECK_TIMEOUT_MS, `no answer to checkQueue(${queue})`);
    },
  };
  return {
    current: () => (open && broker.isConnected() ? checker : null),
    async close() {
      await channel.close().catch(() => undefined);
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Logs each bad inventory value once (the page asks every second), not on every request. */
function invalidInventoryNoter(log: Logger): (figures: Figures) => void {
  const noted = new Set<string>();
  return (figures) => {
    for (const [sku, value] of Object.entries(figures.inventory_invalid ?? {})) {
      const key = `${sku}\n${value}`;
      if (noted.has(key)) continue;
      if (noted.size >= 10_000) noted.clear();
      noted.add(key);
      log.warn({ sku, value }, 'inventory value is not a whole number; left out of the figures');
    }
  };
}
