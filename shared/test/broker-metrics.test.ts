// The broker client's metrics start with every series of a consumer's queue at 0, so a rate()
// over them counts the first event too: every reason a message can be dead-lettered for.
import { describe, expect, it } from 'vitest';
import { OrderExpiredError, PayloadMismatchError, brokerMetrics, createMetrics, decide } from '@order-pipeline/shared';

describe('brokerMetrics', () => {
  it('exports consumer_dead_lettered_total at 0 for every dead-letter reason from the start', async () => {
    const metrics = createMetrics('order-processor');
    brokerMetrics(metrics, ['amqp://guest:guest@localhost:5672']).consuming('orders.queue');
    const counter = metrics.registry.getSingleMetric('consumer_dead_lettered_total');
    const series = (await counter?.get())?.values.map((s) => [s.labels.queue, s.labels.reason, s.value]) ?? [];
    // The processor dead-letters an order that waited too long with reason 'expired'.
    expect(decide(new OrderExpiredError('too old'), 1, { maxAttempts: 5, backoffMs: () => 0 })).toEqual({
      kind: 'dead-letter',
      reason: 'expired',
    });
    // A copy whose payload differs from the accepted order is dead-lettered as payload_mismatch.
    expect(decide(new PayloadMismatchError('qty'), 1, { maxAttempts: 5, backoffMs: () => 0 })).toEqual({
      kind: 'dead-letter',
      reason: 'payload_mismatch',
    });
    expect(series.sort()).toEqual(
      [
        'attempts_exhausted',
        'endpoint_gone',
        'expired',
        'invalid',
        'payload_mismatch',
        'unknown_type',
        'unknown_version',
        'unparseable',
        'webhook_refused',
      ].map((reason) => ['orders.queue', reason, 0]),
    );
  });
});
