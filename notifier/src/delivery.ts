import { createHash } from 'node:crypto';
import type { Message, Options } from 'amqplib';
import {
  PoisonMessageError,
  TransientError,
  WEBHOOK_ATTEMPT_HEADER,
  exchanges,
  keys,
  queues,
  recordNotificationFailed,
  traceHeaders,
  type ConsumeContext,
  type Logger,
  type NotificationKind,
  type Publish,
  type RedisClient,
} from '@order-pipeline/shared';
import type { CircuitBreaker } from './breaker.js';
import type { HandleResult, NotifierDeps } from './notifier.js';
import { redisCall } from './redis-call.js';
import type { RetryPlan, RetrySchedule } from './schedule.js';
import { WebhookError } from './senders.js';

// The webhook's delivery policy once an attempt failed: what its answer means (classify.ts), where
// the next attempt waits (schedule.ts, in the broker), the 410 flag, the final failures.

export interface DeliveryDeps {
  schedule: RetrySchedule;
  /** Publishes the copy that waits for the next attempt (confirmed). */
  publish: Publish;
  breaker?: CircuitBreaker;
  /** The endpoint's 410 flag in Redis (shared by every notifier). */
  gone?: GoneEndpoint;
}

/** The attempt of the webhook delivery this message is. */
export function webhookAttemptOf(msg: Pick<Message, 'properties'>): number {
  const n = Number(msg.properties.headers?.[WEBHOOK_ATTEMPT_HEADER] ?? 1);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * The endpoint's "gone" flag (keys.webhookGone): set on a 410 answer, read before every delivery
 * by every notifier, kept until an operator deletes it. Keyed by a hash of the URL, so pointing
 * NOTIFY_WEBHOOK_URL at a new endpoint starts sending again.
 */
export class GoneEndpoint {
  readonly key: string;
  constructor(
    private readonly redis: RedisClient,
    readonly url: string,
  ) {
    this.key = keys.webhookGone(endpointHash(url));
  }
  async isGone(): Promise<boolean> {
    return (await redisCall('webhookGone', () => this.redis.exists(this.key))) === 1;
  }
  async mark(status: number, at = new Date()): Promise<void> {
    const { origin, pathname } = new URL(this.url);
    const value = JSON.stringify({ at: at.toISOString(), status, url: `${origin}${pathname}` });
    await redisCall('webhookGone', () => this.redis.set(this.key, value));
  }
}

/** The first 16 hex digits of the SHA-256 of the endpoint URL. */
export function endpointHash(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 16);
}

/** A delivery that ends here: the notification is recorded `failed` and the message dead-lettered with the reason. */
export class DeliveryFailedError extends PoisonMessageError {
  constructor(message: string, reason: 'webhook_refused' | 'endpoint_gone' | 'attempts_exhausted') {
    super(message, reason);
    this.name = 'DeliveryFailedError';
  }
}

interface AttemptInHand {
  msg: Message;
  ctx: ConsumeContext;
  attempt: number;
  probe: boolean;
  token: string;
  kind: NotificationKind;
  orderId: string;
  log: Logger;
}

/**
 * A failed webhook attempt: a retryable one waits for the next attempt in a delay queue (the
 * notification stays `sending` with its lease released), a final one, the 410 or the last attempt
 * marks the notification `failed` and dead-letters the message with the reason.
 */
export async function failedAttempt(deps: NotifierDeps, delivery: DeliveryDeps, a: AttemptInHand, err: unknown): Promise<HandleResult> {
  const { schedule, breaker } = delivery;
  const verdict = err instanceof WebhookError ? err.verdict : { kind: 'retry' as const };
  const error = (err as Error).message;
  // A final 4xx or a 410 is an answer: the endpoint is up, whatever it thinks of this request.
  if (verdict.kind === 'retry') breaker?.failure(a.probe);
  else breaker?.success(a.probe);
  const exhausted = verdict.kind === 'retry' && schedule.isLast(a.attempt);
  const final = verdict.kind !== 'retry' || exhausted;
  // What the record keeps as lastError: the reason it failed for good, then the answer.
  const reason =
    verdict.kind === 'gone'
      ? `endpoint gone (410), nothing more is sent to it: ${error}`
      : verdict.kind === 'final'
        ? `refused, not retried: ${error}`
        : exhausted
          ? `all ${schedule.attempts} attempts failed; the last: ${error}`
          : error;
  const recorded = await redisCall('notifyFail', () =>
    recordNotificationFailed(deps.redis, a.orderId, a.token, reason, final, a.kind, deps.retentionMs),
  );
  const fields = {
    channel: deps.sender.channel,
    attempt: a.attempt,
    of: schedule.attempts,
    recorded: recorded.outcome === 'recorded',
    err: error,
  };
  if (verdict.kind === 'gone') {
    await delivery.gone?.mark(err instanceof WebhookError ? (err.status ?? 410) : 410);
    a.log.error(fields, 'webhook endpoint answered 410 Gone; nothing more is sent to it');
    throw new DeliveryFailedError(`the webhook endpoint is gone: ${error}`, 'endpoint_gone');
  }
  if (verdict.kind === 'final') {
    a.log.warn(fields, 'webhook refused the notification; not retried');
    throw new DeliveryFailedError(`the webhook refused the notification: ${error}`, 'webhook_refused');
  }
  if (exhausted) {
    a.log.warn(fields, 'webhook attempts exhausted');
    throw new DeliveryFailedError(`all ${schedule.attempts} webhook attempts failed; the last: ${error}`, 'attempts_exhausted');
  }
  const plan = schedule.afterFailure(a.attempt, verdict.retryAfterMs);
  await waitInBroker(delivery, a.msg, a.ctx, a.attempt + 1, plan);
  a.log.warn({ ...fields, retryInMs: plan.expirationMs, retryAfterMs: verdict.retryAfterMs }, 'notification failed; retrying later');
  return 'retry_scheduled';
}

/** Headers the broker or the consume helper set on a copy, not carried into a new one. */
const TRANSIENT_HEADERS = [
  'x-delivery-count',
  'x-retry-count',
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
];

/**
 * Publishes the copy of this message that is delivery attempt `attempt`, to wait in the delay
 * queue of `plan` (or straight back to notifier.queue for no delay); the original is acked once
 * the broker confirmed the copy. A publish that fails is a transient failure: the original is
 * handed back to the consume helper.
 */
export async function waitInBroker(
  delivery: DeliveryDeps,
  msg: Message,
  ctx: ConsumeContext,
  attempt: number,
  plan: RetryPlan,
): Promise<void> {
  const headers: Record<string, unknown> = { ...msg.properties.headers };
  for (const h of TRANSIENT_HEADERS) delete headers[h];
  headers[WEBHOOK_ATTEMPT_HEADER] = attempt;
  const { expiration: _expiration, ...properties } = msg.properties;
  const options: Options.Publish = {
    ...(properties as Options.Publish),
    headers: traceHeaders(ctx.span, headers),
    ...(plan.queue ? { expiration: String(plan.expirationMs) } : {}),
  };
  try {
    if (plan.queue) await delivery.publish('', plan.queue, msg.content, options);
    else await delivery.publish(exchanges.notifierRetry, queues.notifier, msg.content, options);
  } catch (err) {
    throw new TransientError(`could not schedule the next webhook attempt: ${(err as Error).message}`, { cause: err });
  }
}
