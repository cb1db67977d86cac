import {
  orderRetentionMs,
  OrderExpiredError,
  createMetrics,
  startConsumerService,
  queues,
  type RunningService,
  type ConsumerDeps,
} from '@order-pipeline/shared';
import { handleOrderMessage, type CancelKind, type OutcomeKind } from './processor.js';

export type ProcessorAppDeps = ConsumerDeps;

/** `stop` stops consuming (waits for the messages in hand), then closes the ops server. */
export type RunningProcessor = RunningService;

const CANCEL_OUTCOMES: readonly CancelKind[] = ['cancelled', 'refunded', 'already_cancelled', 'not_cancellable'];

const OUTCOMES: readonly (OutcomeKind | 'expired')[] = [
  'created',
  'rejected_out_of_stock',
  'rejected_unknown_sku',
  'redelivered',
  'cancelled',
  'expired',
];

export async function start(deps: ProcessorAppDeps): Promise<RunningProcessor> {
  const { config, redis, broker, log } = deps;
  const metrics = deps.metrics ?? createMetrics(config.service);
  const orders = metrics.counter('processor_orders_total', 'order.placed messages handled, by outcome', ['outcome'] as const);
  // Every label from the start, so a dashboard sees zeros rather than missing series.
  for (const outcome of OUTCOMES) orders.inc({ outcome }, 0);
  const cancellations = metrics.counter(
    'processor_cancellations_total',
    'order.cancel_requested messages handled, by outcome: cancelled before any reservation, refunded (stock given back), already_cancelled (a redelivery or another cancel), not_cancellable (rejected or expired)',
    ['outcome'] as const,
  );
  for (const outcome of CANCEL_OUTCOMES) cancellations.inc({ outcome }, 0);
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
        const handled = await handleOrderMessage(
          { redis, broker, log, orderTtlMs: config.orderTtlMs, retentionMs: orderRetentionMs(config) },
          msg,
          ctx.span,
        );
        if ('cancel' in handled) cancellations.inc({ outcome: handled.cancel.kind });
        else orders.inc({ outcome: handled.placed.kind });
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
