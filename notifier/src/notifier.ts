import { createHash, randomUUID } from 'node:crypto';
import type { Message, Options } from 'amqplib';
import {
  PoisonMessageError,
  RetryLaterError,
  ScriptReplyError,
  TransientError,
  claimNotification,
  decodeEvent,
  exchanges,
  forOrder,
  keys,
  queues,
  recordNotificationFailed,
  recordNotificationSent,
  routingKeys,
  traceHeaders,
  WEBHOOK_ATTEMPT_HEADER,
  type ConsumeContext,
  type Publish,
  type NotificationKind,
  type Logger,
  type RedisClient,
} from '@order-pipeline/shared';
import type { CircuitBreaker } from './breaker.js';
import type { RetryPlan, RetrySchedule } from './schedule.js';
import { WebhookError, idempotencyKeyOf, notificationOf, type Sender } from './senders.js';

// "Send once, done right": a notification is claimed with a lease (not a permanent marker) before
// it is sent, and recorded as sent after. A sender that dies mid-send leaves a lease that runs out,
// and the redelivered message sends it then. A duplicate copy finds it sent and is just acked.

export interface NotifierDeps {
  redis: RedisClient;
  sender: Sender;
  log: Logger;
  /** How long a claim keeps other senders off; longer than the sender's own timeout. */
  leaseMs: number;
  /** How long an order's records are kept after its acceptance (ORDER_RETENTION_DAYS), in ms. */
  retentionMs?: number;
  /**
   * Notifications this process sent but could not record as sent (Redis was down), by their
   * Idempotency-Key (`<id>`, or `<id>/cancelled` for a cancellation), with the time they were
   * sent: the retry records them instead of sending again. Only a crash of the process between
   * sending and recording now leads to a second send.
   */
  unrecorded?: UnrecordedSends;
  /**
   * The webhook's delivery policy: retries on NOTIFY_RETRY_SCHEDULE held in the broker's delay
   * queues, the circuit breaker, the 410 flag. Without it a failed send is an ordinary transient
   * failure of the consume helper (retried with its backoff), as for the log channel in tests.
   */
  delivery?: DeliveryDeps;
}

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

/** Sent but not yet recorded, by Idempotency-Key; bounded, oldest dropped first. */
export class UnrecordedSends {
  private readonly sends = new Map<string, string>();
  constructor(private readonly max = 10_000) {}
  get(orderId: string): string | undefined {
    return this.sends.get(orderId);
  }
  add(orderId: string, sentAt: string): void {
    this.sends.delete(orderId);
    this.sends.set(orderId, sentAt);
    // A dropped entry only means a possible second send with the same Idempotency-Key.
    for (const oldest of this.sends.keys()) {
      if (this.sends.size <= this.max) break;
      this.sends.delete(oldest);
    }
  }
  delete(orderId: string): void {
    this.sends.delete(orderId);
  }
  get size(): number {
    return this.sends.size;
  }
}

/**
 * What handling one outcome message came to: sent, found sent before, a failed attempt whose
 * next one waits in a delay queue, or paused by the open circuit (no attempt used). A final
 * failure throws DeliveryFailedError; without delivery deps a failed send throws SendFailedError.
 */
export type HandleResult = 'sent' | 'already_sent' | 'retry_scheduled' | 'paused';

/** The send itself failed: retried with backoff by the consume helper, dead-lettered at the end. */
export class SendFailedError extends TransientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SendFailedError';
  }
}

// Look at a held lease again this often: the holder usually finishes (or fails) well before it
// ends, and a dead holder's lease ends by itself.
export const LEASE_RECHECK_MS = 500;

