// What an attempt's answer means for the delivery, as a pure function (tested as a table):
//   2xx                          delivered
//   410 Gone                     the endpoint is gone: stop sending to it
//   3xx (redirects not followed) final failure: the URL needs updating
//   other 4xx except 408 and 429 final failure: the same request would be refused again
//   408, 429, 5xx                retry, honouring Retry-After
//   no answer (connection, timeout) retry
// Final failures and a gone endpoint mark the notification `failed` at once and dead-letter it.

export type Verdict =
  | { kind: 'delivered' }
  | { kind: 'gone' }
  | { kind: 'final' }
  /** `retryAfterMs`: what the answer's Retry-After asked for, when it had a valid one. */
  | { kind: 'retry'; retryAfterMs?: number };

export function classify(status: number | undefined, retryAfter?: string | null, now = Date.now()): Verdict {
  if (status === undefined) return { kind: 'retry' };
  if (status >= 200 && status < 300) return { kind: 'delivered' };
  if (status === 410) return { kind: 'gone' };
  if (status === 408 || status === 429 || status >= 500) {
    const ms = parseRetryAfter(retryAfter, now);
    return ms === undefined ? { kind: 'retry' } : { kind: 'retry', retryAfterMs: ms };
  }
  return { kind: 'final' };
}

/**
 * Retry-After (RFC 9110): delay-seconds or an HTTP date, in ms from `now` (a date in the past is 0);
 * undefined when absent or malformed. The caller caps it.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Math.min(Number(v), 10 ** 9) * 1000;
  // An IMF-fixdate (or the obsolete forms Date.parse also reads); a bare number was handled above.
  if (!/[A-Za-z]/.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
