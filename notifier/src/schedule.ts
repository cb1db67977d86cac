import { DELAY_JITTER, delayQueueOf } from '@order-pipeline/shared';

// When the next attempt of a webhook delivery happens, from NOTIFY_RETRY_SCHEDULE: the delay
// before each attempt, the first 0. The wait itself is held by the broker (a delay queue per
// distinct delay, see topology.ts), so nothing waits in this process's memory.

export interface RetryPlan {
  /** The delay queue to wait in, or undefined to go straight back to notifier.queue. */
  queue: string | undefined;
  /** The message's own expiration in that queue (the delay plus its jitter), in ms. */
  expirationMs: number;
}

export class RetrySchedule {
  /** Every distinct non-zero delay a message may wait, ascending: the delay queues to declare. */
  readonly delays: readonly number[];

  /**
   * @param scheduleMs the delay before each attempt (NOTIFY_RETRY_SCHEDULE), the first 0.
   * @param pauseMs the circuit breaker's cool-down, waited in a delay queue of its own length.
   */
  constructor(
    readonly scheduleMs: readonly number[],
    readonly pauseMs: number,
    private readonly random: () => number = Math.random,
  ) {
    this.delays = [...new Set([...scheduleMs, pauseMs].filter((d) => d > 0))].sort((a, b) => a - b);
  }

  /** The number of attempts the schedule allows. */
  get attempts(): number {
    return this.scheduleMs.length;
  }

  /** True when attempt `n` (1-based) failing ends the delivery. */
  isLast(attempt: number): boolean {
    return attempt >= this.scheduleMs.length;
  }

  /**
   * Where attempt `attempt + 1` waits after attempt `attempt` failed. Retry-After is honoured by
   * waiting at least that long: in the shortest delay queue at least as long as both the
   * scheduled delay and Retry-After, capped at the longest delay the schedule has.
   */
  afterFailure(attempt: number, retryAfterMs = 0): RetryPlan {
    const scheduled = this.scheduleMs[Math.min(attempt, this.scheduleMs.length - 1)] ?? 0;
    const longest = Math.max(...this.scheduleMs);
    return this.plan(Math.max(scheduled, Math.min(retryAfterMs, longest)));
  }

  /** Where a delivery paused by an open circuit waits: the cool-down, not counted as an attempt. */
  pause(): RetryPlan {
    return this.plan(this.pauseMs);
  }

  private plan(wantMs: number): RetryPlan {
    if (wantMs <= 0) return { queue: undefined, expirationMs: 0 };
    const delay = this.delays.find((d) => d >= wantMs) ?? (this.delays[this.delays.length - 1] as number);
    // Jitter upwards only, so a Retry-After is never undercut; never past the queue's own TTL.
    const jitter = Math.floor(this.random() * delay * DELAY_JITTER);
    return { queue: delayQueueOf(delay), expirationMs: delay + jitter };
  }
}
