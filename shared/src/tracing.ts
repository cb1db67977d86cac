import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { Logger } from './logger.js';
import { NonRecordingTracerProvider, ParentBasedTracerProvider, parentBasedSampler } from './tracing-off.js';

// W3C trace context from the HTTP request through every AMQP message to the webhook. One
// provider per process, registered globally: code takes its tracer with trace.getTracer(name),
// which is a no-op until setupTracing runs (so tests that do not trace pay nothing).
//
// The context is passed explicitly (the request's span, the message's headers, the consumer's
// span), never through an async-local context manager: on Node 20 that one hooks every promise
// of the process and cost the gateway about a fifth of its CPU per request. So nothing here reads
// context.active(): a span's parent is always named.

export { ROOT_CONTEXT, SpanKind, SpanStatusCode, propagation, trace };
export type { Attributes, Context, Span, Tracer };

// Messaging attributes (OpenTelemetry semantic conventions; still "incubating" there, so
// spelled out here rather than imported from a module whose names may change).
export const ATTR = {
  orderId: 'order.id',
  messagingSystem: 'messaging.system',
  destination: 'messaging.destination.name',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  messageId: 'messaging.message.id',
  routingKey: 'messaging.rabbitmq.destination.routing_key',
  outcome: 'messaging.consume.outcome',
} as const;

export interface TracingOptions {
  /** The `service.name` resource of every span. */
  service: string;
  /** OTLP/HTTP base URL; spans go to `<endpoint>/v1/traces` in batches. Unset: no export at all. */
  otlpEndpoint?: string;
  /** Extra processors (tests add an in-memory exporter). */
  spanProcessors?: SpanProcessor[];
}

export interface Tracing {
  /** The SDK's provider with an exporter or span processor; a non-recording one without (tracing-off.ts). */
  provider: TracerProvider;
  /** Exports what is still batched, then stops the exporter. */
  shutdown(): Promise<void>;
}

/**
 * Registers a tracer provider and the W3C trace-context propagator (traceparent, tracestate). A
 * provider that makes trace ids always, so they exist for the logs and the messages even without
 * an exporter.
 * Sampling: with no exporter (and no other span processor) nothing would ever read a span, so every
 * span is non-recording (NonRecordingTracerProvider, tracing-off.ts: what the SDK makes with
 * AlwaysOffSampler): ids are made and the context still travels in traceparent (flags 00), but no
 * span object, attributes or processor work is made per request (the SDK's span objects were
 * about a sixth of the gateway's CPU per order, its per-span checks another 2 %). With an exporter, the SDK's default:
 * parent-based and always on for new traces (an incoming traceparent's sampled flag wins); the
 * standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG variables can lower it (e.g.
 * parentbased_traceidratio). Set the exporter on every service or none: a service without one
 * passes its requests on as unsampled, and a parent-based service after it records nothing.
 */
export function setupTracing(opts: TracingOptions): Tracing {
  const spanProcessors = [...(opts.spanProcessors ?? [])];
  if (opts.otlpEndpoint) {
    const url = `${opts.otlpEndpoint.replace(/\/+$/, '')}/v1/traces`;
    spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url })));
  }
  w3cPropagation = true;
  // The API keeps the first provider and propagator registered and ignores later ones: a second
  // call (the tests make several in one process) replaces them instead. A service calls it once.
  trace.disable();
  propagation.disable();
  if (spanProcessors.length === 0) {
    // What the SDK with AlwaysOffSampler would make, without its per-span work (tracing-off.ts).
    const provider = new NonRecordingTracerProvider();
    trace.setGlobalTracerProvider(provider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    return { provider, shutdown: () => Promise.resolve() };
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: opts.service }),
    spanProcessors,
  });
  // No context manager (see the top of this file); only the propagator and the provider. With a
  // parent-based sampler, the children of unsampled parents skip the SDK (tracing-off.ts).
  if (parentBasedSampler()) {
    trace.setGlobalTracerProvider(new ParentBasedTracerProvider(provider));
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  } else provider.register({ propagator: new W3CTraceContextPropagator(), contextManager: null });
  let down: Promise<void> | undefined;
  return { provider, shutdown: () => (down ??= provider.shutdown().catch(() => undefined)) };
}

/** Set by setupTracing, whose propagator is W3C trace context: traceHeaders may then write it itself. */
let w3cPropagation = false;

/** The trace id of a span, when it has a valid one (a no-op tracer's spans have none). */
export function traceIdOf(span: Span | undefined): string | undefined {
  const sc = span?.spanContext();
  return sc && trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}

/**
 * Where the order's context becomes known: tags the span handling it with the order id and
 * returns a logger whose every line carries `orderId` and (in a trace) `traceId`, so one order
 * can be followed across the services' logs by either. The child logger is made on the first line
 * written at an enabled level (lazyChild): most requests and deliveries write none.
 */
