// The failure policy as a table: what becomes of a delivery from what its handler threw and which
// attempt it was. The consumer only carries these decisions out.
import { describe, expect, it } from 'vitest';
import {
  NotEnoughReplicasError,
  OrderExpiredError,
  PoisonMessageError,
  PublishError,
  RetryLaterError,
  TransientError,
  attemptOf,
  decide,
  defaultBackoffMs,
  outageBackoffMs,
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

  // Errors as ioredis and the broker client really reject with them during an outage.
  const maxRetries = Object.assign(new Error('Reached the max retries per request limit (which is 1).'), {
    name: 'MaxRetriesPerRequestError',
  });
  const readonly = Object.assign(new Error("READONLY You can't write against a read only replica."), { name: 'ReplyError' });
  const wrapped = (cause: Error) => new TransientError(`redis unavailable (reserve): ${cause.message}`, { cause });
  it.each<[string, unknown, number, number, Decision]>([
    [
      'Redis unreachable (offline queue off): hold, not counted',
      wrapped(new Error("Stream isn't writeable and enableOfflineQueue options is false")),
      1,
      0,
      { kind: 'hold', delayMs: 250 },
    ],
    ['max retries per request: hold', wrapped(maxRetries), 1, 0, { kind: 'hold', delayMs: 250 }],
    ['connection closed mid-command: hold', new Error('Connection is closed.'), 1, 0, { kind: 'hold', delayMs: 250 }],
    ['command timeout: hold', wrapped(new Error('Command timed out')), 2, 1, { kind: 'hold', delayMs: 500 }],
    [
      'a demoted primary (READONLY) wrapped twice: hold',
      new TransientError('cannot reserve stock', { cause: readonly }),
      1,
      2,
      { kind: 'hold', delayMs: 1000 },
    ],
    [
      'min-replicas-to-write refused: hold',
      new Error('NOREPLICAS Not enough good replicas to write.'),
      1,
      0,
      { kind: 'hold', delayMs: 250 },
    ],
    ['WAIT found too few replicas: hold', new NotEnoughReplicasError('reserve', 0, 1), 1, 0, { kind: 'hold', delayMs: 250 }],
    ['on the last attempt an outage still holds', new NotEnoughReplicasError('reserve', 0, 1), 3, 0, { kind: 'hold', delayMs: 250 }],
    ['beyond the limit an outage still holds', wrapped(maxRetries), 9, 0, { kind: 'hold', delayMs: 250 }],
    ['a long outage: bounded backoff', wrapped(maxRetries), 1, 40, { kind: 'hold', delayMs: 5000 }],
    [
      'broker disconnected on publish: hold',
      new PublishError('no broker node is connected', 'disconnected'),
      1,
      0,
      { kind: 'hold', delayMs: 250 },
    ],
    ['broker confirm timeout: hold', new PublishError('no confirm within 2000 ms', 'timeout'), 3, 0, { kind: 'hold', delayMs: 250 }],
    [
      'broker nack: the message counts',
      new PublishError('broker refused the message', 'nacked'),
      1,
      0,
      { kind: 'retry', delayMs: 100, counts: true },
    ],
    [
      'unroutable: the message counts, and dead-letters on the last',
      new PublishError('unroutable', 'unroutable'),
      3,
      0,
      { kind: 'dead-letter', reason: 'attempts_exhausted' },
    ],
    [
      'a script reply error that is not an outage: counts',
      new TransientError('cannot reserve stock', {
        cause: Object.assign(new Error('ERR value is not an integer'), { name: 'ReplyError' }),
      }),
      1,
      0,
      { kind: 'retry', delayMs: 100, counts: true },
    ],
    [
      'a webhook that refuses the connection: counts',
      new TransientError('sending the notification failed', {
        cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      }),
      3,
      0,
      { kind: 'dead-letter', reason: 'attempts_exhausted' },
    ],
  ])('%s', (_name, error, attempt, holds, expected) => {
    expect(decide(error, attempt, limits, holds)).toEqual(expected);
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

describe('outageBackoffMs', () => {
  it('doubles from 250 ms and stops at 5 s', () => {
    expect([1, 2, 3, 4, 5, 6, 50].map(outageBackoffMs)).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000]);
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
