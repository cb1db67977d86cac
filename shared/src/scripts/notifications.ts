import { isoAt } from '../clock.js';
import { DEFAULT_ORDER_RETENTION_MS } from '../config.js';
import { keys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { arrayReply, codeReply, countReply, scripts } from './commands.js';
import { confirmed } from './replication.js';

// The notifier's send-once bookkeeping, one wrapper per script: notify-claim-3.lua,
// notify-sent-3.lua and notify-fail-3.lua. Each lays out its script's KEYS and ARGV and checks the
// reply (ScriptReplyError when it is unexpected).

/**
 * Which of the order's notifications: its first outcome (created or rejected, in
 * notifications:<id>) or its cancellation (notifications:<id>/cancelled). Each has its own
 * record, lease and attempts.
 */
export type NotificationKind = 'outcome' | 'cancelled';

function notificationKey(orderId: string, kind: NotificationKind): string {
  return kind === 'cancelled' ? keys.cancellationNotification(orderId) : keys.notification(orderId);
}

/** notify-claim-3.lua's answer. */
export type NotificationClaim =
  /** Send now; `attempts` counts this one. */
  | { outcome: 'claimed'; attempts: number }
  /** Sent before (a duplicate or redelivered copy): nothing to do. */
  | { outcome: 'already_sent'; attempts: number }
  /** Another sender holds a live lease for this many ms more. */
  | { outcome: 'leased'; leaseLeftMs: number };

/** Takes a lease of `leaseMs` on the order's notification for the attempt `token`. */
export async function claimNotification(
  redis: RedisClient,
  orderId: string,
  token: string,
  leaseMs: number,
  channel: string,
  kind: NotificationKind = 'outcome',
  retentionMs: number = DEFAULT_ORDER_RETENTION_MS,
): Promise<NotificationClaim> {
  const reply = arrayReply(
    'notifyClaim',
    await scripts(redis).notifyClaim(
      notificationKey(orderId, kind),
      keys.stats.notificationsFailed,
      keys.history(orderId),
      token,
      leaseMs,
      channel,
      retentionMs,
    ),
    2,
  );
  const code = codeReply('notifyClaim', reply[0], [0, 1, 2] as const, reply);
  const value = countReply('notifyClaim', reply[1], reply);
  switch (code) {
    case 0:
      return { outcome: 'claimed', attempts: value };
    case 1:
      return { outcome: 'already_sent', attempts: value };
    case 2:
      return { outcome: 'leased', leaseLeftMs: value };
  }
}

/** Records the notification as sent at `sentAt`, once: 'recorded_before' when it already was. */
export async function recordNotificationSent(
  redis: RedisClient,
  orderId: string,
  sentAt: string,
  kind: NotificationKind = 'outcome',
  retentionMs: number = DEFAULT_ORDER_RETENTION_MS,
): Promise<{ outcome: 'recorded' | 'recorded_before' }> {
  const reply = await confirmed(redis, 'notifySent', () =>
    scripts(redis).notifySent(
      notificationKey(orderId, kind),
      keys.stats.notificationsSent,
      keys.history(orderId),
      sentAt,
      kind,
      retentionMs,
    ),
  );
  return { outcome: codeReply('notifySent', reply, [0, 1] as const) === 1 ? 'recorded' : 'recorded_before' };
}

/**
 * Records a failed send of the attempt `token`. With `last` the notification becomes 'failed',
 * otherwise its lease is released for the retry. 'not_ours' when it was sent meanwhile or another
 * sender holds the lease (nothing changed).
 */
export async function recordNotificationFailed(
  redis: RedisClient,
  orderId: string,
  token: string,
  error: string,
  last: boolean,
  kind: NotificationKind = 'outcome',
  retentionMs: number = DEFAULT_ORDER_RETENTION_MS,
  now: Date = new Date(),
): Promise<{ outcome: 'recorded' | 'not_ours' }> {
  const reply = await confirmed(redis, 'notifyFail', () =>
    scripts(redis).notifyFail(
      notificationKey(orderId, kind),
      keys.stats.notificationsFailed,
      keys.history(orderId),
      token,
      error,
      last ? '1' : '0',
      kind,
      isoAt(now.getTime()),
      retentionMs,
    ),
  );
  return { outcome: codeReply('notifyFail', reply, [0, 1] as const) === 1 ? 'recorded' : 'not_ours' };
}
