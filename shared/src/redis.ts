import { readFileSync, readdirSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisConfig } from './config.js';
import type { Logger } from './logger.js';

// Lua scripts live in ../lua as files named <command>-<number of KEYS>.lua, or <command>-n.lua for
// a script that takes any number of keys (the caller passes the count first, as ioredis expects
// when numberOfKeys is left out); the same relative path works from src/ (tests) and dist/.
const LUA_DIR = new URL('../lua/', import.meta.url);

export interface LuaScript {
  name: string;
  /** undefined: the script takes any number of keys, and each call passes the count first. */
  numberOfKeys: number | undefined;
  lua: string;
}

export function loadLuaScripts(): LuaScript[] {
  return readdirSync(LUA_DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const m = /^(.+)-(\d+|n)\.lua$/.exec(file);
      if (!m) throw new Error(`Lua file name must be <name>-<number of keys, or n>.lua: ${file}`);
      const name = (m[1] as string).replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
      return { name, numberOfKeys: m[2] === 'n' ? undefined : Number(m[2]), lua: readFileSync(new URL(file, LUA_DIR), 'utf8') };
    });
}

type Arg = string | number;

/** One claim's answer: claimed; replay this response; other payload; in flight for this many ms; unreadable record. */
export type ClaimReply = [0] | [1, string] | [2] | [3, number] | [4];
type Reply<T> = Promise<T>;

/** The commands defined from ../lua; see each file's header for KEYS, ARGV and replies. */
export interface ScriptCommands {
  /** Any number of claims; call it through claimOrders (idempotency.ts), which lays out the arguments. */
  claim(numberOfKeys: number, ...keysThenArgs: Arg[]): Reply<ClaimReply[]>;
  /** Any number of acceptances; call it through acceptOrders (idempotency.ts). */
  accept(numberOfKeys: number, ...keysThenArgs: Arg[]): Reply<(0 | 1)[]>;
  release(idemp: string, token: string): Reply<0 | 1>;
  reserve(
    order: string,
    inventory: string,
    processed: string,
    rejected: string,
    id: string,
    sku: string,
    qty: number,
    email: string,
    now: string,
  ): Reply<[0 | 1, string, string]>;
  expire(order: string, id: string, sku: string, qty: number, email: string, now: string): Reply<[0 | 1, string, string]>;
  notifyClaim(notification: string, failed: string, token: string, leaseMs: Arg, channel: string): Reply<[0 | 1 | 2, number]>;
  notifySent(notification: string, sent: string, sentAt: string): Reply<0 | 1>;
  notifyFail(notification: string, failed: string, token: string, error: string, last: '0' | '1'): Reply<0 | 1>;
}

export type RedisClient = Redis & ScriptCommands;

export interface RedisClientOptions {
  log?: Logger;
  /** Extra ioredis options (tests use them to shorten timeouts). */
  overrides?: RedisOptions;
}

export function createRedis(cfg: RedisConfig, { log, overrides }: RedisClientOptions = {}): RedisClient {
  const common: RedisOptions = {
    // Fail fast while disconnected instead of queueing without bound: the gateway answers 503,
    // consumers retry the message later.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 3000,
    connectTimeout: 3000,
    // Batches concurrent commands into one write: many requests in flight share round trips.
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    // After a Sentinel failover the old master turns replica; reconnect to find the new one.
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
    ...overrides,
  };
  const redis = cfg.sentinels
    ? new Redis({ ...common, sentinels: cfg.sentinels, name: cfg.sentinelName ?? 'mymaster' })
    : new Redis(cfg.url, common);
  for (const s of loadLuaScripts())
    redis.defineCommand(s.name, s.numberOfKeys === undefined ? { lua: s.lua } : { numberOfKeys: s.numberOfKeys, lua: s.lua });
  if (log) {
    let up = false;
    redis.on('ready', () => {
      up = true;
      log.info('redis connected');
    });
    redis.on('error', (err: Error) => {
      if (up) log.warn({ err: err.message }, 'redis error');
    });
    redis.on('end', () => log.warn('redis connection ended'));
    redis.on('close', () => {
      if (up) log.warn('redis disconnected; reconnecting');
      up = false;
    });
  }
  return redis as RedisClient;
}

/** Resolves once Redis is ready (or rejects after timeoutMs). */
export function redisReady(redis: Redis, timeoutMs = 30_000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}
