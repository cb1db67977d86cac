import {
  closeServer,
  dependencyChecks,
  startOpsServer,
  createMetrics,
  defaultBackoffMs,
  queues,
  type Broker,
  type Config,
  type Consumer,
  type Logger,
  type RedisClient,
} from '@order-pipeline/shared';
import { handleOrderPlaced, type OutcomeKind } from './processor.js';

export interface ProcessorAppDeps {
  config: Config;
  redis: RedisClient;
  broker: Broker;
  log: Logger;
  /** Ops server port; defaults to config.ports.processor (tests pass 0). */
  port?: number;
  host?: string;
  /** Attempts before a transiently failing message is dead-lettered. */
  maxAttempts?: number;
  backoffMs?: (attempt: number) => number;
}

export interface RunningProcessor {
  address: string;
  port: number;
  /** Stops consuming (waits for the messages in hand), then closes the ops server. */
  stop(): Promise<void>;
}

const OUTCOMES: readonly OutcomeKind[] = ['created', 'rejected_out_of_stock', 'rejected_unknown_sku', 'redelivered'];

export async function start(deps: ProcessorAppDeps): Promise<RunningProcessor> {
  const { config, redis, broker, log } = deps;
  const metrics = createMetrics(config.service);
  const orders = metrics.counter('processor_orders_total', 'order.placed messages handled, by outcome', ['outcome'] as const);
  // Every label from the start, so a dashboard sees zeros rather than missing series.
  for (const outcome of OUTCOMES) orders.inc({ outcome }, 0);
  const handleSeconds = metrics.histogram('processor_handle_seconds', 'Time to decide an order and confirm its outcome event', [], [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
  ]);

  // Filled once the ops server listens; /readyz says not ready until then.
  const running: { consumer?: Consumer } = {};
  const checks = dependencyChecks(redis, broker, () => running.consumer);
  const http = await startOpsServer({ log, metrics, checks, port: deps.port ?? config.ports.processor, host: deps.host });

  const consumer = broker.consume({
    queue: queues.orders,
    prefetch: config.prefetch,
    maxAttempts: deps.maxAttempts ?? 5,
    backoffMs: deps.backoffMs ?? defaultBackoffMs,
    handler: async (msg) => {
      const end = handleSeconds.startTimer();
      try {
        const outcome = await handleOrderPlaced({ redis, broker, log }, msg);
        orders.inc({ outcome: outcome.kind });
      } finally {
        end();
      }
    },
  });
  running.consumer = consumer;
  log.info({ address: http.address, queue: queues.orders }, 'order processor started');

  let stopping: Promise<void> | undefined;
  return {
    address: http.address,
    port: http.port,
    stop: () =>
      (stopping ??= (async () => {
        await consumer.stop();
        await closeServer(http.server);
        log.info('order processor stopped');
      })()),
  };
}
