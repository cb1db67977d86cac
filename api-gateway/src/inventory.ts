import { randomUUID } from 'node:crypto';
import type { Context } from 'koa';
import {
  HttpProblem,
  ID_REGEX,
  adjustInventory,
  documentValidator,
  keys,
  requestSpan,
  subjectOf,
  type AdjustResult,
  type Config,
  type FieldError,
  type Logger,
  type Metrics,
  type RedisClient,
} from '@order-pipeline/shared';
import { parseJson, readBody, requireJson } from './body.js';

// The Inventory API on the keys the processor reserves from: `inventory:<sku>` stays a plain
// integer string, so `redis-cli SET inventory:<sku> 100` and the reserve script's DECRBY work as
// before. Every request schema is the OpenAPI document's; bad input is refused before any write.

export const INVENTORY_CHANGE_KINDS = ['set', 'adjust'] as const;
export type InventoryChangeKind = (typeof INVENTORY_CHANGE_KINDS)[number];

export interface InventoryDeps {
  config: Config;
  redis: RedisClient;
  log: Logger;
  /** Counts a change that was written (not a replay, not a refusal). */
  changed: (kind: InventoryChangeKind) => void;
}

/** gateway_inventory_changes_total{kind}: levels written by PUT (set) and adjust. */
export function inventoryChangeCounter(metrics: Metrics): InventoryDeps['changed'] {
  const changes = metrics.counter('gateway_inventory_changes_total', 'Inventory levels written, by kind', ['kind'] as const);
  for (const kind of INVENTORY_CHANGE_KINDS) changes.inc({ kind }, 0);
  return (kind) => changes.inc({ kind });
}

const validateLevel = documentValidator<{ available: number }>('#/components/schemas/InventoryLevelUpdate');
const validateAdjustment = documentValidator<{ delta: number }>('#/components/schemas/InventoryAdjustment');
const validateKeyHeader = documentValidator<string>('#/components/parameters/IdempotencyKey/schema');
const validateLimit = documentValidator<number>('#/components/schemas/InventoryPageLimit');
const validateCursor = documentValidator<string>('#/components/schemas/InventoryCursor');

/** `limit` when the query gives none (the document's default). */
export const DEFAULT_PAGE_LIMIT = 20;
/** SCAN steps one page makes at most, so one request never walks a large keyspace at once. */
export const MAX_SCAN_STEPS = 16;

/** What Redis holds for a level: a whole number from 0 without sign or leading zero, exact as a JS number. */
const LEVEL_REGEX = /^(0|[1-9]\d{0,14})$/;

function unavailable(): HttpProblem {
  return new HttpProblem(503, 'Service Unavailable', 'The inventory store is not reachable; retry shortly', {}, { 'Retry-After': '1' });
}

/** Errors that are a fault (500), not Redis being unreachable: an error reply (WRONGTYPE), a reply a wrapper refused. */
const FAULTS = new Set(['ReplyError', 'ScriptReplyError']);

async function store<T>(op: () => Promise<T>, log: Logger, what: string): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (FAULTS.has((err as Error).name)) throw err;
    log.warn({ err: (err as Error).message }, `${what} failed; answering 503`);
    throw unavailable();
  }
}

function skuOf(ctx: Context): string {
  const sku = String(ctx.params.sku ?? '');
  if (!ID_REGEX.test(sku)) {
    const message = 'must be 1-64 characters of A-Z a-z 0-9 _ . : -';
    throw new HttpProblem(400, 'Invalid SKU', `A SKU ${message}`, { errors: [{ path: 'sku', message }] });
  }
  return sku;
}

function unreadableLevel(log: Logger, sku: string, raw: string): HttpProblem {
  log.error({ sku, key: keys.inventory(sku), raw: raw.slice(0, 80) }, 'inventory level is not a whole number; answering 500');
  return new HttpProblem(500, 'Internal Server Error', `The stock level of ${sku} in Redis is not a whole number from 0`);
}

/**
 * Who sent a change, for the log (a stock change's only record): the token's subject when auth is
 * on, and always the peer and its client.
 */
function requester(ctx: Context): Record<string, unknown> {
  const traceId = requestSpan(ctx)?.spanContext().traceId;
  const sub = subjectOf(ctx);
  return {
    ...(sub === undefined ? {} : { sub }),
    ip: ctx.ip,
    userAgent: ctx.get('user-agent') || undefined,
    ...(traceId ? { traceId } : {}),
  };
}

async function jsonBody(ctx: Context): Promise<unknown> {
  requireJson(ctx.req);
  return parseJson(await readBody(ctx.req));
}

/** GET /inventory/{sku}. */
export async function getInventory(ctx: Context, deps: InventoryDeps): Promise<void> {
  const sku = skuOf(ctx);
  const raw = await store(() => deps.redis.get(keys.inventory(sku)), deps.log, 'inventory read');
  if (raw === null) throw new HttpProblem(404, 'SKU Not Found', `SKU ${sku} was never stocked`);
  if (!LEVEL_REGEX.test(raw)) throw unreadableLevel(deps.log, sku, raw);
  ctx.body = { sku, available: Number(raw) };
}

