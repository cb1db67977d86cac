// Admission control's arithmetic: the drain rate measured from samples, and the verdict it gives.
import { describe, expect, it } from 'vitest';
import { TTL_SHARE, drainRate, verdict, type Sample } from '../src/admission.js';

const s = (at: number, backlog: number, decided: number): Sample => ({ at, backlog, decided });
const limits = { orderTtlMs: 20_000, maxBacklog: 10_000 };

describe('drainRate', () => {
  it('is undefined with no busy interval: an idle queue only shows the arrival rate', () => {
    expect(drainRate([])).toBeUndefined();
    expect(drainRate([s(0, 0, 0), s(1000, 0, 50), s(2000, 0, 120)])).toBeUndefined();
    expect(drainRate([s(0, 0, 0), s(1000, 30, 50)])).toBeUndefined();
  });

  it('counts only the intervals with a backlog at both ends', () => {
    // busy 0-1000 (200 decided), idle 1000-2000 (ignored), busy 2000-3000 (400 decided)
    const rate = drainRate([s(0, 500, 0), s(1000, 300, 200), s(2000, 0, 250), s(3000, 10, 300), s(4000, 20, 700)]);
    expect(rate).toBeCloseTo(300, 6);
  });

  it('is undefined while nothing is decided: the processors are away, not slow', () => {
    expect(drainRate([s(0, 100, 40), s(1000, 200, 40), s(2000, 300, 40)])).toBeUndefined();
    // A counter reset (Redis flushed) is no progress either, not a negative rate.
    expect(drainRate([s(0, 100, 5000), s(1000, 100, 0)])).toBeUndefined();
  });
});

describe('verdict', () => {
  it('admits while the backlog drains within its share of the time to live', () => {
    // 300/s over 10 s (half of 20 s) is 3000 orders.
    expect(TTL_SHARE).toBe(0.5);
    expect(verdict(s(0, 3000, 0), 300, limits)).toEqual({ admit: true });
    expect(verdict(s(0, 0, 0), 0, limits)).toEqual({ admit: true });
  });

  it('admits a backlog before any rate is measured (the processors have kept up so far)', () => {
    expect(verdict(s(0, 5000, 0), undefined, limits)).toEqual({ admit: true });
  });

  it('refuses a backlog that would take longer, with the seconds the excess takes to drain', () => {
    const v = verdict(s(0, 4500, 0), 300, limits);
    expect(v).toMatchObject({ admit: false, reason: 'drain_time', backlog: 4500, retryAfterSeconds: 5 });
  });

  it('refuses any backlog while the processors decide nothing', () => {
    expect(verdict(s(0, 10, 0), 0, limits)).toMatchObject({ admit: false, reason: 'drain_time', retryAfterSeconds: 5 });
  });

  it('refuses at MAX_BACKLOG whatever the rate, and keeps Retry-After within 1 to 30 s', () => {
    const fast = verdict(s(0, 10_000, 0), 1_000_000, limits);
    expect(fast).toMatchObject({ admit: false, reason: 'max_backlog', retryAfterSeconds: 1 });
    const slow = verdict(s(0, 9000, 0), 1, limits);
    expect(slow).toMatchObject({ admit: false, reason: 'drain_time', retryAfterSeconds: 30 });
    expect(verdict(s(0, 9999, 0), undefined, limits)).toEqual({ admit: true });
  });
});
