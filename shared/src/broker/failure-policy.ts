import type { ConsumeMessage } from 'amqplib';
import { PoisonMessageError, RetryLaterError, isOutage } from '../errors.js';

// What becomes of a delivery, decided from what its handler threw and how often it was tried.
// A pure function so the whole policy reads, and is tested, as one table; the consumer only
// carries the decision out.

/** Header counting the failed attempts of a message that was republished for a retry. */
export const RETRY_COUNT_HEADER = 'x-retry-count';

/** Why a message is dead-lettered: a poison reason, or its attempts ran out. */
export type DeadLetterReason = PoisonMessageError['reason'] | 'attempts_exhausted';

export type Decision =
  | { kind: 'ack' }
  /** A copy back to the queue after `delayMs`; `counts` says whether this attempt counts as failed. */
  | { kind: 'retry'; delayMs: number; counts: boolean }
  /**
   * Redis or the broker is unreachable: keep the delivery in hand and run the handler again after
   * `delayMs`, not counted. Held deliveries fill the prefetch window, so the consumer takes no
   * new ones while the outage lasts instead of cycling them through the queue.
   */
  | { kind: 'hold'; delayMs: number }
  | { kind: 'dead-letter'; reason: DeadLetterReason };

export interface RetryLimits {
  /** Attempts before a transiently failing message is dead-lettered. */
  maxAttempts: number;
  /** Delay before the retry after failed attempt n (1-based). */
  backoffMs: (attempt: number) => number;
}

export const defaultBackoffMs = (attempt: number) => Math.min(200 * 2 ** (attempt - 1), 10_000);

/** Pause before running a held delivery's handler again after its n-th (1-based) outage failure in a row. */
export const outageBackoffMs = (holds: number) => Math.min(250 * 2 ** (holds - 1), 5000);

/**
 * The decision for a delivery on its `attempt` (1-based) whose handler threw `error`, or
 * succeeded when `error` is undefined:
 * - success: ack;
 * - PoisonMessageError (can never succeed): dead-letter with its reason, at once;
 * - RetryLaterError (not yet, e.g. another holder's lease): retry after its delay, not counted;
 * - an outage of Redis or the broker (isOutage): hold, and run it again after outageBackoffMs of
 *   the holds so far (`holds`, 0 on a delivery's first failure), never counted: an outage of any
 *   length dead-letters nothing;
 * - anything else (transient): retry with backoff while attempts remain, else dead-letter
 *   'attempts_exhausted'.
 */
export function decide(error: unknown, attempt: number, limits: RetryLimits, holds = 0): Decision {
  if (error === undefined) return { kind: 'ack' };
  if (error instanceof PoisonMessageError) return { kind: 'dead-letter', reason: error.reason };
  if (error instanceof RetryLaterError) return { kind: 'retry', delayMs: error.delayMs, counts: false };
  if (isOutage(error)) return { kind: 'hold', delayMs: outageBackoffMs(holds + 1) };
  if (isLastAttempt(attempt, limits)) return { kind: 'dead-letter', reason: 'attempts_exhausted' };
  return { kind: 'retry', delayMs: limits.backoffMs(attempt), counts: true };
}

/** True when a transient failure of this attempt dead-letters the message. */
export function isLastAttempt(attempt: number, limits: Pick<RetryLimits, 'maxAttempts'>): boolean {
  return attempt >= limits.maxAttempts;
}

/** The attempt a delivery is: 1 for the first, then counting retries and redeliveries. */
export function attemptOf(msg: ConsumeMessage): number {
  const h = msg.properties.headers ?? {};
  const retries = Number(h[RETRY_COUNT_HEADER] ?? 0) || 0;
  // Quorum queues count redeliveries of this copy (e.g. after a consumer died holding it); a
  // retry copy starts again at 0 and carries the attempts before it in RETRY_COUNT_HEADER.
  const redeliveries = Number(h['x-delivery-count'] ?? 0) || 0;
  return retries + redeliveries + 1;
}
