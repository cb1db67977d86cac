import { describe, expect, it } from 'vitest';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { ROOT_CONTEXT, SpanKind, extractContext, propagation, setupTracing, trace, traceHeaders } from '../src/tracing.js';

// Without an exporter the services trace through NonRecordingTracerProvider (tracing-off.ts): the
// same context on the wire as the SDK with AlwaysOffSampler, checked here against the SDK's own
// W3C propagator.
setupTracing({ service: 'tracing-off-test' });
const tracer = trace.getTracer('tracing-off-test');
const reference = new W3CTraceContextPropagator();
/** The headers traceHeaders writes, as strings. */
const headersOf = (span: Parameters<typeof traceHeaders>[0]) => traceHeaders<Record<string, string>>(span, {});
const setter = { set: (c: Record<string, string>, k: string, v: string) => (c[k] = v) };

describe('tracing without an exporter', () => {
  it("continues the caller's trace id and tracestate with a new span id and flags 00", () => {
    const incoming = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'shop=checkout' };
    const span = tracer.startSpan('POST /orders', { kind: SpanKind.SERVER }, extractContext(incoming));
    expect(span.isRecording()).toBe(false);
    const headers = headersOf(span);
    expect(headers.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-00$/);
    expect(headers.traceparent).not.toContain('b7ad6b7169203331');
    expect(headers.tracestate).toBe('shop=checkout');
    // What the SDK's propagator writes for the same span.
    const viaPropagator: Record<string, string> = {};
    reference.inject(trace.setSpan(ROOT_CONTEXT, span), viaPropagator, setter);
    expect(headers).toEqual(viaPropagator);
  });

  it('starts a new trace for a request without traceparent, or with an invalid one', () => {
    for (const incoming of [{}, { traceparent: 'garbage' }, { traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }]) {
      const a = headersOf(tracer.startSpan('a', {}, extractContext(incoming)));
      const b = headersOf(tracer.startSpan('b', {}, extractContext(incoming)));
      expect(a.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(a.traceparent?.slice(3, 35)).not.toBe(b.traceparent?.slice(3, 35));
      expect(a.tracestate).toBeUndefined();
    }
  });

  it('a message published from a span carries that span as the parent of the next hop', () => {
    const request = tracer.startSpan('POST /orders', {}, extractContext({}));
    const published = headersOf(request);
    const consumer = tracer.startSpan('process', {}, extractContext(published));
    expect(consumer.spanContext().traceId).toBe(request.spanContext().traceId);
    expect(trace.getSpanContext(extractContext(published))?.spanId).toBe(request.spanContext().spanId);
    expect(propagation.fields()).toEqual(['traceparent', 'tracestate']);
  });

  it('a root span ignores the parent in its context', () => {
    const parent = extractContext({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    expect(tracer.startSpan('r', { root: true }, parent).spanContext().traceId).not.toBe('0af7651916cd43dd8448eb211c80319c');
  });
});
