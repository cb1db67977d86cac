import { randomUUID } from 'node:crypto';
import type { Options } from 'amqplib';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { isoNow } from './clock.js';
import { PoisonMessageError } from './errors.js';
import { OPENAPI_KEYWORDS, OPENAPI_SCHEMA_ID, openapiDocument } from './openapi.js';
import { routingKeys } from './topology.js';

// ajv-formats is CommonJS; under NodeNext its default export arrives wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv2020,
  formats: string[],
) => Ajv2020;

export const EVENT_VERSION = 1;
export const EVENT_VERSION_HEADER = 'x-event-version';

export type EventType = (typeof routingKeys)[keyof typeof routingKeys];
export type RejectReason = 'out_of_stock' | 'unknown_sku';

export interface Order {
  id: string;
  sku: string;
  qty: number;
  email?: string;
}

export interface OrderEvent {
  type: EventType;
  version: typeof EVENT_VERSION;
  eventId: string;
  occurredAt: string;
  order: Order;
  reason?: RejectReason;
  /** On order.cancel_requested and order.cancelled: the client's reason for cancelling, if it gave one. */
  cancelReason?: string;
}

/** The events that concern a cancellation; occurredAt is then the time the gateway accepted the cancel. */
export const CANCEL_EVENTS: readonly EventType[] = [routingKeys.cancelRequested, routingKeys.cancelled];

/** Order ids and SKUs: 1-64 characters of A-Z a-z 0-9 _ . : - (the OpenAPI document's `Id`). */
export const ID_PATTERN = openapiDocument.components.schemas.Id.pattern;
export const ID_REGEX = new RegExp(ID_PATTERN);

// The order's schema is the OpenAPI document's: POST /orders validates its documented request
// body, and every event carries the same `Order`.
const POST_ORDERS_BODY = `${OPENAPI_SCHEMA_ID}#/paths/~1orders/post/requestBody/content/application~1json/schema`;
const POST_CANCEL_BODY = `${OPENAPI_SCHEMA_ID}#/paths/~1orders~1{id}~1cancel/post/requestBody/content/application~1json/schema`;
const orderSchema = { $ref: `${OPENAPI_SCHEMA_ID}#/components/schemas/Order` } as const;

const eventSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'version', 'eventId', 'occurredAt', 'order'],
  properties: {
    type: { enum: Object.values(routingKeys) },
    version: { const: EVENT_VERSION },
    eventId: { type: 'string', minLength: 1, maxLength: 128 },
    occurredAt: { type: 'string', format: 'date-time' },
    order: orderSchema,
    reason: { enum: ['out_of_stock', 'unknown_sku'] },
    cancelReason: { $ref: `${OPENAPI_SCHEMA_ID}#/components/schemas/CancelReason` },
  },
} as const;

// Compiled once at load: validation runs on every request and every delivery. JSON Schema 2020-12
// is the dialect of OpenAPI 3.1.
const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv, ['email', 'date-time']);
ajv.addVocabulary(OPENAPI_KEYWORDS);
ajv.addSchema(openapiDocument, OPENAPI_SCHEMA_ID);
const validateOrderFn = ajv.compile<Order>({ $ref: POST_ORDERS_BODY });
const validateCancelFn = ajv.compile<CancelRequest>({ $ref: POST_CANCEL_BODY });
const validateEventFn = ajv.compile<OrderEvent>(eventSchema);

export interface FieldError {
  path: string;
  message: string;
}

function fieldErrors(errors: ErrorObject[] | null | undefined): FieldError[] {
  return (errors ?? []).map((e) => {
    if (e.keyword === 'additionalProperties') {
      const prop = (e.params as { additionalProperty: string }).additionalProperty;
      return { path: `${e.instancePath}/${prop}`, message: 'is not an allowed property' };
    }
    if (e.keyword === 'required') {
      const prop = (e.params as { missingProperty: string }).missingProperty;
      return { path: `${e.instancePath}/${prop}`, message: 'is required' };
    }
    if (e.keyword === 'pattern') {
      return { path: e.instancePath, message: 'must be 1-64 characters of A-Z a-z 0-9 _ . : -' };
    }
    return { path: e.instancePath || '/', message: e.message ?? 'is invalid' };
  });
}

export type Validation<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

/** Validates a `POST /orders` body (already JSON-parsed). */
export function validateOrder(body: unknown): Validation<Order> {
  if (validateOrderFn(body)) return { ok: true, value: body };
  return { ok: false, errors: fieldErrors(validateOrderFn.errors) };
}

/** The body of `POST /orders/{id}/cancel` (optional: no body means no reason). */
export interface CancelRequest {
  reason?: string;
}

/** Validates a `POST /orders/{id}/cancel` body (already JSON-parsed). */
export function validateCancelRequest(body: unknown): Validation<CancelRequest> {
  if (validateCancelFn(body)) return { ok: true, value: body };
  return { ok: false, errors: fieldErrors(validateCancelFn.errors) };
}

