// The pure parts of the dashboard: Accept negotiation, integer parsing and the Prometheus rendering.
import { describe, expect, it } from 'vitest';
import { PROMETHEUS_ACCEPT, samples } from '../../test/helpers/prometheus.js';
import { parseInteger, prefersPrometheus, toPrometheus, type Figures } from '../src/figures.js';

describe('prefersPrometheus', () => {
  it.each([
    [undefined, false],
    ['', false],
    ['*/*', false],
    // A browser: JSON and text/plain tie through */*, and a tie goes to JSON.
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', false],
    ['application/json', false],
    ['application/json, text/plain', false],
    ['application/json, text/plain;q=0.5', false],
    ['application/*', false],
    ['text/plain;q=0', false],
    ['text/html', false],
    ['not a media type', false],
  ])('answers JSON to Accept %j', (accept, expected) => {
    expect(prefersPrometheus(accept)).toBe(expected);
  });

  it.each([
    [PROMETHEUS_ACCEPT, true],
    ['text/plain', true],
    ['Text/Plain; version=0.0.4', true],
    ['text/*', true],
    ['application/openmetrics-text', true],
    ['text/plain;q=0.9, application/json;q=0.8', true],
    ['application/json;q=0, */*', true],
    ['*/*;q=0.1, text/plain;q=0.2', true],
  ])('answers Prometheus text to Accept %j', (accept, expected) => {
    expect(prefersPrometheus(accept)).toBe(expected);
  });
});

describe('parseInteger', () => {
  it.each([
    ['98', 98],
    ['0', 0],
    [' 7 ', 7],
    ['-3', -3],
    [null, undefined],
    ['', undefined],
    ['12.5', undefined],
    ['1e3', undefined],
    ['abc', undefined],
    ['99999999999999999999', undefined],
  ])('parses %j as %j', (raw, expected) => {
    expect(parseInteger(raw)).toBe(expected);
  });
});

function sample(overrides: Partial<Figures> = {}): Figures {
  return {
    processed_orders_count: 4,
    orders: { accepted: 5, duplicates: 1, created: 4, rejected: 1, cancelled: 0 },
    notifications: { sent: 4, failed: 1 },
    inventory: { 'mag-safe-phone-case': 98, 'usb-c-cable': 0 },
    queues: { 'orders.queue': { messages: 3, consumers: 1 } },
    generatedAt: new Date().toISOString(),
    ...overrides,
  };
}

describe('toPrometheus', () => {
  it('renders every figure as a gauge sample', async () => {
    const { contentType, body } = await toPrometheus(sample());
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = samples(body);
    expect(s.get('pipeline_orders{state="accepted"}')).toBe(5);
    expect(s.get('pipeline_orders{state="created"}')).toBe(4);
    expect(s.get('pipeline_orders{state="duplicates"}')).toBe(1);
    expect(s.get('pipeline_orders{state="rejected"}')).toBe(1);
    expect(s.get('pipeline_notifications{status="sent"}')).toBe(4);
    expect(s.get('pipeline_notifications{status="failed"}')).toBe(1);
    expect(s.get('pipeline_inventory_units{sku="mag-safe-phone-case"}')).toBe(98);
    expect(s.get('pipeline_inventory_units{sku="usb-c-cable"}')).toBe(0);
    expect(s.get('pipeline_queue_messages{queue="orders.queue"}')).toBe(3);
    expect(s.get('pipeline_queue_consumers{queue="orders.queue"}')).toBe(1);
    expect(s.get('pipeline_queues_up')).toBe(1);
  });

  it('leaves queue series out when the broker could not be asked, and says so', async () => {
    const { body } = await toPrometheus(sample({ queues: null }));
    const s = samples(body);
    expect(s.get('pipeline_queues_up')).toBe(0);
    expect([...s.keys()].some((k) => k.startsWith('pipeline_queue_messages'))).toBe(false);
    expect(s.get('pipeline_orders{state="accepted"}')).toBe(5);
  });

  it('builds a fresh registry each time, so a SKU that disappeared leaves no series', async () => {
    await toPrometheus(sample());
    const { body } = await toPrometheus(sample({ inventory: { 'usb-c-cable': 2 } }));
    const s = samples(body);
    expect(s.has('pipeline_inventory_units{sku="mag-safe-phone-case"}')).toBe(false);
    expect(s.get('pipeline_inventory_units{sku="usb-c-cable"}')).toBe(2);
  });
});
