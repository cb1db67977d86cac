import { PROBLEM_TYPES, loadConfig, openapiDocument } from '@order-pipeline/shared';
import { describe, expect, it } from 'vitest';
import { REFUSALS } from '../src/app.js';
import { isJsonContentType } from '../src/body.js';
import { claimLeaseMs, fingerprint, resultOf } from '../src/orders.js';

describe('fingerprint', () => {
  it('is the same whatever the key order of the payload', () => {
    const a = fingerprint({ id: 'o1', sku: 's1', qty: 2, email: 'a@example.com' });
    const b = fingerprint({ email: 'a@example.com', qty: 2, sku: 's1', id: 'o1' });
    expect(a).toBe(b);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });

  it('differs when any field differs, including a missing email', () => {
    const base = { id: 'o1', sku: 's1', qty: 2 };
    const all = [
      fingerprint(base),
      fingerprint({ ...base, qty: 3 }),
      fingerprint({ ...base, sku: 's2' }),
      fingerprint({ ...base, id: 'o2' }),
      fingerprint({ ...base, email: 'a@example.com' }),
    ];
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('isJsonContentType', () => {
  it.each(['application/json', 'application/json; charset=utf-8', 'Application/JSON;charset="UTF-8"', 'application/json ; charset=utf8'])(
    'accepts %j',
    (header) => expect(isJsonContentType(header)).toBe(true),
  );

  it.each([
    undefined,
    '',
    'text/plain',
    'application/jsonx',
    'application/x-www-form-urlencoded',
    'application/json; charset=iso-8859-1',
    'text/json',
  ])('refuses %j', (header) => expect(isJsonContentType(header)).toBe(false));
});

describe('outcome labels', () => {
  it('count bad input as invalid and map every other status of the table', () => {
    expect([202, 200, 409, 422, 400, 413, 415, 503].map(resultOf)).toEqual([
      'accepted',
      'replayed',
      'in_flight',
      'mismatch',
      'invalid',
      'invalid',
      'invalid',
      'unavailable',
    ]);
    expect(resultOf(500)).toBeUndefined();
  });
});

describe('claim lease', () => {
  it('outlasts the longest publish wait', () => {
    const config = loadConfig('api-gateway', { PUBLISH_TIMEOUT_MS: '2000' });
    expect(claimLeaseMs(config)).toBe(5000);
  });
});

describe('refusal reasons', () => {
  it('are documented problem types, each a status POST /orders documents', () => {
    const responses = (openapiDocument.paths['/orders']?.post as { responses: Record<string, unknown> }).responses;
    for (const reason of REFUSALS) {
      const page = PROBLEM_TYPES.get(reason);
      expect(page, reason).toBeDefined();
      const status = /^Status (\d{3})\./.exec(page?.description ?? '')?.[1];
      expect(Object.keys(responses), reason).toContain(status);
    }
  });
});
