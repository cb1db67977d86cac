import { readFileSync, readdirSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisConfig } from './config.js';
import type { Logger } from './logger.js';
import { setReplicationPolicy } from './scripts/replication.js';

// Lua scripts live in ../lua as files named <command>-<number of KEYS>.lua, or <command>-n.lua for
// a script that takes any number of keys (the caller passes the count first, as ioredis expects
// when numberOfKeys is left out); the same relative path works from src/ (tests) and dist/. A
// command replaces an ioredis method of the same name, so no file may be named after a Redis
// command (the expiry script is expire-order-<n>.lua, not expire-<n>.lua, which hid EXPIRE).
const LUA_DIR = new URL('../lua/', import.meta.url);

export interface LuaScript {
  name: string;
  /** undefined: the script takes any number of keys, and each call passes the count first. */
  numberOfKeys: number | undefined;
  lua: string;
}

/**
 * A script's header line `-- uses lib/<name>.lua` names code it shares with other scripts (Redis
 * scripts cannot load code): the library's text is put before the script's, once per library.
 */
const USES = /^-- uses (lib\/[a-z-]+\.lua)$/gm;

function withLibraries(file: string, lua: string): string {
  const libs = [...new Set([...lua.matchAll(USES)].map((m) => m[1] as string))];
  if (libs.length === 0) return lua;
  const texts = libs.map((lib) => readFileSync(new URL(lib, LUA_DIR), 'utf8'));
  if (libs.includes('lib/order.lua') && skipHistoryIndex()) texts.push(NO_HISTORY_INDEX);
  return [...texts, `-- ${file}`, lua].join('\n');
}

/**
 * Benchmark only (`npm run bench` prices the history and the indexes with it): with
 * BENCH_SKIP_HISTORY_INDEX=1, lib/order.lua's history and index writes become no-ops in every
 * script that uses it (the decisions, counters and status fields stay). Orders then have no
 * history and are missing from the indexes, so it is refused under NODE_ENV=production.
 * accept-n.lua writes its own entries, and skips them when lib/order.lua's HISTORY_INDEX is false.
 */
function skipHistoryIndex(): boolean {
  if (process.env.BENCH_SKIP_HISTORY_INDEX !== '1') return false;
  if (process.env.NODE_ENV === 'production')
    throw new Error('BENCH_SKIP_HISTORY_INDEX is for the benchmark only; refused when NODE_ENV=production');
  return true;
}

// Later locals of the same name shadow the library's for the script that follows.
const NO_HISTORY_INDEX = `-- BENCH_SKIP_HISTORY_INDEX=1 (benchmark only): no history, no index
local HISTORY_INDEX = false
local function history_push() end
local function order_change(_, _, _, _, _, now_ms) return now_ms end
local function move_to() end
local function notice_change() end`;

export function loadLuaScripts(): LuaScript[] {
  return readdirSync(LUA_DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const m = /^(.+)-(\d+|n)\.lua$/.exec(file);
      if (!m) throw new Error(`Lua file name must be <name>-<number of keys, or n>.lua: ${file}`);
      const name = (m[1] as string).replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
      const lua = withLibraries(file, readFileSync(new URL(file, LUA_DIR), 'utf8'));
      return { name, numberOfKeys: m[2] === 'n' ? undefined : Number(m[2]), lua };
    });
}

/**
 * A client made by createRedis. It carries one command per Lua file, but nothing calls those
 * directly: each has a typed wrapper in ./scripts/ that lays out its KEYS and ARGV and checks its
 * reply (claimOrders, acceptOrders, releaseClaim, reserveOrder, expireOrder, cancelOrder,
 * recordCancelRequest, claimNotification, recordNotificationSent, recordNotificationFailed,
 * adjustInventory).
 */
export type RedisClient = Redis;

export interface RedisClientOptions {
  log?: Logger;
  /**
   * ioredis auto-pipelining (default on): the commands of one event-loop turn go in one write.
   * It pays where many callers each send their own command (a consumer's deliveries in flight);
   * a client whose callers are already batched (the gateway's createBatcher) pays only its cost:
   * ioredis builds a Pipeline per turn, copying every defined script onto it.
   */
  autoPipelining?: boolean;
  /** Extra ioredis options (tests use them to shorten timeouts). */
  overrides?: RedisOptions;
}

