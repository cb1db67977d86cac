import type { ChannelWrapper } from 'amqp-connection-manager';
import type { Channel } from 'amqplib';
import { Gauge } from 'prom-client';
import {
  applyDelayQueues,
  orderRetentionMs,
  PoisonMessageError,
  RetryLaterError,
  isOutage,
  createMetrics,
  startConsumerService,
  queues,
  type Config,
  type Logger,
  type RunningService,
  type ConsumerDeps,
} from '@order-pipeline/shared';
import { BREAKER_STATES, CircuitBreaker } from './breaker.js';
import { DeliveryFailedError, GoneEndpoint, SendFailedError, UnrecordedSends, handleOutcome, type HandleResult } from './notifier.js';
import { RetrySchedule } from './schedule.js';
import { logSender, webhookSender, type Sender } from './senders.js';
import { createSigner } from './signing.js';

export interface NotifierAppDeps extends ConsumerDeps {
  /** Where notifications go; defaults to the webhook when NOTIFY_WEBHOOK_URL is set, else the log. */
  sender?: Sender;
  /** Lease of a claimed notification; must exceed the sender's timeout. */
  leaseMs?: number;
  /** The webhook request timeout (tests shorten it). */
  webhookTimeoutMs?: number;
}

/** `stop` stops consuming (waits for the messages in hand), then closes the ops server. */
export type RunningNotifier = RunningService;

export const DEFAULT_LEASE_MS = 30_000;
const WEBHOOK_TIMEOUT_MS = 5000;

type Result = HandleResult | 'failed_attempt' | 'dead_lettered' | 'lease_held' | 'refused' | 'endpoint_gone' | 'attempts_exhausted';
const RESULTS: readonly Result[] = [
  'sent',
  'already_sent',
  'retry_scheduled',
  'paused',
  'failed_attempt',
  'dead_lettered',
  'lease_held',
  'refused',
  'endpoint_gone',
  'attempts_exhausted',
];

export function defaultSender(config: Config, log: Logger, timeoutMs = WEBHOOK_TIMEOUT_MS): Sender {
  return config.notifyWebhookUrl
    ? webhookSender(config.notifyWebhookUrl, { timeoutMs, signer: createSigner(config.notifyWebhookSecrets) })
    : logSender(log);
}

export async function start(deps: NotifierAppDeps): Promise<RunningNotifier> {
  const { config, redis, log, broker } = deps;
  const metrics = deps.metrics ?? createMetrics(config.service);
  const notifications = metrics.counter('notifier_notifications_total', 'Notification messages handled, by result', ['result'] as const);
  for (const result of RESULTS) notifications.inc({ result }, 0);
  const sendSeconds = metrics.histogram(
    'notifier_send_seconds',
    'Time the sender took per attempt',
    ['channel'] as const,
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );
  const circuit = new Gauge({
    name: 'notifier_webhook_circuit_state',
    help: "1 for the webhook circuit breaker's current state (closed, open, half_open), 0 for the others",
    labelNames: ['state'] as const,
    registers: [metrics.registry],
  });
  const transitions = metrics.counter(
    'notifier_webhook_circuit_transitions_total',
    'Changes of the webhook circuit breaker, by the state entered',
    ['state'] as const,
  );
  const goneGauge = new Gauge({
    name: 'notifier_webhook_endpoint_gone',
    help: '1 once the webhook endpoint answered 410 Gone (nothing is sent to it until its flag is deleted), else 0',
    registers: [metrics.registry],
  });
  goneGauge.set(0);
  const showState = (to: string) => {
    for (const state of BREAKER_STATES) circuit.set({ state }, state === to ? 1 : 0);
  };
  showState('closed');
  for (const state of BREAKER_STATES) transitions.inc({ state }, 0);

  const base = deps.sender ?? defaultSender(config, log, deps.webhookTimeoutMs);
  const sender: Sender = {
    channel: base.channel,
    send: async (n, span) => {
      const end = sendSeconds.startTimer({ channel: base.channel });
      try {
        await base.send(n, span);
      } finally {
        end();
      }
    },
  };

  const schedule = new RetrySchedule(config.notifyRetryScheduleMs, config.notifyBreakerCooldownMs);
  const breaker = new CircuitBreaker({
    threshold: config.notifyBreakerThreshold,
    cooldownMs: config.notifyBreakerCooldownMs,
    onChange: (to) => {
      showState(to);
      transitions.inc({ state: to });
      log.warn({ state: to }, 'webhook circuit breaker changed state');
    },
  });
  const gone = config.notifyWebhookUrl ? new GoneEndpoint(redis, config.notifyWebhookUrl) : undefined;
  if (gone) goneGauge.set((await gone.isGone().catch(() => false)) ? 1 : 0);

  // The delay queues of this schedule, declared before the first delivery and again on every
  // (re)connect: they depend on NOTIFY_RETRY_SCHEDULE, so only the notifier declares them.
  const delays: ChannelWrapper = broker.connection.createChannel({
    name: `${config.service}:delay-queues`,
    confirm: false,
    setup: async (ch: Channel) => {
      await applyDelayQueues(ch, schedule.delays, config.queueType);
    },
  });
  delays.on('error', (err: Error) => log.error({ err: err.message }, 'declaring the delay queues failed'));
  await delays.waitForConnect();

  const handlerDeps = {
    redis,
    sender,
    log,
    leaseMs: deps.leaseMs ?? DEFAULT_LEASE_MS,
    retentionMs: orderRetentionMs(config),
    unrecorded: new UnrecordedSends(),
    delivery: { schedule, publish: broker.publish, breaker, ...(gone ? { gone } : {}) },
  };

  const running = await startConsumerService({
    deps,
    metrics,
    queue: queues.notifier,
    defaultPort: config.ports.notifier,
    describe: { channel: sender.channel, retrySchedule: schedule.scheduleMs, delayQueues: schedule.delays.length },
    handler: async (msg, ctx) => {
      try {
        const result = await handleOutcome(handlerDeps, msg, ctx);
        if (result === 'retry_scheduled') notifications.inc({ result: 'failed_attempt' });
        notifications.inc({ result });
      } catch (err) {
        // Another sender's lease: looked at again shortly, not counted as an attempt.
        if (err instanceof RetryLaterError) {
          notifications.inc({ result: 'lease_held' });
          throw err;
        }
        if (err instanceof DeliveryFailedError) {
          notifications.inc({ result: err.reason === 'webhook_refused' ? 'refused' : (err.reason as Result) });
          if (err.reason === 'endpoint_gone') goneGauge.set(1);
        }
        if (err instanceof SendFailedError) notifications.inc({ result: 'failed_attempt' });
        // The consume helper dead-letters a poison message at once and any other on its last
        // attempt, except an outage of Redis or the broker, which it holds and tries again.
        if (err instanceof PoisonMessageError || (ctx.lastAttempt && !isOutage(err))) notifications.inc({ result: 'dead_lettered' });
        throw err;
      }
    },
  });
  return {
    ...running,
    stop: async () => {
      await running.stop();
      await delays.close().catch(() => undefined);
    },
  };
}
