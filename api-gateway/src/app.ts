import Router from '@koa/router';
import Koa from 'koa';
import type { Middleware } from 'koa';
import {
  HttpProblem,
  closeServer,
  createAuthenticator,
  createMetrics,
  dependencyChecks,
  listen,
  openapiRoute,
  opsMiddleware,
  problemMiddleware,
  requireScope,
  slug,
  timingMiddleware,
  trace,
  tracedRoute,
  type Metrics,
  type RunningService,
  type ServiceDeps,
} from '@order-pipeline/shared';
import { admissionMetrics, startAdmission, type Admission } from './admission.js';
import { listOrders } from './list.js';
import { rateLimit } from './rate-limit.js';
import { cancelOrderRequest, cancelResultOf, createCancelMetrics } from './cancel.js';
import { adjustStock, getInventory, inventoryChangeCounter, listInventory, setInventory, type InventoryDeps } from './inventory.js';
import { createOrderMetrics, getOrder, idempotencySteps, placeOrder, resultOf, type OrderDeps } from './orders.js';

export type GatewayDeps = ServiceDeps;
/** `stop` stops taking requests and waits for those in progress. */
export type Gateway = RunningService;

/** Problem types POST /orders answers with; every one is exported from the start. */
export const REFUSALS = [
  'bad-request',
  'malformed-json',
  'invalid-order',
  'content-too-large',
  'unsupported-media-type',
  'idempotency-key-reused',
  'order-in-flight',
  'order-claim-lost',
  'service-unavailable',
  'broker-blocked',
  'overloaded',
  'internal-server-error',
  // Refused by the guards before the route runs: no or a bad token, a token without the scope
  // (AUTH_JWT_SECRET / AUTH_JWKS_URL), the caller over RATE_LIMIT_PER_MINUTE.
  'unauthorized',
  'insufficient-scope',
  'too-many-requests',
] as const;

/** gateway_order_refusals_total{reason}: POST /orders answered with a problem, by its type (a fixed set). */
function refusalCounter(metrics: Metrics): Middleware {
  const refusals = metrics.counter('gateway_order_refusals_total', 'POST /orders answered with a problem, by problem type', [
    'reason',
  ] as const);
  for (const reason of REFUSALS) refusals.inc({ reason }, 0);
  const known = new Set<string>(REFUSALS);
  // First on the route, so it sees the guards' refusals as well as the route's own.
  return async (_ctx, next) => {
    try {
      await next();
    } catch (err) {
      const reason = err instanceof HttpProblem ? slug(err.title) : 'internal-server-error';
      refusals.inc({ reason: known.has(reason) ? reason : 'other' });
      throw err;
    }
  };
}

