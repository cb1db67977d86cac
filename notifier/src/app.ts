import {
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
import { SendFailedError, UnrecordedSends, handleOutcome, type HandleResult } from './notifier.js';
import { logSender, webhookSender, type Sender } from './senders.js';

export interface NotifierAppDeps extends ConsumerDeps {
  /** Where notifications go; defaults to the webhook when NOTIFY_WEBHOOK_URL is set, else the log. */
  sender?: Sender;
  /** Lease of a claimed notification; must exceed the sender's timeout. */
  leaseMs?: number;
}

/** `stop` stops consuming (waits for the messages in hand), then closes the ops server. */
export type RunningNotifier = RunningService;

export const DEFAULT_LEASE_MS = 30_000;
const WEBHOOK_TIMEOUT_MS = 5000;

type Result = HandleResult | 'failed_attempt' | 'dead_lettered' | 'lease_held';
const RESULTS: readonly Result[] = ['sent', 'already_sent', 'failed_attempt', 'dead_lettered', 'lease_held'];

export function defaultSender(config: Config, log: Logger): Sender {
  return config.notifyWebhookUrl ? webhookSender(config.notifyWebhookUrl, { timeoutMs: WEBHOOK_TIMEOUT_MS }) : logSender(log);
}

export async function start(deps: NotifierAppDeps): Promise<RunningNotifier> {
  const { config, redis, log } = deps;
  const metrics = deps.metrics ?? createMetrics(config.service);
  const notifications = metrics.counter('notifier_notifications_total', 'Notification messages handled, by result', ['result'] as const);
  for (const result of RESULTS) notifications.inc({ result }, 0);
  const sendSeconds = metrics.histogram(
    'notifier_send_seconds',
    'Time the sender took per attempt',
    ['channel'] as const,
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );

  const base = deps.sender ?? defaultSender(config, log);
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
  const handlerDeps = {
    redis,
    sender,
    log,
    leaseMs: deps.leaseMs ?? DEFAULT_LEASE_MS,
    retentionMs: orderRetentionMs(config),
    unrecorded: new UnrecordedSends(),
  };

  return startConsumerService({
    deps,
    metrics,
    queue: queues.notifier,
    defaultPort: config.ports.notifier,
    describe: { channel: sender.channel },
    handler: async (msg, ctx) => {
      try {
        notifications.inc({ result: await handleOutcome(handlerDeps, msg, ctx) });
      } catch (err) {
        // Another sender's lease: looked at again shortly, not counted as an attempt.
        if (err instanceof RetryLaterError) {
          notifications.inc({ result: 'lease_held' });
          throw err;
        }
        if (err instanceof SendFailedError) notifications.inc({ result: 'failed_attempt' });
        // The consume helper dead-letters a poison message at once and any other on its last
        // attempt, except an outage of Redis or the broker, which it holds and tries again.
        if (err instanceof PoisonMessageError || (ctx.lastAttempt && !isOutage(err))) notifications.inc({ result: 'dead_lettered' });
        throw err;
      }
    },
  });
}
