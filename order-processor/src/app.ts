import {
  OrderExpiredError,
  createMetrics,
  startConsumerService,
  queues,
  type RunningService,
  type ConsumerDeps,
} from '@order-pipeline/shared';
import { handleOrderPlaced, type OutcomeKind } from './processor.js';

export type ProcessorAppDeps = ConsumerDeps;

/** `stop` stops consuming (waits for the messages in hand), then closes the ops server. */
export type RunningProcessor = RunningService;

const OUTCOMES: readonly (OutcomeKind | 'expired')[] = [
  'created',
  'rejected_out_of_stock',
  'rejected_unknown_sku',
  'redelivered',
  'expired',
];

export async function start(deps: ProcessorAppDeps): Promise<RunningProcessor> {
  const { config, redis, broker, log } = deps;
  const metrics = deps.metrics ?? createMetrics(config.service);
  const orders = metrics.counter('processor_orders_total', 'order.placed messages handled, by outcome', ['outcome'] as const);
  // Every label from the start, so a dashboard sees zeros rather than missing series.
  for (const outcome of OUTCOMES) orders.inc({ outcome }, 0);
  const handleSeconds = metrics.histogram(
    'processor_handle_seconds',
    'Time to decide an order and confirm its outcome event',
    [],
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );

  return startConsumerService({
    deps,
    metrics,
    queue: queues.orders,
    defaultPort: config.ports.processor,
    handler: async (msg, ctx) => {
      const end = handleSeconds.startTimer();
      try {
        const outcome = await handleOrderPlaced({ redis, broker, log, orderTtlMs: config.orderTtlMs }, msg, ctx.span);
        orders.inc({ outcome: outcome.kind });
      } catch (err) {
        // Dead-lettered by the consume helper with reason 'expired'.
        if (err instanceof OrderExpiredError) orders.inc({ outcome: 'expired' });
        throw err;
      } finally {
        end();
      }
    },
  });
}
