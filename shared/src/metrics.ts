import type { Redis } from 'ioredis';
import { Gauge } from 'prom-client';
import { redactUrl, type BrokerObserver, type DeadLetterReason, type HandleOutcome } from './broker/index.js';
import type { Metrics } from './http.js';

// The metrics every service exports about its clients: the broker (connection, publishes, the
// consumer's deliveries) and Redis. Label values come from small fixed sets (exchange and queue
// names, outcomes, reasons, the configured broker nodes), never from order ids.

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

const HANDLE_OUTCOMES: readonly HandleOutcome[] = ['ack', 'retry', 'dead_letter'];
/** Every reason a message can be dead-lettered for; the compiler fails here when one is missing. */
const DEAD_LETTER_REASON_SET = {
  unparseable: true,
  invalid: true,
  unknown_version: true,
  unknown_type: true,
  expired: true,
  payload_mismatch: true,
  attempts_exhausted: true,
  webhook_refused: true,
  endpoint_gone: true,
} satisfies Record<DeadLetterReason, true>;
/** Why a message is dead-lettered: a poison reason, or its attempts ran out. */
export const DEAD_LETTER_REASONS = Object.keys(DEAD_LETTER_REASON_SET) as readonly DeadLetterReason[];

/** The label of the default exchange (''), through which retry copies go back to their queue. */
const DEFAULT_EXCHANGE_LABEL = '(default)';

/**
 * A BrokerObserver that keeps these, in `metrics`' registry:
 * - broker_connected: 1 while a node is connected, else 0;
 * - broker_failovers_total{node}: connections after the first one, by the node connected to
 *   (one of `urls`, credentials removed);
 * - broker_publish_confirm_seconds{exchange,outcome}: time from publish to confirm or failure;
 * - consumer_handle_seconds{queue,outcome}: time the handler took, by what became of the delivery;
 * - consumer_redeliveries_total{queue}: deliveries that were seen before (broker redeliveries,
 *   quorum delivery count, retry copies);
 * - consumer_dead_lettered_total{queue,reason}: dead letters the broker confirmed.
 */
export function brokerMetrics(metrics: Metrics, urls: readonly string[]): BrokerObserver {
  const { registry } = metrics;
  const connected = new Gauge({ name: 'broker_connected', help: '1 while a broker node is connected, else 0', registers: [registry] });
  connected.set(0);
  const failovers = metrics.counter(
    'broker_failovers_total',
    'Broker connections made after the first one (a reconnect or a move to another node), by node',
    ['node'] as const,
  );
  for (const url of urls) failovers.inc({ node: redactUrl(url) }, 0);
  const confirm = metrics.histogram(
    'broker_publish_confirm_seconds',
    'Time from a publish to its broker confirm, or to its failure (outcome: confirmed, timeout, nacked, unroutable, closed)',
    ['exchange', 'outcome'] as const,
    SECONDS_BUCKETS,
  );
  const handle = metrics.histogram(
    'consumer_handle_seconds',
    'Time the consumer handler took per delivery, by queue and outcome (ack, retry, dead_letter)',
    ['queue', 'outcome'] as const,
    SECONDS_BUCKETS,
  );
  const redeliveries = metrics.counter(
    'consumer_redeliveries_total',
    'Deliveries seen before: broker redeliveries and retry copies, by queue',
    ['queue'] as const,
  );
  const deadLettered = metrics.counter('consumer_dead_lettered_total', 'Messages dead-lettered, by source queue and reason', [
    'queue',
    'reason',
  ] as const);

  return {
    connected: (node, first) => {
      connected.set(1);
      if (!first && node !== undefined) failovers.inc({ node });
    },
    disconnected: () => connected.set(0),
    published: (exchange, outcome, seconds) => confirm.observe({ exchange: exchange || DEFAULT_EXCHANGE_LABEL, outcome }, seconds),
    consuming: (queue) => {
      // Every series of this queue from the start, so a rate() over them never misses the first.
      for (const outcome of HANDLE_OUTCOMES) handle.zero({ queue, outcome });
      redeliveries.inc({ queue }, 0);
      for (const reason of DEAD_LETTER_REASONS) deadLettered.inc({ queue, reason }, 0);
    },
    delivered: (queue, redelivered) => {
      if (redelivered) redeliveries.inc({ queue });
    },
    handled: (queue, outcome, seconds) => handle.observe({ queue, outcome }, seconds),
    deadLettered: (queue, reason) => deadLettered.inc({ queue, reason }),
  };
}

/**
 * Redis client metrics: redis_errors_total (every 'error' event: failed connects, lost
 * connections, protocol errors) and redis_connected (1 while the client is ready, read at scrape).
 */
export function observeRedis(redis: Redis, metrics: Metrics): void {
  const errors = metrics.counter('redis_errors_total', "Errors the Redis client reported ('error' events)");
  errors.inc(0);
  redis.on('error', () => errors.inc());
  new Gauge({
    name: 'redis_connected',
    help: '1 while the Redis client is connected and ready, else 0',
    registers: [metrics.registry],
    collect() {
      this.set(redis.status === 'ready' ? 1 : 0);
    },
  });
}