/** The order's fields in a fixed order: what the idempotency fingerprint and every message carry. */
export function canonicalOrder(o: Order): Order {
  return o.email === undefined ? { id: o.id, sku: o.sku, qty: o.qty } : { id: o.id, sku: o.sku, qty: o.qty, email: o.email };
}

export function messageIdOf(orderId: string, type: EventType): string {
  return `${orderId}:${type}`;
}

export function makeEvent(
  type: EventType,
  order: Order,
  reason?: RejectReason,
  extra: { cancelReason?: string | undefined; occurredAt?: string } = {},
): OrderEvent {
  const event: OrderEvent = {
    type,
    version: EVENT_VERSION,
    eventId: randomUUID(),
    occurredAt: extra.occurredAt ?? isoNow(),
    order: canonicalOrder(order),
  };
  if (reason) event.reason = reason;
  if (extra.cancelReason) event.cancelReason = extra.cancelReason;
  return event;
}

/** JSON of a string or number (escaped as JSON.stringify does); undefined stays undefined. */
const json = JSON.stringify as (value: string | number) => string;

/** The canonical order's members without the braces: `"id":..,"sku":..,"qty":..[,"email":..]`. */
export function orderMembers(o: Order): string {
  const head = `"id":${json(o.id)},"sku":${json(o.sku)},"qty":${json(o.qty)}`;
  return o.email === undefined ? head : `${head},"email":${json(o.email)}`;
}

/** The canonical order's JSON, the same text as JSON.stringify(canonicalOrder(o)). */
export function orderJson(o: Order): string {
  return `{${orderMembers(o)}}`;
}

/**
 * The event's JSON, the same text as JSON.stringify of the event makeEvent builds (same fields,
 * same order, optional fields left out when undefined). Written out field by field: the generic
 * JSON.stringify of the nested object cost about three times as much on every publish.
 */
export function eventJson(e: OrderEvent): string {
  let s = `{"type":${json(e.type)},"version":${json(e.version)},"eventId":${json(e.eventId)},"occurredAt":${json(e.occurredAt)},"order":${orderJson(e.order)}`;
  if (e.reason !== undefined) s += `,"reason":${json(e.reason)}`;
  if (e.cancelReason !== undefined) s += `,"cancelReason":${json(e.cancelReason)}`;
  return `${s}}`;
}

/** Body and properties for publishing an event: persistent JSON, messageId `{orderId}:{type}`. */
export function encodeEvent(event: OrderEvent, headers: Record<string, unknown> = {}): { content: Buffer; options: Options.Publish } {
  return {
    content: Buffer.from(eventJson(event)),
    options: {
      persistent: true,
      contentType: 'application/json',
      messageId: messageIdOf(event.order.id, event.type),
      timestamp: Math.floor(Date.parse(event.occurredAt) / 1000),
      type: event.type,
      headers: { ...headers, [EVENT_VERSION_HEADER]: EVENT_VERSION },
    },
  };
}

/** Parses and validates a delivered body; throws PoisonMessageError for anything unusable. */
export function decodeEvent(content: Buffer, accept: readonly EventType[]): OrderEvent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch {
    throw new PoisonMessageError('body is not JSON', 'unparseable');
  }
  if (parsed && typeof parsed === 'object' && 'version' in parsed && parsed.version !== EVENT_VERSION) {
    throw new PoisonMessageError(`unknown event version ${JSON.stringify(parsed.version)}`, 'unknown_version');
  }
  if (!validateEventFn(parsed)) {
    const detail = fieldErrors(validateEventFn.errors)
      .map((e) => `${e.path} ${e.message}`)
      .join('; ');
    throw new PoisonMessageError(`event fails its schema: ${detail}`, 'invalid');
  }
  if (!accept.includes(parsed.type)) throw new PoisonMessageError(`unexpected event type ${parsed.type}`, 'unknown_type');
  if (parsed.cancelReason !== undefined && !CANCEL_EVENTS.includes(parsed.type)) {
    throw new PoisonMessageError(`${parsed.type} carries a cancelReason`, 'invalid');
  }
  return parsed;
}

/** The order id in a messageId of the form `{orderId}:{type}` (the type has no colon; ids may). */
export function orderIdOfMessageId(messageId: unknown): string | undefined {
  if (typeof messageId !== 'string') return undefined;
  const at = messageId.lastIndexOf(':');
  return at > 0 ? messageId.slice(0, at) : undefined;
}

/**
 * A validator of the OpenAPI document's schema at `pointer` (`#/components/...`), with field errors
 * as the order's: every request schema comes from the document, compiled once by the caller.
 */
export function documentValidator<T>(pointer: string): (value: unknown) => Validation<T> {
  const fn = ajv.compile<T>({ $ref: `${OPENAPI_SCHEMA_ID}${pointer}` });
  return (value) => (fn(value) ? { ok: true, value } : { ok: false, errors: fieldErrors(fn.errors) });
}
