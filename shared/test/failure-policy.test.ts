// The failure policy as a table: what becomes of a delivery from what its handler threw and which
// attempt it was. The consumer only carries these decisions out.
import { describe, expect, it } from 'vitest';
import {
  OrderExpiredError,
  PoisonMessageError,
  RetryLaterError,
  TransientError,
  attemptOf,
  decide,
  defaultBackoffMs,
  type Decision,
} from '@order-pipeline/shared';
import type { ConsumeMessage } from 'amqplib';

const limits = { maxAttempts: 3, backoffMs: (attempt: number) => attempt * 100 };

describe('decide', () => {
  it.each<[string, unknown, number, Decision]>([
    ['a handler that succeeded: ack', undefined, 1, { kind: 'ack' }],
    ['success on the last attempt: ack', undefined, 3, { kind: 'ack' }],
    [
      'poison: dead-letter at once with its reason',
      new PoisonMessageError('bad', 'invalid'),
      1,
      { kind: 'dead-letter', reason: 'invalid' },
    ],
    ['unparseable', new PoisonMessageError('not json', 'unparseable'), 2, { kind: 'dead-letter', reason: 'unparseable' }],
    ['unknown version', new PoisonMessageError('v9', 'unknown_version'), 1, { kind: 'dead-letter', reason: 'unknown_version' }],
    ['an expired order', new OrderExpiredError('too old'), 1, { kind: 'dead-letter', reason: 'expired' }],
    ['retry later: its own delay, not counted', new RetryLaterError('leased', 750), 1, { kind: 'retry', delayMs: 750, counts: false }],
    [
      'retry later on the last attempt: still not counted',
      new RetryLaterError('leased', 50),
      3,
      { kind: 'retry', delayMs: 50, counts: false },
    ],
    [
      'retry later beyond the limit: still not counted',
      new RetryLaterError('leased', 50),
      9,
      { kind: 'retry', delayMs: 50, counts: false },
    ],
    ['transient on attempt 1: retry with backoff(1)', new TransientError('redis down'), 1, { kind: 'retry', delayMs: 100, counts: true }],
    ['transient on attempt 2: retry with backoff(2)', new Error('boom'), 2, { kind: 'retry', delayMs: 200, counts: true }],
    ['transient on the last attempt: dead-letter', new Error('boom'), 3, { kind: 'dead-letter', reason: 'attempts_exhausted' }],
    ['transient beyond the limit (redeliveries): dead-letter', new Error('boom'), 7, { kind: 'dead-letter', reason: 'attempts_exhausted' }],
    [
      'poison on the last attempt: its own reason',
      new PoisonMessageError('bad', 'unknown_type'),
      3,
      { kind: 'dead-letter', reason: 'unknown_type' },
    ],
  ])('%s', (_name, error, attempt, expected) => {
    expect(decide(error, attempt, limits)).toEqual(expected);
  });

  it('with one attempt allowed, the first transient failure dead-letters', () => {
    expect(decide(new Error('x'), 1, { ...limits, maxAttempts: 1 })).toEqual({ kind: 'dead-letter', reason: 'attempts_exhausted' });
  });
});

describe('defaultBackoffMs', () => {
  it('doubles from 200 ms and stops at 10 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(defaultBackoffMs)).toEqual([200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
  });
});

describe('attemptOf', () => {
  const msg = (headers: Record<string, unknown> | undefined) => ({ properties: { headers } }) as unknown as ConsumeMessage;
  it.each<[string, Record<string, unknown> | undefined, number]>([
    ['a first delivery', undefined, 1],
    ['a retry copy after two failed attempts', { 'x-retry-count': 2 }, 3],
    ['a quorum redelivery', { 'x-delivery-count': 1 }, 2],
    ['a redelivered retry copy', { 'x-retry-count': 2, 'x-delivery-count': 1 }, 4],
    ['garbage in the headers counts as none', { 'x-retry-count': 'many' }, 1],
  ])('%s', (_name, headers, attempt) => {
    expect(attemptOf(msg(headers))).toBe(attempt);
  });
});