export function forOrder(log: Logger, orderId: string, span: Span | undefined): Logger {
  return lazyChild(log, orderBindings(orderId, span));
}

/**
 * What forOrder binds (`orderId`, and `traceId` in a trace), for a single line written without a
 * child logger: `log.info({ ...orderBindings(id, span), ...fields }, msg)` writes the same text as
 * `forOrder(log, id, span).info(fields, msg)`. Tags the span with the order id, as forOrder does.
 */
export function orderBindings(orderId: string, span: Span | undefined): { orderId: string; traceId?: string } {
  const traceId = traceIdOf(span);
  if (!span || !traceId) return { orderId };
  span.setAttribute(ATTR.orderId, orderId);
  return { orderId, traceId };
}

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
const noop = () => undefined;

/**
 * log.child(bindings), made only when something is logged through it: a pino child serializes its
 * bindings when it is made (about 2 µs), and the happy path of an order logs nothing at the default
 * level. A call at a disabled level is a no-op without a child, as it would be on the child; any
 * other use (child(), level, bindings(), ...) makes the child and goes to it.
 */
export function lazyChild(log: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  const real = () => (child ??= log.child(bindings));
  return new Proxy(log, {
    get(_target, prop) {
      if (typeof prop === 'string' && LEVELS.has(prop) && child === undefined && !log.isLevelEnabled(prop)) return noop;
      const c = real();
      const value = Reflect.get(c, prop, c) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(c) : value;
    },
    set(_target, prop, value) {
      return Reflect.set(real(), prop, value);
    },
  });
}

/** Message headers (AMQP table, HTTP header map) read as a carrier for the propagator. */
type Carrier = Record<string, unknown>;
const carrierGetter = {
  keys: (c: Carrier) => Object.keys(c),
  get: (c: Carrier, key: string) => {
    const v = c[key];
    if (v === undefined || v === null) return undefined;
    if (Array.isArray(v)) return v.map(String);
    // amqplib hands long strings in headers back as Buffers.
    return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
  },
};

/** The trace context a message or request carries (traceparent, tracestate), or none. */
export function extractContext(headers: Carrier | undefined): Context {
  if (!headers) return ROOT_CONTEXT;
  // W3C trace context without a traceparent extracts nothing: the propagator would return
  // ROOT_CONTEXT after reading the header itself.
  if (w3cPropagation && carrierGetter.get(headers, 'traceparent') === undefined) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, headers, carrierGetter);
}

/**
 * Writes `span`'s trace context (traceparent, tracestate) into `headers` and returns them: a
 * message published with these headers has its publish span made a child of `span`.
 */
export function traceHeaders<H extends Record<string, unknown>>(span: Span | undefined, headers: H = {} as H): H {
  if (!span) return headers;
  if (!w3cPropagation) {
    propagation.inject(trace.setSpan(ROOT_CONTEXT, span), headers);
    return headers;
  }
  // What W3CTraceContextPropagator.inject writes, without a context made to carry the span there.
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return headers;
  const h = headers as Record<string, unknown>;
  h.traceparent = `00-${sc.traceId}-${sc.spanId}-0${Number(sc.traceFlags || 0).toString(16)}`;
  if (sc.traceState) h.tracestate = sc.traceState.serialize();
  return headers;
}

/** Ends a span with the error's message as its status (and the exception as an event). */
export function endWithError(span: Span, err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  span.recordException(e);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
  span.end();
}

/** Attributes of a publish span: destination is the exchange, or the queue for the default exchange. */
export function publishAttributes(
  exchange: string,
  routingKey: string,
  messageId: string | undefined,
  orderId: string | undefined,
): Attributes {
  const a: Attributes = {
    [ATTR.messagingSystem]: 'rabbitmq',
    [ATTR.destination]: exchange === '' ? routingKey : exchange,
    [ATTR.operationType]: 'send',
    [ATTR.operationName]: 'publish',
    [ATTR.routingKey]: routingKey,
  };
  if (messageId) a[ATTR.messageId] = messageId;
  if (orderId) a[ATTR.orderId] = orderId;
  return a;
}

/** Attributes of a consumer's processing span. */
export function processAttributes(queue: string, messageId: string | undefined, orderId: string | undefined): Attributes {
  const a: Attributes = {
    [ATTR.messagingSystem]: 'rabbitmq',
    [ATTR.destination]: queue,
    [ATTR.operationType]: 'process',
    [ATTR.operationName]: 'process',
  };
  if (messageId) a[ATTR.messageId] = messageId;
  if (orderId) a[ATTR.orderId] = orderId;
  return a;
}
