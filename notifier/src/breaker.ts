// A circuit breaker for the webhook endpoint, per notifier process. After `threshold` failed
// deliveries in a row (answers to retry, or none) it opens: deliveries are paused (they wait a
// cool-down in the broker without using an attempt) instead of being sent. After the cool-down it
// is half-open: one delivery at a time goes through as a probe; its success closes the circuit,
// its failure opens it again for another cool-down.
//
// Per process, not shared in Redis: the state is only an optimisation (each replica learns of an
// outage after `threshold` failures of its own, a few more requests to a dead endpoint), and it
// keeps Redis out of the decision of every delivery. Nothing is lost with it: a restart starts closed.

export type BreakerState = 'closed' | 'open' | 'half_open';
export const BREAKER_STATES: readonly BreakerState[] = ['closed', 'open', 'half_open'];

export interface BreakerOptions {
  threshold: number;
  cooldownMs: number;
  now?: () => number;
  /** Told of every change of state. */
  onChange?: (to: BreakerState) => void;
}

/** What the breaker lets a delivery do now. */
export type Admission = 'send' | 'probe' | 'pause';

export class CircuitBreaker {
  private state: BreakerState = 'closed';
  /** Consecutive failures while closed. */
  private failures = 0;
  private openedAt = 0;
  /** A probe is in flight (half-open lets one through at a time). */
  private probing = false;
  private readonly now: () => number;

  constructor(private readonly opts: BreakerOptions) {
    this.now = opts.now ?? Date.now;
  }

  get current(): BreakerState {
    if (this.state === 'open' && this.now() - this.openedAt >= this.opts.cooldownMs) this.move('half_open');
    return this.state;
  }

  /** Whether a delivery may be sent now; a 'probe' must be followed by success() or failure(). */
  admit(): Admission {
    switch (this.current) {
      case 'closed':
        return 'send';
      case 'open':
        return 'pause';
      case 'half_open':
        if (this.probing) return 'pause';
        this.probing = true;
        return 'probe';
    }
  }

  /** The endpoint answered 2xx (or another answer that shows it is up: a final 4xx). */
  success(probe: boolean): void {
    if (probe) this.probing = false;
    this.failures = 0;
    if (this.state !== 'closed') this.move('closed');
  }

  /** The delivery failed in a way worth retrying (5xx, 408, 429, no answer). */
  failure(probe: boolean): void {
    if (probe) this.probing = false;
    if (this.state === 'half_open' && probe) return this.open();
    if (this.state !== 'closed') return;
    this.failures++;
    if (this.failures >= this.opts.threshold) this.open();
  }

  /** A probe that ended without an answer either way (e.g. Redis failed before the send). */
  abandon(probe: boolean): void {
    if (probe) this.probing = false;
  }

  private open(): void {
    this.failures = 0;
    this.openedAt = this.now();
    this.move('open');
  }

  private move(to: BreakerState): void {
    if (this.state === to) return;
    this.state = to;
    this.opts.onChange?.(to);
  }
}
