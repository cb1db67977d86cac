import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type { Context, Middleware } from 'koa';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { checkMetricsToken } from './auth.js';
import type { Logger } from './logger.js';
import { OPENAPI_TEXT, openapiDocument } from './openapi.js';
import { SpanKind, SpanStatusCode, extractContext, type Span, type Tracer } from './tracing.js';

// HTTP pieces every service shares: problem+json errors (RFC 9457), /healthz, /readyz, /metrics.

// Problem types are relative URLs, resolved against the request's URL (RFC 9457 section 3.1.1):
// every service serves the pages itself (opsMiddleware), so a type resolves on whichever service
// answered, the consumers' ops servers included, and no service needs to know the public address
// it is reached at. The pages are written in the OpenAPI document (components/schemas/ProblemType).
export const PROBLEM_TYPE_BASE = '/problems/';

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'HttpProblem';
  }
}

export function slug(title: string): string {
  return title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

export interface ProblemTypePage {
  slug: string;
  title: string;
  /** What it means, a blank line, then what to do (Markdown, from the OpenAPI document). */
  description: string;
}

/** Every documented problem type by slug. */
export const PROBLEM_TYPES: ReadonlyMap<string, ProblemTypePage> = new Map(
  openapiDocument.components.schemas.ProblemType.oneOf.map(({ const: type, title, description }) => {
    const slug = type.slice(PROBLEM_TYPE_BASE.length);
    return [slug, { slug, title, description }] as const;
  }),
);

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A short HTML page: the title, then each paragraph of the description, `code` as <code>. */
export function problemTypeHtml(page: ProblemTypePage): string {
  const paragraphs = page.description
    .split(/\n\s*\n/)
    .map((p) => `<p>${escapeHtml(p.trim()).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`)
    .join('\n');
  return [
    '<!doctype html>',
    '<html lang="en">',
    `<head><meta charset="utf-8"><title>${escapeHtml(page.title)}</title></head>`,
    '<body>',
    `<h1>${escapeHtml(page.title)}</h1>`,
    paragraphs,
    `<p>Problem type <code>${PROBLEM_TYPE_BASE}${page.slug}</code> of the order pipeline.</p>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** GET /openapi.json: the document as it is in the repository. */
export const openapiRoute: Middleware = (ctx) => {
  ctx.type = 'application/json';
  ctx.body = OPENAPI_TEXT;
};

export function sendProblem(ctx: Context, p: HttpProblem): void {
  for (const [k, v] of Object.entries(p.headers)) ctx.set(k, v);
  ctx.status = p.status;
  ctx.type = 'application/problem+json';
  ctx.body = JSON.stringify({ type: PROBLEM_TYPE_BASE + slug(p.title), title: p.title, status: p.status, detail: p.detail, ...p.extra });
}

/**
 * The one error middleware: HttpProblem as it is, the router's bare 404/405/501 as problems,
 * anything else as a 500 problem (logged).
 */
export function problemMiddleware(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        sendProblem(ctx, new HttpProblem(404, 'Not Found', `No route for ${ctx.method} ${ctx.path}`));
      } else if (ctx.status === 405 && ctx.body === undefined) {
        sendProblem(ctx, new HttpProblem(405, 'Method Not Allowed', `${ctx.method} is not allowed on ${ctx.path}`));
      } else if (ctx.status === 501 && ctx.body === undefined) {
        // The router's answer to a method it implements nowhere (e.g. PROPFIND).
        sendProblem(ctx, new HttpProblem(501, 'Not Implemented', `${ctx.method} is not a method this service implements`));
      }
    } catch (err) {
      if (err instanceof HttpProblem) return sendProblem(ctx, err);
      log.error({ err, path: ctx.path }, 'unhandled error');
      sendProblem(ctx, new HttpProblem(500, 'Internal Server Error', 'The request failed unexpectedly'));
    }
  };
}

export interface ReadinessCheck {
  name: string;
  ok: () => boolean;
}

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  counter<L extends string>(name: string, help: string, labelNames?: readonly L[]): Counter<L>;
  histogram<L extends string>(name: string, help: string, labelNames?: readonly L[], buckets?: number[]): Histogram<L>;
  /** A gauge without labels whose value `read` gives at each scrape. */
  gauge(name: string, help: string, read: () => number): Gauge;
}

export function createMetrics(service: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  return {
    registry,
    httpDuration,
    counter: (name, help, labelNames = []) => new Counter({ name, help, labelNames, registers: [registry] }),
    histogram: (name, help, labelNames = [], buckets) =>
      new Histogram({ name, help, labelNames, registers: [registry], ...(buckets ? { buckets } : {}) }),
    gauge: (name, help, read) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      }),
  };
}

/** The ops endpoints, served without a router: their path is their route. */
const OPS_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/** Times every request by its route template (never the raw path: ids would explode the labels). */
export function timingMiddleware(metrics: Metrics): Middleware {
  // One labelled child per (method, route, status), made on first use: the set is small (routes
  // are templates, methods and statuses few), and a child spares each request prom-client's
  // timer closure, label merge and label lookup.
  const children = new Map<string, { observe(seconds: number): void }>();
  return async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      const route = String(
        (ctx as Context & { _matchedRoute?: string })._matchedRoute ??
          (OPS_ROUTES.has(ctx.path) ? ctx.path : ctx.path.startsWith(PROBLEM_TYPE_BASE) ? `${PROBLEM_TYPE_BASE}:slug` : 'unmatched'),
      );
      const status = String(ctx.status);
      const key = `${ctx.method} ${route} ${status}`;
      let child = children.get(key);
      if (child === undefined) {
        child = metrics.httpDuration.labels({ method: ctx.method, route, status });
        children.set(key, child);
      }
      child.observe((performance.now() - started) / 1000);
    }
  };
}

const SPAN = Symbol('request span');

/** The SERVER span of the request (set by tracedRoute): the parent of what the route does. */
export function requestSpan(ctx: Context): Span | undefined {
  return (ctx.state as Record<symbol, Span | undefined>)[SPAN];
}

/**
 * Runs a route in a SERVER span named `METHOD route` (e.g. `POST /orders`) that continues the
 * request's `traceparent`/`tracestate`, or starts a new trace. The route finds it with
 * requestSpan(ctx). A 5xx marks the span as failed.
 */
export function tracedRoute(tracer: Tracer, method: string, route: string, handler: Middleware): Middleware {
  const name = `${method} ${route}`;
  return async (ctx, next) => {
    const span = tracer.startSpan(
      name,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'http.route': route } },
      extractContext(ctx.headers),
    );
    (ctx.state as Record<symbol, Span>)[SPAN] = span;
    let status = 500;
    try {
      await handler(ctx, next);
      status = ctx.status;
    } catch (err) {
      if (err instanceof HttpProblem) status = err.status;
      else span.recordException(err as Error);
      throw err;
    } finally {
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
  };
}

/**
 * /healthz (alive), /readyz (200 only while every check passes, else 503 naming what is down),
 * /problems/<slug> (what a problem type means) and, when `metrics` is given, /metrics in
 * Prometheus text (behind `metricsToken` when given). Mount inside problemMiddleware, before the service's own routes.
 */
export function opsMiddleware(checks: ReadinessCheck[], metrics?: Metrics, metricsToken?: string): Middleware {
  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return;
    }
    if (ctx.path === '/readyz') {
      const down = checks.filter((c) => !c.ok()).map((c) => c.name);
      ctx.status = down.length === 0 ? 200 : 503;
      ctx.body = down.length === 0 ? { status: 'ready' } : { status: 'not ready', down };
      return;
    }
    if (ctx.path.startsWith(PROBLEM_TYPE_BASE)) {
      const page = PROBLEM_TYPES.get(ctx.path.slice(PROBLEM_TYPE_BASE.length));
      if (!page) throw new HttpProblem(404, 'Not Found', `No problem type ${ctx.path}`);
      // A static page: no script, no style, nothing loaded.
      ctx.set('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
      ctx.set('X-Content-Type-Options', 'nosniff');
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = problemTypeHtml(page);
      return;
    }
    if (metrics && ctx.path === '/metrics') {
      // METRICS_BEARER_TOKEN: the exposition names queues, nodes and rates; only the scraper reads it.
      if (metricsToken !== undefined) checkMetricsToken(ctx.get('authorization') || undefined, metricsToken);
      ctx.type = metrics.registry.contentType;
      ctx.body = await metrics.registry.metrics();
      return;
    }
    return next();
  };
}

/** Listens on host:port (0 for any free port); resolves with the bound address. */
export async function listen(app: Koa, port: number, host = '0.0.0.0'): Promise<{ server: Server; address: string; port: number }> {
  const server = app.listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  // Keep-alive longer than typical load balancers' idle timeout, so they close first.
  server.keepAliveTimeout = 65_000;
  const a = server.address() as AddressInfo;
  return { server, port: a.port, address: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${a.port}` };
}

/**
 * Stops accepting connections, lets the requests in progress finish, and resolves when every
 * connection is closed. A keep-alive client under load never leaves its connection idle and sends
 * more requests on it, so `server.close()` alone would wait for ever: every answer from now on
 * says `Connection: close` (the client's next request opens a connection elsewhere), idle
 * connections are closed as they appear, and after `graceMs` whatever is left is cut.
 */
export function closeServer(server: Server, graceMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    const onRequest = (_req: unknown, res: ServerResponse) => {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    };
    server.on('request', onRequest);
    const idle = setInterval(() => server.closeIdleConnections(), 50);
    const cut = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearInterval(idle);
      clearTimeout(cut);
      server.off('request', onRequest);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * The readiness every service reports: Redis and the broker, and for consumers the consumer. A
 * service that publishes is also not ready while the broker blocks its publishes (a memory or
 * disk alarm), as `broker blocked`: a load balancer then sends its requests elsewhere.
 */
export function dependencyChecks(
  redis: { status: string },
  broker: { isConnected(): boolean; isBlocked(): boolean },
  consumer?: () => { isConsuming(): boolean } | undefined,
  { publishes = true }: { publishes?: boolean } = {},
): ReadinessCheck[] {
  const checks: ReadinessCheck[] = [
    { name: 'redis', ok: () => redis.status === 'ready' },
    { name: 'broker', ok: () => broker.isConnected() },
  ];
  if (publishes) checks.push({ name: 'broker blocked', ok: () => !broker.isBlocked() });
  if (consumer) checks.push({ name: 'consumer', ok: () => consumer()?.isConsuming() ?? false });
  return checks;
}

/** The consumers' HTTP server: /healthz, /readyz and /metrics only, problems for anything else. */
export async function startOpsServer(opts: {
  log: Logger;
  metrics: Metrics;
  checks: ReadinessCheck[];
  port: number;
  host?: string;
  /** METRICS_BEARER_TOKEN, when set. */
  metricsToken?: string;
}): Promise<{ server: Server; address: string; port: number }> {
  const app = new Koa();
  // Timing outside the problem middleware, as in the other services: it sees the status that was
  // answered (500 for a thrown error), not the 404 Koa holds until something answers.
  app.use(timingMiddleware(opts.metrics));
  app.use(problemMiddleware(opts.log));
  app.use(opsMiddleware(opts.checks, opts.metrics, opts.metricsToken));
  return listen(app, opts.port, opts.host);
}