/**
 * PUT /inventory/{sku}: sets the level, 200 whether or not the SKU was stocked before. The
 * contract names 200 for this endpoint and scripts check it, so a first stocking is not the 201
 * RFC 9110 would give it; the log says which it was.
 */
export async function setInventory(ctx: Context, deps: InventoryDeps): Promise<void> {
  const sku = skuOf(ctx);
  const valid = validateLevel(await jsonBody(ctx));
  if (!valid.ok) {
    throw new HttpProblem(400, 'Invalid Inventory Level', 'The body must be {"available": N}, N a whole number from 0 to 1000000000', {
      errors: valid.errors,
    });
  }
  const { available } = valid.value;
  // SET ... GET: the level before, for the log, in the same command that replaces it.
  const previous = await store(() => deps.redis.set(keys.inventory(sku), String(available), 'GET'), deps.log, 'inventory write');
  deps.changed('set');
  deps.log.info({ sku, kind: 'set', previous, available, ...requester(ctx) }, 'inventory level set');
  ctx.body = { sku, available };
}

/** The Idempotency-Key header unquoted, or undefined when there is none (a malformed one is a 400). */
export function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  // Node joins a repeated header with ", ": it fails the pattern like any other bad value.
  const value = Array.isArray(header) ? header.join(', ') : header;
  if (!validateKeyHeader(value).ok) {
    const message = 'must be 1-128 characters of A-Z a-z 0-9 - _ . ~ + / =, bare or quoted ("k1"), given once';
    throw new HttpProblem(400, 'Invalid Idempotency Key', `Idempotency-Key ${message}`, {
      errors: [{ path: 'Idempotency-Key', message }],
    });
  }
  return value.startsWith('"') ? value.slice(1, -1) : value;
}

/** ajv's message for `not: {const: 0}` says nothing useful; name the value. */
function adjustmentErrors(errors: FieldError[]): FieldError[] {
  return errors.map((e) => (e.path === '/delta' && e.message === 'must NOT be valid' ? { path: e.path, message: 'must not be 0' } : e));
}

/**
 * POST /inventory/{sku}/adjust. An adjustment of a SKU never stocked is a 404 whatever the sign:
 * PUT stocks a SKU, so a mistyped SKU in a restock never creates stock orders could then take.
 */
export async function adjustStock(ctx: Context, deps: InventoryDeps): Promise<void> {
  const sku = skuOf(ctx);
  const idempotencyKey = idempotencyKeyOf(ctx.req.headers['idempotency-key']);
  const valid = validateAdjustment(await jsonBody(ctx));
  if (!valid.ok) {
    throw new HttpProblem(
      400,
      'Invalid Adjustment',
      'The body must be {"delta": N}, N a non-zero whole number from -1000000000 to 1000000000',
      { errors: adjustmentErrors(valid.errors) },
    );
  }
  const { delta } = valid.value;
  const result: AdjustResult = await store(
    () => adjustInventory(deps.redis, { sku, delta, idempotencyKey, token: randomUUID() }, deps.config.idempotencyTtlSeconds, new Date()),
    deps.log,
    'inventory adjustment',
  );
  switch (result.outcome) {
    case 'applied':
      deps.changed('adjust');
      deps.log.info({ sku, kind: 'adjust', delta, available: result.available, idempotencyKey, ...requester(ctx) }, 'inventory adjusted');
      ctx.body = { sku, available: result.available };
      return;
    case 'replayed':
      ctx.set('Idempotent-Replayed', 'true');
      ctx.body = { sku, available: result.available };
      return;
    case 'key_reused':
      throw new HttpProblem(
        422,
        'Idempotency Key Reused',
        `Idempotency-Key ${idempotencyKey ?? ''} was used for ${sku} with delta ${result.delta}, not ${delta}: nothing was applied`,
      );
    case 'insufficient':
      throw new HttpProblem(409, 'Insufficient Stock', `${sku} has ${result.available} in stock: a delta of ${delta} would go below 0`, {
        available: result.available,
      });
    case 'over_limit':
      throw new HttpProblem(
        409,
        'Stock Limit Exceeded',
        `${sku} has ${result.available} in stock: a delta of ${delta} would pass 1000000000`,
        { available: result.available },
      );
    case 'unknown_sku':
      throw new HttpProblem(404, 'SKU Not Found', `SKU ${sku} was never stocked: stock it with PUT /inventory/${sku} first`);
    case 'unreadable_level':
      throw unreadableLevel(deps.log, sku, result.raw);
    case 'unreadable_record':
      deps.log.error({ sku, key: keys.inventoryIdempotency(sku, idempotencyKey ?? '') }, 'idempotency record is unreadable; answering 500');
      throw new HttpProblem(500, 'Internal Server Error', `The idempotency record of this key on ${sku} is unreadable`);
  }
}

