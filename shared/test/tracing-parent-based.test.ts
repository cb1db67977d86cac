import { describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, TraceFlags, trace, type SpanContext } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ParentBasedTracerProvider, parentBasedSampler } from '../src/tracing-off.js';

// With an exporter and a parent-based sampler, the children of unsampled parents are made without
// the SDK (ParentBasedTracerProvider, tracing-off.ts): the same span the SDK would make, nothing
// exported; every other span is the SDK's, recorded and exported as before.
const exporter = new InMemorySpanExporter();
const sdk = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = new ParentBasedTracerProvider(sdk).getTracer('parent-based-test');
const sdkTracer = sdk.getTracer('parent-based-test');
const parent = (flags: TraceFlags): SpanContext => ({
  traceId: '0af7651916cd43dd8448eb211c80319c',
  spanId: 'b7ad6b7169203331',
  traceFlags: flags,
  isRemote: true,
});
const under = (sc: SpanContext) => trace.setSpanContext(ROOT_CONTEXT, sc);

describe('a parent-based tracer with an exporter', () => {
  it('makes the child of an unsampled parent as the SDK does, and exports nothing', () => {
    exporter.reset();
    const ours = tracer.startSpan('process', {}, under(parent(TraceFlags.NONE)));
    const sdks = sdkTracer.startSpan('process', {}, under(parent(TraceFlags.NONE)));
    for (const s of [ours, sdks]) {
      expect(s.isRecording()).toBe(false);
      expect(s.spanContext()).toMatchObject({ traceId: '0af7651916cd43dd8448eb211c80319c', traceFlags: TraceFlags.NONE });
      expect(s.spanContext().spanId).not.toBe('b7ad6b7169203331');
      s.end();
    }
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it('records and exports the child of a sampled parent, and a new trace', () => {
    exporter.reset();
    const child = tracer.startSpan('process', {}, under(parent(TraceFlags.SAMPLED)));
    const root = tracer.startSpan('POST /orders', {}, ROOT_CONTEXT);
    expect(child.isRecording()).toBe(true);
    expect(root.isRecording()).toBe(true);
    child.end();
    root.end();
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['process', 'POST /orders']);
    expect(exporter.getFinishedSpans()[0]?.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
  });

  it('is used only for a parent-based sampler (or none set)', () => {
    expect(parentBasedSampler({})).toBe(true);
    expect(parentBasedSampler({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio' })).toBe(true);
    expect(parentBasedSampler({ OTEL_TRACES_SAMPLER: 'always_on' })).toBe(false);
    expect(parentBasedSampler({ OTEL_TRACES_SAMPLER: 'traceidratio' })).toBe(false);
  });
});
