// The order schema (what POST /orders accepts) and the event envelope on the wire: what the
// gateway validates, what every publish carries, and how a consumer tells a poison message.
import { describe, expect, it } from 'vitest';
import {
  EVENT_VERSION,
  EVENT_VERSION_HEADER,
  PoisonMessageError,
  canonicalOrder,
  decodeEvent,
  encodeEvent,
  makeEvent,
  validateOrder,
  type EventType,
  type OrderEvent,
} from '@order-pipeline/shared';

const good = { id: 'order123', sku: 'mag-safe-phone-case', qty: 2 };

describe('validateOrder', () => {
  it.each([
    ['the spec example', good],
    ['an email', { ...good, email: 'buyer@example.com' }],
    ['every allowed character', { id: 'Az09_.:-', sku: 'SKU_1.a:b-c', qty: 1 }],
    ['64-character id and sku', { id: 'a'.repeat(64), sku: 'b'.repeat(64), qty: 1000 }],
  ])('accepts %s', (_name, body) => {
    const v = validateOrder(body);
    expect(v).toEqual({ ok: true, value: body });
  });

  const bad: [string, unknown, string][] = [
    ['a missing id', { sku: good.sku, qty: 2 }, '/id'],
    ['an empty id', { ...good, id: '' }, '/id'],
    ['a 65-character id', { ...good, id: 'a'.repeat(65) }, '/id'],
    ['an id with a space', { ...good, id: 'order 1' }, '/id'],
    ['an id with a slash', { ...good, id: '../etc' }, '/id'],
    ['a numeric id', { ...good, id: 123 }, '/id'],
    ['a missing sku', { id: good.id, qty: 2 }, '/sku'],
    ['a sku with a star', { ...good, sku: 'sku*' }, '/sku'],
    ['a missing qty', { id: good.id, sku: good.sku }, '/qty'],
    ['qty 0', { ...good, qty: 0 }, '/qty'],
    ['qty 1001', { ...good, qty: 1001 }, '/qty'],
    ['a fractional qty', { ...good, qty: 1.5 }, '/qty'],
    ['qty as a string', { ...good, qty: '2' }, '/qty'],
    ['a bad email', { ...good, email: 'not-an-email' }, '/email'],
    ['an unknown property', { ...good, price: 10 }, '/price'],
    ['an array body', [good], '/'],
    ['a null body', null, '/'],
    ['a string body', 'order123', '/'],
  ];

  it.each(bad)('rejects %s, naming %s', (_name, body, path) => {
    const v = validateOrder(body);
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.errors.map((e) => e.path)).toContain(path);
    for (const e of v.errors) expect(e.message).not.toBe('');
  });

  it('reports every problem of a body at once', () => {
    const v = validateOrder({ id: '', qty: 0, colour: 'red' });
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.errors.map((e) => e.path).sort()).toEqual(['/colour', '/id', '/qty', '/sku']);
    expect(v.errors.find((e) => e.path === '/sku')?.message).toBe('is required');
    expect(v.errors.find((e) => e.path === '/colour')?.message).toBe('is not an allowed property');
  });
});

describe('canonicalOrder', () => {
  it('puts the fields in one order and leaves out a missing email', () => {
    expect(JSON.stringify(canonicalOrder({ qty: 2, sku: 's', id: 'i' }))).toBe('{"id":"i","sku":"s","qty":2}');
    expect(JSON.stringify(canonicalOrder({ email: 'a@b.co', qty: 2, id: 'i', sku: 's' }))).toBe(
      '{"id":"i","sku":"s","qty":2,"email":"a@b.co"}',
    );
  });
});