function queryErrors(ctx: Context): FieldError[] {
  return Object.keys(ctx.query)
    .filter((name) => name !== 'limit' && name !== 'cursor')
    .map((name) => ({ path: name, message: 'is not a parameter of GET /inventory' }));
}

function invalidQuery(errors: FieldError[]): HttpProblem {
  return new HttpProblem(400, 'Invalid Query', errors.map((e) => `${e.path} ${e.message}`).join('; '), { errors });
}

/** One query parameter given at most once, as text. */
function single(ctx: Context, name: string, errors: FieldError[]): string | undefined {
  const value = ctx.query[name];
  if (value === undefined || typeof value === 'string') return value;
  errors.push({ path: name, message: 'must be given once' });
  return undefined;
}

/** What the SCAN steps of one page have done so far: the slots asked for, the keys they gave. */
export interface ScanSoFar {
  steps: number;
  visited: number;
  matched: number;
}

/**
 * How many slots the next SCAN step visits. The first asks for what the page still lacks. Each
 * further one asks for at most twice as many again, so a sparse keyspace (mostly orders) moves on
 * quickly; and, once SKUs have turned up, for no more than the share of SKUs met so far says
 * should hold what is missing, so in a dense one the last step overshoots the limit by a few SKUs,
 * not by a doubled step's worth (over 60 servers, each with its own hash seed: 14 at most at
 * limit 100, where doubling alone gave up to 25). Capped: one step stays cheap for Redis.
 */
export function scanCount(missing: number, { steps, visited, matched }: ScanSoFar): number {
  const byShare = matched === 0 ? Infinity : Math.ceil((missing * visited) / matched);
  return Math.min(missing * 2 ** steps, byShare, MAX_SCAN_COUNT);
}
export const MAX_SCAN_COUNT = 1000;

/**
 * GET /inventory: SCAN steps from the cursor until the page holds `limit` SKUs, the cursor is back
 * at 0, or MAX_SCAN_STEPS were made. Every key of the last step is kept: a SCAN step cannot be cut
 * without losing keys, so a page may hold a few more than `limit` (and fewer, even none, when the
 * step budget ran out first). Every SKU present for the whole paging is listed at least once.
 */
export async function listInventory(ctx: Context, deps: InventoryDeps): Promise<void> {
  const errors = queryErrors(ctx);
  const limitText = single(ctx, 'limit', errors);
  const cursorText = single(ctx, 'cursor', errors);
  let limit = DEFAULT_PAGE_LIMIT;
  if (limitText !== undefined) {
    const n = /^\d{1,4}$/.test(limitText) ? Number(limitText) : NaN;
    if (!validateLimit(n).ok) errors.push({ path: 'limit', message: 'must be a whole number from 1 to 100' });
    else limit = n;
  }
  // SCAN cursors are unsigned 64-bit: a longer one would be refused by Redis (a 500), not by us.
  if (cursorText !== undefined && (!validateCursor(cursorText).ok || BigInt(cursorText) > 2n ** 64n - 1n)) {
    errors.push({ path: 'cursor', message: 'must be a `next` of an earlier page, as it was' });
  }
  if (errors.length > 0) throw invalidQuery(errors);

  const found = new Set<string>();
  let cursor = cursorText ?? '0';
  const sofar: ScanSoFar = { steps: 0, visited: 0, matched: 0 };
  do {
    const from = cursor;
    const count = scanCount(limit - found.size, sofar);
    const [next, batch] = await store(
      () => deps.redis.scan(from, 'MATCH', keys.inventoryPattern, 'COUNT', count),
      deps.log,
      'inventory scan',
    );
    cursor = next;
    sofar.steps += 1;
    sofar.visited += count;
    sofar.matched += batch.length;
    for (const key of batch) found.add(key);
  } while (cursor !== '0' && found.size < limit && sofar.steps < MAX_SCAN_STEPS);

  const names = [...found];
  const values = names.length === 0 ? [] : await store(() => deps.redis.mget(names), deps.log, 'inventory read');
  const items: { sku: string; available: number }[] = [];
  names.forEach((key, i) => {
    const sku = key.slice(keys.inventoryPrefix.length);
    const raw = values[i];
    // Gone since the SCAN (null), or not a level the API can show: left out, and said so.
    if (raw === null || raw === undefined) return;
    if (!ID_REGEX.test(sku) || !LEVEL_REGEX.test(raw)) {
      deps.log.warn({ key, raw: raw.slice(0, 80) }, 'inventory key is not a SKU with a whole-number level; left out of the list');
      return;
    }
    items.push({ sku, available: Number(raw) });
  });
  ctx.body = { items, next: cursor === '0' ? null : cursor };
}