export function createApp(deps: Omit<GatewayDeps, 'port' | 'host'>, admission?: Admission): Koa {
  const { redis, broker, log } = deps;
  const metrics = deps.metrics ?? createMetrics(deps.config.service);
  const orderDeps: OrderDeps = {
    ...deps,
    metrics: createOrderMetrics(metrics),
    idempotency: idempotencySteps(redis, deps.config),
    ...(admission ? { admission } : {}),
  };
  const refused = refusalCounter(metrics);
  if (admission) admissionMetrics(metrics, admission);
  const cancels = createCancelMetrics(metrics);
  const tracer = trace.getTracer(deps.config.service);
  // Auth off (no AUTH_JWT_SECRET / AUTH_JWKS_URL): each guard lets everything through.
  const authenticator = deps.config.auth ? createAuthenticator(deps.config.auth) : undefined;
  const limit = deps.config.rateLimitPerMinute === undefined ? undefined : rateLimit(redis, deps.config.rateLimitPerMinute, log);
  // Who may (401/403), then how often (429): both before the route reads or writes anything. A
  // guard that is off is left out rather than mounted as a pass-through: each middleware is one
  // more promise and dispatch per request.
  const guard = (scope: Parameters<typeof requireScope>[1]) => [
    ...(authenticator ? [requireScope(authenticator, scope, log)] : []),
    ...(limit ? [limit] : []),
  ];

  const router = new Router();
  router.post(
    '/orders',
    refused,
    ...guard('orders:write'),
    tracedRoute(tracer, 'POST', '/orders', async (ctx) => {
      try {
        await placeOrder(ctx, orderDeps);
      } catch (err) {
        const problem = err instanceof HttpProblem ? err : undefined;
        const result = problem ? resultOf(problem.status) : undefined;
        if (result) orderDeps.metrics.orders(result);
        throw err;
      }
      const result = resultOf(ctx.status);
      if (result) orderDeps.metrics.orders(result);
    }),
  );
  router.get(
    '/orders',
    ...guard('orders:read'),
    tracedRoute(tracer, 'GET', '/orders', (ctx) => listOrders(ctx, orderDeps)),
  );
  router.get(
    '/orders/:id',
    ...guard('orders:read'),
    tracedRoute(tracer, 'GET', '/orders/:id', (ctx) => getOrder(ctx, ctx.params.id ?? '', orderDeps)),
  );
  router.post(
    '/orders/:id/cancel',
    ...guard('orders:write'),
    tracedRoute(tracer, 'POST', '/orders/:id/cancel', async (ctx) => {
      try {
        await cancelOrderRequest(ctx, ctx.params.id ?? '', orderDeps);
      } catch (err) {
        const result = err instanceof HttpProblem ? cancelResultOf(err.status) : undefined;
        if (result) cancels(result);
        throw err;
      }
      const result = cancelResultOf(ctx.status);
      if (result) cancels(result);
    }),
  );
  const inventoryDeps: InventoryDeps = { config: deps.config, redis, log, changed: inventoryChangeCounter(metrics) };
  router.get(
    '/inventory',
    ...guard('inventory:read'),
    tracedRoute(tracer, 'GET', '/inventory', (ctx) => listInventory(ctx, inventoryDeps)),
  );
  router.get(
    '/inventory/:sku',
    ...guard('inventory:read'),
    tracedRoute(tracer, 'GET', '/inventory/:sku', (ctx) => getInventory(ctx, inventoryDeps)),
  );
  router.put(
    '/inventory/:sku',
    ...guard('inventory:write'),
    tracedRoute(tracer, 'PUT', '/inventory/:sku', (ctx) => setInventory(ctx, inventoryDeps)),
  );
  router.post(
    '/inventory/:sku/adjust',
    ...guard('inventory:write'),
    tracedRoute(tracer, 'POST', '/inventory/:sku/adjust', (ctx) => adjustStock(ctx, inventoryDeps)),
  );
  // The contract this gateway follows (shared/openapi.json); its POST /orders schema is the one validated.
  router.get('/openapi.json', openapiRoute);

  const app = new Koa();
  // Errors past problemMiddleware (e.g. a client that hung up mid-response) go to our log, not stderr.
  app.on('error', (err: Error) => log.warn({ err: err.message }, 'http error'));
  app.use(timingMiddleware(metrics));
  app.use(problemMiddleware(log));
  app.use(opsMiddleware(dependencyChecks(redis, broker), metrics, deps.config.metricsBearerToken));
  app.use(router.routes());
  // 405 with Allow for known paths; problemMiddleware turns the bare 404/405 into problems.
  app.use(router.allowedMethods());
  return app;
}

export async function start(deps: GatewayDeps): Promise<Gateway> {
  const admission = startAdmission({
    broker: deps.broker,
    redis: deps.redis,
    log: deps.log,
    orderTtlMs: deps.config.orderTtlMs,
    maxBacklog: deps.config.maxBacklog,
  });
  const app = createApp(deps, admission);
  const { server, address, port } = await listen(app, deps.port ?? deps.config.port, deps.host);
  deps.log.info({ address }, 'api-gateway listening');
  return {
    address,
    port,
    stop: async () => {
      await closeServer(server);
      admission.stop();
    },
  };
}