/**
 * The TLS options of a client. Standalone: a rediss:// URL turns TLS on by itself, and
 * REDIS_TLS_CA adds the CA the server's certificate is checked against (ioredis's `tls` option
 * also turns TLS on for a redis:// URL). With Sentinel the URL names no server, so TLS is on when
 * REDIS_URL is rediss:// or REDIS_TLS_CA is set, and then for every connection: the Sentinels
 * (`sentinelTLS`) and the primary they name (`tls`, which ioredis applies in Sentinel mode only
 * with `enableTLSForSentinelMode`), one CA for both (docs/security.md).
 */
export function redisTlsOptions(cfg: RedisConfig): Pick<RedisOptions, 'tls' | 'sentinelTLS' | 'enableTLSForSentinelMode'> {
  const ca = cfg.tlsCa ? { ca: readFileSync(cfg.tlsCa) } : undefined;
  if (!cfg.sentinels) return ca ? { tls: ca } : {};
  if (!ca && !cfg.url.startsWith('rediss:')) return {};
  const tls = ca ?? {};
  return { tls, sentinelTLS: tls, enableTLSForSentinelMode: true };
}

export function createRedis(cfg: RedisConfig, { log, autoPipelining = true, overrides }: RedisClientOptions = {}): RedisClient {
  const common: RedisOptions = {
    // Fail fast while disconnected instead of queueing without bound: the gateway answers 503,
    // consumers retry the message later.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 3000,
    connectTimeout: 3000,
    // Batches concurrent commands into one write: many requests in flight share round trips.
    enableAutoPipelining: autoPipelining,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    // After a Sentinel failover the old master turns replica: a write there answers READONLY.
    // Reconnecting asks the Sentinels again for the master. The failed command is not resent
    // (1, not 2): its caller treats it as an outage and retries, and a resend on the new
    // connection could not be confirmed by a WAIT anyway (see scripts/replication.ts).
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
    ...redisTlsOptions(cfg),
    ...overrides,
  };
  const redis = cfg.sentinels
    ? new Redis({
        ...common,
        sentinels: cfg.sentinels,
        name: cfg.sentinelName ?? 'mymaster',
        role: 'master',
        // Subscribes to +switch-master on the Sentinels and reconnects at once, instead of waiting
        // for the old master to drop the connection (a stalled master never does).
        failoverDetector: true,
        // Keep asking the Sentinels during a long outage (ioredis gives up when this returns null).
        sentinelRetryStrategy: (times) => Math.min(100 * times, 2000),
        ...overrides,
      })
    : new Redis(cfg.url, common);
  setReplicationPolicy(redis, { minReplicas: cfg.minReplicas ?? 0, timeoutMs: cfg.waitTimeoutMs ?? 500 });
  reconnectAfterUnaskedEnd(redis, log);
  for (const s of loadLuaScripts()) {
    if (s.name in redis) throw new Error(`Lua script ${s.name} would replace the ioredis method of that name; rename its file`);
    redis.defineCommand(s.name, s.numberOfKeys === undefined ? { lua: s.lua } : { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
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
  return redis;
}

/** How long a client that ended without being asked to waits before it connects again. */
const REVIVE_DELAY_MS = 200;

/**
 * Keeps a client connecting until it is closed on purpose (quit() or disconnect()). ioredis ends a
 * client for good (status 'end', every command then fails with "Connection is closed.") when its
 * connect is aborted while under way; with Sentinel that happens in a failover: the client is
 * asking a Sentinel for the primary when the failover detector sees +switch-master and aborts the
 * connect. Nothing reconnects it then, and a consumer would hold its deliveries forever. Measured
 * 2026-12-02: 9 of 20 clients ended so in one primary kill (shared/test/redis-revive.test.ts).
 */
export function reconnectAfterUnaskedEnd(redis: Redis, log?: Logger): void {
  let asked = false;
  const disconnect = redis.disconnect.bind(redis);
  redis.disconnect = (reconnect = false) => {
    // ioredis itself calls disconnect(true) to reconnect (reconnectOnError): not a close.
    if (!reconnect) asked = true;
    disconnect(reconnect);
  };
  const quit = redis.quit.bind(redis) as (...args: unknown[]) => Promise<'OK'>;
  Object.assign(redis, {
    quit: (...args: unknown[]) => {
      asked = true;
      return quit(...args);
    },
  });
  redis.on('end', () => {
    if (asked) return;
    log?.warn('redis client ended without being closed; connecting again');
    setTimeout(() => {
      if (!asked && redis.status === 'end') redis.connect().catch(() => undefined);
    }, REVIVE_DELAY_MS).unref();
  });
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
