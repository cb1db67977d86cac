import { randomUUID } from 'node:crypto';
import type { Message } from 'amqplib';
import {
  RetryLaterError,
  TransientError,
  claimNotification,
  decodeEvent,
  forOrder,
  isoNow,
  recordNotificationFailed,
  recordNotificationSent,
  routingKeys,
  type ConsumeContext,
  type NotificationKind,
  type Logger,
  type RedisClient,
} from '@order-pipeline/shared';
import { DeliveryFailedError, failedAttempt, waitInBroker, webhookAttemptOf, type DeliveryDeps } from './delivery.js';
import { redisCall } from './redis-call.js';
import { idempotencyKeyOf, notificationOf, type Sender } from './senders.js';

export { DeliveryFailedError, GoneEndpoint, endpointHash, type DeliveryDeps } from './delivery.js';

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
  const sentAt = isoNow();
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
