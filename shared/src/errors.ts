// Typed errors that carry the failure policy: the consume helper acks, retries later or
// dead-letters according to which of these a handler throws.

/** The message can never succeed (not JSON, fails its schema, unknown version): dead-letter at once. */
export class PoisonMessageError extends Error {
  constructor(
    message: string,
    readonly reason:
      | 'unparseable'
      | 'invalid'
      | 'unknown_version'
      | 'unknown_type'
      | 'expired'
      | 'payload_mismatch'
      // The notifier's final webhook failures (docs/webhooks.md): a 4xx answer that retrying
      // cannot change, an endpoint that answered 410 Gone, the retry schedule used up.
      | 'webhook_refused'
      | 'endpoint_gone'
      | 'attempts_exhausted' = 'invalid',
  ) {
    super(message);
    this.name = 'PoisonMessageError';
  }
}

/** The order waited in its queue longer than ORDER_TTL_MS and is marked expired: dead-letter at once. */
export class OrderExpiredError extends PoisonMessageError {
  constructor(message: string) {
    super(message, 'expired');
    this.name = 'OrderExpiredError';
  }
}

/** The order's payload differs from the one recorded under its id (another request's copy): dead-letter at once. */
export class PayloadMismatchError extends PoisonMessageError {
  constructor(message: string) {
    super(message, 'payload_mismatch');
    this.name = 'PayloadMismatchError';
  }
}

/**
 * Not a failure: the message cannot be handled yet (e.g. another sender holds its lease). The
 * consume helper hands it back after `delayMs` without counting an attempt.
 */
export class RetryLaterError extends Error {
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
    this.name = 'RetryLaterError';
  }
}

/** A dependency is down or answered badly: retry later with backoff, dead-letter after a bound. */
export class TransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

/** The broker is not connected, or did not confirm within the timeout, or returned the message. */
export class PublishError extends Error {
  constructor(
    message: string,
    readonly reason: 'disconnected' | 'timeout' | 'nacked' | 'unroutable' | 'closed',
  ) {
    super(message);
    this.name = 'PublishError';
  }
}

// What ioredis rejects a command with when the server cannot be reached or is failing over,
// and the replies of a server that cannot take the write now (a demoted or loading primary, a
// primary missing its min-replicas-to-write). None of these says anything about the message.
const REDIS_OUTAGE_NAMES = new Set(['MaxRetriesPerRequestError', 'NotEnoughReplicasError']);
const REDIS_OUTAGE_MESSAGES = [
  /^Connection is closed\.?$/,
  /^Stream isn't writeable/,
  /^Command timed out$/,
  /sentinels are unreachable/i,
  /^(READONLY|LOADING|MASTERDOWN|NOREPLICAS|TRYAGAIN|BUSY) /,
];

/**
 * True when `err` (or an error in its `cause` chain) says Redis or the broker is unreachable or
 * unable to take writes right now, rather than that the message is at fault: the delivery waits
 * and is tried again without counting an attempt. A broker that refused or could not route a
 * publish is not an outage (the topology or the queue's limits are at fault).
 */
export function isOutage(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof PublishError) return e.reason === 'disconnected' || e.reason === 'timeout' || e.reason === 'closed';
    if (REDIS_OUTAGE_NAMES.has(e.name)) return true;
    if (REDIS_OUTAGE_MESSAGES.some((re) => re.test(e.message))) return true;
  }
  return false;
}