describe('encodeEvent and decodeEvent', () => {
  it('round-trip an event with the properties every publish carries', () => {
    const event = makeEvent('order.placed', { ...good, email: 'buyer@example.com' });
    const { content, options } = encodeEvent(event, { 'x-trace': 'abc' });

    expect(options.messageId).toBe('order123:order.placed');
    expect(options.persistent).toBe(true);
    expect(options.contentType).toBe('application/json');
    expect(options.type).toBe('order.placed');
    expect(options.headers).toEqual({ 'x-trace': 'abc', [EVENT_VERSION_HEADER]: EVENT_VERSION });
    expect(EVENT_VERSION_HEADER).toBe('x-event-version');

    const decoded = decodeEvent(content, ['order.placed']);
    expect(decoded).toEqual(event);
    expect(decoded.version).toBe(1);
    expect(JSON.parse(content.toString('utf8'))).toEqual(event);
  });

  it('round-trip a rejection with its reason, under its own messageId', () => {
    const event = makeEvent('order.rejected', good, 'out_of_stock');
    const { content, options } = encodeEvent(event);
    expect(options.messageId).toBe('order123:order.rejected');
    expect(options.headers).toEqual({ [EVENT_VERSION_HEADER]: EVENT_VERSION });
    const decoded = decodeEvent(content, ['order.created', 'order.rejected']);
    expect(decoded.reason).toBe('out_of_stock');
    expect(decoded).toEqual(event);
  });

  it('round-trip a cancellation with its reason and the time the cancel was taken', () => {
    const at = '2026-01-01T00:00:00.000Z';
    const event = makeEvent('order.cancel_requested', good, undefined, { cancelReason: 'mistake', occurredAt: at });
    const { content, options } = encodeEvent(event);
    expect(options.messageId).toBe('order123:order.cancel_requested');
    expect(decodeEvent(content, ['order.cancel_requested'])).toEqual({ ...event, occurredAt: at, cancelReason: 'mistake' });
    expect(makeEvent('order.cancelled', good).cancelReason).toBeUndefined();
  });

  it('give each event of an order a distinct eventId but the same order fields', () => {
    const a = makeEvent('order.created', good);
    const b = makeEvent('order.created', good);
    expect(a.eventId).not.toBe(b.eventId);
    expect(a.order).toEqual(b.order);
  });
});

describe('decodeEvent refuses a poison message', () => {
  const valid: OrderEvent = makeEvent('order.created', good);
  const body = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
  const accept: readonly EventType[] = ['order.created', 'order.rejected'];

  const cases: [string, PoisonMessageError['reason'], Buffer][] = [
    ['a body that is not JSON', 'unparseable', body('{"type":')],
    ['an empty body', 'unparseable', Buffer.alloc(0)],
    ['JSON null', 'invalid', body('null')],
    ['an event without its order', 'invalid', body({ ...valid, order: undefined })],
    ['an order that fails the order schema', 'invalid', body({ ...valid, order: { ...good, qty: 0 } })],
    ['an unknown property', 'invalid', body({ ...valid, extra: 1 })],
    ['a bad timestamp', 'invalid', body({ ...valid, occurredAt: 'yesterday' })],
    ['a reason that is not one of the known ones', 'invalid', body({ ...valid, reason: 'because' })],
    ['a missing version', 'invalid', body({ ...valid, version: undefined })],
    ['version 2', 'unknown_version', body({ ...valid, version: 2 })],
    ['a version given as a string', 'unknown_version', body({ ...valid, version: '1' })],
    ['a type this consumer does not take', 'unknown_type', body({ ...valid, type: 'order.placed' })],
    ['a cancelReason on an event that is not a cancellation', 'invalid', body({ ...valid, cancelReason: 'x' })],
    ['an empty cancelReason', 'invalid', body({ ...valid, type: 'order.rejected', cancelReason: '' })],
    ['a cancelReason over 200 characters', 'invalid', body({ ...valid, cancelReason: 'x'.repeat(201) })],
  ];

  it.each(cases)('%s is refused as %s', (_name, reason, content) => {
    let caught: unknown;
    try {
      decodeEvent(content, accept);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PoisonMessageError);
    expect((caught as PoisonMessageError).reason).toBe(reason);
    expect((caught as PoisonMessageError).message).not.toBe('');
  });

  it('accepts the same event once its type is taken', () => {
    expect(decodeEvent(body({ ...valid, type: 'order.placed' }), ['order.placed']).type).toBe('order.placed');
  });
});