async function redisCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    // The script and this code disagree: said as such, not as "redis unavailable".
    if (err instanceof ScriptReplyError) throw err;
    throw new TransientError(`redis unavailable (${what}): ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Claims the notification. While another sender holds a live lease (e.g. one that died mid-send:
 * the broker redelivers at once, long before its lease ends) the message is handed back to the
 * consume helper to look again shortly, without counting an attempt, so waiting out a lease never
 * dead-letters the message and never holds a handler for the length of a lease.
 */
async function claim(
  deps: NotifierDeps,
  orderId: string,
  kind: NotificationKind,
  token: string,
  log: Logger,
): Promise<{ attempts: number } | 'already_sent'> {
  const claimed = await redisCall('notifyClaim', () =>
    claimNotification(deps.redis, orderId, token, deps.leaseMs, deps.sender.channel, kind, deps.retentionMs),
  );
  switch (claimed.outcome) {
    case 'claimed':
      return { attempts: claimed.attempts };
    case 'already_sent':
      return 'already_sent';
    case 'leased':
      log.debug({ leaseLeftMs: claimed.leaseLeftMs }, 'another sender holds the notification; looking again later');
      throw new RetryLaterError(
        `another sender holds the notification for ${claimed.leaseLeftMs} ms more`,
        Math.max(10, Math.min(claimed.leaseLeftMs, LEASE_RECHECK_MS)),
      );
  }
}

/**
 * Sends the notification of an order.created / order.rejected / order.cancelled message once, and
 * records it: the first outcome in notifications:<id>, the cancellation in its own record.
 */
export async function handleOutcome(deps: NotifierDeps, msg: Message, ctx: ConsumeContext): Promise<HandleResult> {
  const event = decodeEvent(msg.content, [routingKeys.created, routingKeys.rejected, routingKeys.cancelled]);
  const notification = notificationOf(event);
  const { orderId } = notification;
  const kind: NotificationKind = event.type === routingKeys.cancelled ? 'cancelled' : 'outcome';
  const unrecordedKey = idempotencyKeyOf(notification);
  const log = forOrder(deps.log, orderId, ctx.span);
  const token = randomUUID();

  const sentBefore = deps.unrecorded?.get(unrecordedKey);
  if (sentBefore !== undefined) {
    // Sent by this process on an earlier attempt whose record failed: record it, never resend.
    await redisCall('notifySent', () => recordNotificationSent(deps.redis, orderId, sentBefore, kind, deps.retentionMs));
    deps.unrecorded?.delete(unrecordedKey);
    log.info(
      { type: event.type, channel: deps.sender.channel, sentAt: sentBefore },
      'notification sent on an earlier attempt; recorded as sent now',
    );
    return 'sent';
  }

  const delivery = deps.delivery;
  const attempt = webhookAttemptOf(msg);

  if (delivery?.gone && (await delivery.gone.isGone())) {
    // The endpoint said 410 Gone earlier (this notifier or another): nothing more goes to it.
    const claimedGone = await claim(deps, orderId, kind, token, log);
    if (claimedGone === 'already_sent') return 'already_sent';
    const error = 'the webhook endpoint answered 410 Gone earlier; not sent (see docs/webhooks.md)';
    await redisCall('notifyFail', () => recordNotificationFailed(deps.redis, orderId, token, error, true, kind, deps.retentionMs));
    log.warn({ channel: deps.sender.channel }, 'webhook endpoint gone; notification failed without sending');
    throw new DeliveryFailedError(error, 'endpoint_gone');
  }

  const admission = delivery?.breaker?.admit() ?? 'send';
  if (admission === 'pause' && delivery) {
    // The circuit is open: wait out the cool-down in the broker; this uses no attempt.
    await waitInBroker(delivery, msg, ctx, attempt, delivery.schedule.pause());
    log.debug({ attempt }, 'webhook circuit open; delivery paused');
    return 'paused';
  }
  const probe = admission === 'probe';

  let claimed: Awaited<ReturnType<typeof claim>>;
  try {
    claimed = await claim(deps, orderId, kind, token, log);
  } catch (err) {
    delivery?.breaker?.abandon(probe);
    throw err;
  }
  if (claimed === 'already_sent') {
    delivery?.breaker?.abandon(probe);
    log.debug({ type: event.type }, 'notification already sent; nothing to do');
    return 'already_sent';
  }

  try {
    await deps.sender.send(notification, ctx.span);
  } catch (err) {
    const error = (err as Error).message;
    if (!delivery) {
      const last = ctx.lastAttempt;
      // With attempts left this releases the lease so the retry claims at once; the last one
      // marks the notification failed (the message then goes to the dead-letter queue).
      const recorded = await redisCall('notifyFail', () =>
        recordNotificationFailed(deps.redis, orderId, token, error, last, kind, deps.retentionMs),
      );
      log.warn(
        { channel: deps.sender.channel, attempts: claimed.attempts, last, recorded: recorded.outcome === 'recorded', err: error },
        'notification failed',
      );
      throw new SendFailedError(`sending the notification failed: ${error}`, { cause: err });
    }
    return failedAttempt(deps, delivery, { msg, ctx, attempt, probe, token, kind, orderId, log }, err);
  }
  delivery?.breaker?.success(probe);

  // If this write fails the retry records it (unrecorded) rather than sending again. If the process
  // dies first, the redelivered message sends it again once the lease ends: the receiver gets the
  // same Idempotency-Key and can drop the repeat.
  const sentAt = new Date().toISOString();
  try {
    await redisCall('notifySent', () => recordNotificationSent(deps.redis, orderId, sentAt, kind, deps.retentionMs));
  } catch (err) {
    deps.unrecorded?.add(unrecordedKey, sentAt);
    throw err;
  }
  // Debug, not info: a per-order line costs a synchronous write under load, and the log sender
  // already writes the notification itself at info.
  log.debug({ type: event.type, channel: deps.sender.channel, attempts: claimed.attempts }, 'notification recorded as sent');
  return 'sent';
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
async function failedAttempt(deps: NotifierDeps, delivery: DeliveryDeps, a: AttemptInHand, err: unknown): Promise<HandleResult> {
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
async function waitInBroker(delivery: DeliveryDeps, msg: Message, ctx: ConsumeContext, attempt: number, plan: RetryPlan): Promise<void> {
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
