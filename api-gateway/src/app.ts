import Router from '@koa/router';
import Koa from 'koa';
import {
  HttpProblem,
  closeServer,
  createMetrics,
  dependencyChecks,
  listen,
  opsMiddleware,
  problemMiddleware,
  timingMiddleware,
  type RunningService,
  type ServiceDeps,
} from '@order-pipeline/shared';
import { createOrderMetrics, getOrder, placeOrder, resultOf, type OrderDeps } from './orders.js';

export type GatewayDeps = ServiceDeps;
/** `stop` stops taking requests and waits for those in progress. */
export type Gateway = RunningService;

export function createApp(deps: Omit<GatewayDeps, 'port' | 'host'>): Koa {
  const { redis, broker, log } = deps;
  const metrics = createMetrics(deps.config.service);
  const orderDeps: OrderDeps = { ...deps, metrics: createOrderMetrics(metrics) };

  const router = new Router();
  router.post('/orders', async (ctx) => {
    try {
      await placeOrder(ctx, orderDeps);
    } catch (err) {
      const result = err instanceof HttpProblem ? resultOf(err.status) : undefined;
      if (result) orderDeps.metrics.orders(result);
      throw err;
    }
    const result = resultOf(ctx.status);
    if (result) orderDeps.metrics.orders(result);
  });
  router.get('/orders/:id', (ctx) => getOrder(ctx, ctx.params.id ?? '', orderDeps));

  const app = new Koa();
  // Errors past problemMiddleware (e.g. a client that hung up mid-response) go to our log, not stderr.
  app.on('error', (err: Error) => log.warn({ err: err.message }, 'http error'));
  app.use(timingMiddleware(metrics));
  app.use(problemMiddleware(log));
  app.use(opsMiddleware(dependencyChecks(redis, broker), metrics));
  app.use(router.routes());
  // 405 with Allow for known paths; problemMiddleware turns the bare 404/405 into problems.
  app.use(router.allowedMethods());
  return app;
}

export async function start(deps: GatewayDeps): Promise<Gateway> {
  const app = createApp(deps);
  const { server, address, port } = await listen(app, deps.port ?? deps.config.port, deps.host);
  deps.log.info({ address }, 'api-gateway listening');
  return { address, port, stop: () => closeServer(server) };
}
