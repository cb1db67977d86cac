// The webhook delivery's pure parts as tables: the signature against the Standard Webhooks
// reference vector, the classification of answers, Retry-After, the retry plan, the breaker.
import { describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { CircuitBreaker, type BreakerState } from '../src/breaker.js';
import { classify, parseRetryAfter } from '../src/classify.js';
import { RetrySchedule } from '../src/schedule.js';
import { webhookIdOf } from '../src/senders.js';
import { createSigner } from '../src/signing.js';

describe('the signature', () => {
  it("reproduces the Standard Webhooks reference implementations' test vector", () => {
    // The vector of the spec repository's libraries (secret, id, timestamp, body -> signature).
    const signer = createSigner(['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']);
    expect(signer.sign('msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')).toBe(
      'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    );
  });

  it('carries one v1 signature per secret, each verified by the standardwebhooks package alone', () => {
    const a = `whsec_${Buffer.alloc(32, 1).toString('base64')}`;
    const b = `whsec_${Buffer.alloc(24, 2).toString('base64')}`;
    const c = `whsec_${Buffer.alloc(24, 3).toString('base64')}`;
    const now = Math.floor(Date.now() / 1000);
    const body = '{"type":"order.created","timestamp":"2026-12-02T00:00:00.000Z","data":{"orderId":"a.b:c"}}';
    const id = webhookIdOf('a.b:c', 'order.created');
    const signature = createSigner([a, b]).sign(id, now, body) as string;
    expect(signature.split(' ')).toHaveLength(2);
    const headers = { 'webhook-id': id, 'webhook-timestamp': String(now), 'webhook-signature': signature };
    for (const secret of [a, b]) expect(new Webhook(secret).verify(body, headers)).toMatchObject({ type: 'order.created' });
    expect(() => new Webhook(c).verify(body, headers)).toThrow(/signature/i);
    expect(() => new Webhook(a).verify(body.replace('a.b:c', 'a.b:d'), headers)).toThrow(/signature/i);
    expect(createSigner([]).sign(id, now, body)).toBeUndefined();
  });
});

describe('webhook-id', () => {
  it('is one per event, holds no "." whatever the order id holds, and never names another order', () => {
    const ids = ['order123', 'a.b', 'a:b', 'a_b-c', 'x'.repeat(64), '.', 'outcome_x'];
    const all = ids.flatMap((id) => [webhookIdOf(id, 'order.created'), webhookIdOf(id, 'order.cancelled')]);
    for (const w of all) expect(w).toMatch(/^(outcome|cancelled)_[A-Za-z0-9_-]+$/);
    expect(new Set(all).size).toBe(all.length);
    // created and rejected are the one first outcome of an order: one id.
    expect(webhookIdOf('a.b', 'order.rejected')).toBe(webhookIdOf('a.b', 'order.created'));
    expect(webhookIdOf('order123', 'order.created')).toBe('outcome_b3JkZXIxMjM');
  });
});

describe('classify', () => {
  const now = Date.parse('2026-12-02T00:00:00Z');
  const rows: [number | undefined, string | null, ReturnType<typeof classify>][] = [
    [200, null, { kind: 'delivered' }],
    [204, null, { kind: 'delivered' }],
    [299, null, { kind: 'delivered' }],
    [301, null, { kind: 'final' }],
    [307, null, { kind: 'final' }],
    [400, null, { kind: 'final' }],
    [401, null, { kind: 'final' }],
    [404, null, { kind: 'final' }],
    [422, null, { kind: 'final' }],
    [410, '5', { kind: 'gone' }],
    [408, null, { kind: 'retry' }],
    [429, '7', { kind: 'retry', retryAfterMs: 7000 }],
    [500, null, { kind: 'retry' }],
    [502, 'soon', { kind: 'retry' }],
    [503, 'Wed, 02 Dec 2026 00:00:30 GMT', { kind: 'retry', retryAfterMs: 30_000 }],
    [504, null, { kind: 'retry' }],
    [undefined, null, { kind: 'retry' }],
  ];
  it.each(rows)('%s (Retry-After %s) -> %j', (status, retryAfter, verdict) => {
    expect(classify(status, retryAfter, now)).toEqual(verdict);
  });

  it('reads Retry-After as seconds or an HTTP date, a past date as 0, nonsense as absent', () => {
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
    expect(parseRetryAfter('Tue, 01 Dec 2026 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('-1', now)).toBeUndefined();
    expect(parseRetryAfter('1.5', now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe('the retry plan', () => {
  const max = () => 0.999_999;
  const none = () => 0;

  it('waits the scheduled delay before each attempt, with up to 10% jitter upwards, then stops', () => {
    const s = new RetrySchedule([0, 5000, 300_000, 1_800_000], 30_000, none);
    expect(s.delays).toEqual([5000, 30_000, 300_000, 1_800_000]);
    expect(s.afterFailure(1)).toEqual({ queue: 'notifier.retry.5s', expirationMs: 5000 });
    expect(s.afterFailure(2)).toEqual({ queue: 'notifier.retry.5m', expirationMs: 300_000 });
    expect(s.afterFailure(3)).toEqual({ queue: 'notifier.retry.30m', expirationMs: 1_800_000 });
    expect([s.isLast(3), s.isLast(4)]).toEqual([false, true]);
    expect(new RetrySchedule([0, 5000], 30_000, max).afterFailure(1)).toEqual({ queue: 'notifier.retry.5s', expirationMs: 5499 });
  });

  it('honours Retry-After by waiting at least that long, capped at the longest delay', () => {
    const s = new RetrySchedule([0, 200, 500, 1000], 700, none);
    expect(s.afterFailure(1, 300).queue).toBe('notifier.retry.500ms');
    expect(s.afterFailure(1, 600).queue).toBe('notifier.retry.700ms');
    expect(s.afterFailure(1, 3_600_000)).toEqual({ queue: 'notifier.retry.1s', expirationMs: 1000 });
    expect(s.afterFailure(3, 100).queue).toBe('notifier.retry.1s');
  });

  it('goes straight back for a zero delay, and pauses for the cool-down', () => {
    const s = new RetrySchedule([0, 0, 1000], 250, none);
    expect(s.afterFailure(1)).toEqual({ queue: undefined, expirationMs: 0 });
    expect(s.pause()).toEqual({ queue: 'notifier.retry.250ms', expirationMs: 250 });
  });
});

describe('the circuit breaker', () => {
  function breaker(threshold = 3, cooldownMs = 1000) {
    let t = 0;
    const changes: BreakerState[] = [];
    const b = new CircuitBreaker({ threshold, cooldownMs, now: () => t, onChange: (s) => changes.push(s) });
    return { b, changes, advance: (ms: number) => (t += ms) };
  }

  it('opens after consecutive failures, pauses, lets one probe through, and closes on its success', () => {
    const { b, changes, advance } = breaker();
    b.failure(false);
    b.failure(false);
    b.success(false);
    b.failure(false);
    b.failure(false);
    expect(b.admit()).toBe('send');
    b.failure(false);
    expect([b.current, b.admit()]).toEqual(['open', 'pause']);
    advance(999);
    expect(b.admit()).toBe('pause');
    advance(1);
    expect(b.admit()).toBe('probe');
    expect(b.admit()).toBe('pause');
    b.success(true);
    expect([b.current, b.admit()]).toEqual(['closed', 'send']);
    expect(changes).toEqual(['open', 'half_open', 'closed']);
  });

  it('opens again when the probe fails, and frees the probe when it was abandoned', () => {
    const { b, changes, advance } = breaker(1, 500);
    b.failure(false);
    advance(500);
    expect(b.admit()).toBe('probe');
    b.failure(true);
    expect(b.current).toBe('open');
    advance(500);
    expect(b.admit()).toBe('probe');
    b.abandon(true);
    expect(b.admit()).toBe('probe');
    // A late failure of a send started before the circuit opened changes nothing.
    b.failure(false);
    expect(b.current).toBe('half_open');
    expect(changes).toEqual(['open', 'half_open', 'open', 'half_open']);
  });
});
