import { existsSync } from 'node:fs';
// Configuration comes from the environment only, is validated once at start and then frozen.
// A bad value stops the service with one line naming the variable (see configOrExit).

export type ServiceName = 'api-gateway' | 'order-processor' | 'notifier' | 'dashboard';
export type QueueType = 'quorum' | 'classic';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface RedisConfig {
  url: string;
  /** When set, Sentinel is used instead of `url`. */
  sentinels?: { host: string; port: number }[];
  sentinelName?: string;
  /**
   * REDIS_MIN_REPLICAS: after every script whose result a client or the broker is told about,
   * WAIT until this many replicas hold it (0: no WAIT). Default 1 with Sentinel, 0 standalone.
   */
  minReplicas?: number;
  /** REDIS_WAIT_TIMEOUT_MS: how long that WAIT may take before the write counts as unconfirmed. */
  waitTimeoutMs?: number;
  /**
   * REDIS_TLS_CA: a CA certificate file (PEM) to trust beside the system's, for a rediss:// URL
   * or, with Sentinel, for the Sentinels and the data nodes (setting it turns TLS on there).
   */
  tlsCa?: string;
}

export interface Config {
  service: ServiceName;
  production: boolean;
  redis: RedisConfig;
  rabbitmqUrls: string[];
  queueType: QueueType;
  publishTimeoutMs: number;
  idempotencyTtlSeconds: number;
  prefetch: number;
  /** How long an order may wait in orders.queue before the processor expires it instead. */
  orderTtlMs: number;
  /**
   * ORDER_RETENTION_DAYS: an order, its history and its notification records expire this many days
   * after its acceptance, whatever its status; its index entries are pruned then.
   */
  orderRetentionDays: number;
  notifyWebhookUrl?: string;
  // The notifier's webhook delivery (docs/webhooks.md).
  /**
   * NOTIFY_WEBHOOK_SECRET: the Standard Webhooks signing secrets (`whsec_<base64>`, the key at
   * least 24 bytes), the first the current one; each request carries one signature per secret.
   * Empty: requests go unsigned (refused in production when NOTIFY_WEBHOOK_URL is set).
   */
  notifyWebhookSecrets: string[];
  /** NOTIFY_RETRY_SCHEDULE: the delay before each attempt in ms; the first is 0 (at once). */
  notifyRetryScheduleMs: number[];
  /** NOTIFY_BREAKER_THRESHOLD: consecutive failed deliveries that open the endpoint's circuit. */
  notifyBreakerThreshold: number;
  /** NOTIFY_BREAKER_COOLDOWN: how long an open circuit pauses deliveries before a probe, in ms. */
  notifyBreakerCooldownMs: number;
  /** OTLP/HTTP endpoint (base URL) to export trace spans to; unset: spans are not exported. */
  otlpEndpoint?: string;
  logLevel: LogLevel;
  ports: { gateway: number; dashboard: number; processor: number; notifier: number };
  /** Port of the HTTP server of this service. */
  port: number;
  // --- Security (docs/security.md) ---
  /** Bearer-token checks on the gateway and the dashboard; undefined: off (anyone may call). */
  auth?: AuthConfig;
  /** METRICS_BEARER_TOKEN: when set, GET /metrics of every service wants `Authorization: Bearer <it>`. */
  metricsBearerToken?: string;
  /** RATE_LIMIT_PER_MINUTE: requests per caller per minute on the gateway's API; undefined: no limit. */
  rateLimitPerMinute?: number;
  /** RABBITMQ_TLS_CA: a CA certificate file (PEM) to trust for amqps:// URLs, beside the system's. */
  rabbitmqTlsCa?: string;

  // Many instances and overload (docs/running-many.md).
  /** RABBITMQ_NODE_ORDER: each connection walks RABBITMQ_URLS in its own random order, or as listed. */
  rabbitmqNodeOrder: 'random' | 'listed';
  /**
   * MAX_BACKLOG: the gateway refuses new orders (503) while orders.queue holds this many messages
   * or more, whatever the measured drain rate says.
   */
  maxBacklog: number;
}

/** How bearer tokens are verified: an HS256 shared secret or a JWKS URL (RS256, ES256). */
export type AuthConfig = ({ kind: 'secret'; secret: string } | { kind: 'jwks'; jwksUrl: string }) & {
  issuer?: string;
  audience?: string;
};

export const DEFAULT_ORDER_RETENTION_DAYS = 30;

/** The retention of orders in ms, as the scripts take it. */
export function orderRetentionMs(config: Pick<Config, 'orderRetentionDays'>): number {
  return config.orderRetentionDays * 86_400_000;
}

/** The retention the script wrappers use when a caller gives none (the default ORDER_RETENTION_DAYS). */
export const DEFAULT_ORDER_RETENTION_MS = DEFAULT_ORDER_RETENTION_DAYS * 86_400_000;

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

// Local-development defaults. In production (NODE_ENV=production) the connection strings carry
// credentials, so they have no default there and must be given.
const DEV_REDIS_URL = 'redis://127.0.0.1:6379';
const DEV_RABBITMQ_URLS = 'amqp://guest:guest@127.0.0.1:5672';

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const v = raw(env, name);
  if (v === undefined) return def;
  if (!/^\d+$/.test(v)) throw new ConfigError(name, `must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** A URL as an error message may show it: the password (user:password@) masked, parsable or not. */
export function maskPassword(v: string): string {
  return v.replace(/\/\/([^:/@\s]*):[^@\s]*@/g, '//$1:***@');
}

function url(name: string, v: string, protocols: string[]): string {
  let u: URL;
  // The message goes to stderr and the logs: never the password in it.
  const shown = maskPassword(v);
  try {
    u = new URL(v);
  } catch {
    throw new ConfigError(name, `is not a URL: "${shown}"`);
  }
  if (!protocols.includes(u.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${u.protocol}" in "${shown}"`);
  }
  if (!u.hostname) throw new ConfigError(name, `has no host: "${shown}"`);
  return v;
}

function secretful(env: Env, name: string, dev: string, production: boolean): string {
  const v = raw(env, name);
  if (v !== undefined) return v;
  if (production) throw new ConfigError(name, 'is required when NODE_ENV=production (no default outside local development)');
  return dev;
}

function hostPorts(name: string, v: string): { host: string; port: number }[] {
  return v.split(',').map((part) => {
    const m = /^\s*([^:\s]+):(\d{1,5})\s*$/.exec(part);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) throw new ConfigError(name, `must be host:port[,host:port...], got "${part.trim()}"`);
    return { host: m[1] as string, port };
  });
}

/**
 * The broker part of the configuration (RABBITMQ_URLS, QUEUE_TYPE), for tools that need only the
 * broker (the dead-letter CLI); loadConfig reads it the same way.
 */
export function brokerConfig(env: Env = process.env): { rabbitmqUrls: string[]; queueType: QueueType } {
  const production = env.NODE_ENV === 'production';
  const rabbitmqUrls = secretful(env, 'RABBITMQ_URLS', DEV_RABBITMQ_URLS, production)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => url('RABBITMQ_URLS', s, ['amqp:', 'amqps:']));
  if (rabbitmqUrls.length === 0) throw new ConfigError('RABBITMQ_URLS', 'lists no broker URL');

  const queueType = raw(env, 'QUEUE_TYPE') ?? 'quorum';
  if (queueType !== 'quorum' && queueType !== 'classic') {
    throw new ConfigError('QUEUE_TYPE', `must be "quorum" or "classic", got "${queueType}"`);
  }
  return { rabbitmqUrls, queueType };
}

export function loadConfig(service: ServiceName, env: Env = process.env): Config {
  const production = env.NODE_ENV === 'production';

  const sentinelsRaw = raw(env, 'REDIS_SENTINELS');
  const sentinelName = raw(env, 'REDIS_SENTINEL_NAME');
  const redis: RedisConfig = {
    url: url(
      'REDIS_URL',
      sentinelsRaw ? (raw(env, 'REDIS_URL') ?? DEV_REDIS_URL) : secretful(env, 'REDIS_URL', DEV_REDIS_URL, production),
      ['redis:', 'rediss:'],
    ),
  };
  if (sentinelsRaw) {
    if (!sentinelName) throw new ConfigError('REDIS_SENTINEL_NAME', 'is required when REDIS_SENTINELS is set');
    redis.sentinels = hostPorts('REDIS_SENTINELS', sentinelsRaw);
    redis.sentinelName = sentinelName;
  } else if (sentinelName) {
    throw new ConfigError('REDIS_SENTINELS', 'is required when REDIS_SENTINEL_NAME is set');
  }
  // Redis high availability (docs/high-availability.md): replication confirmed by WAIT. A
  // standalone server has no replica to wait for, so WAIT is off there unless asked for.
  redis.minReplicas = int(env, 'REDIS_MIN_REPLICAS', sentinelsRaw ? 1 : 0, 0, 16);
  // Never 0: WAIT with a timeout of 0 blocks until enough replicas answer, however long.
  redis.waitTimeoutMs = int(env, 'REDIS_WAIT_TIMEOUT_MS', 500, 1, 60_000);

  const { rabbitmqUrls, queueType } = brokerConfig(env);

  const logLevel = (raw(env, 'LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }

  const webhook = raw(env, 'NOTIFY_WEBHOOK_URL');
  const otlp = raw(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const ports = {
    gateway: int(env, 'GATEWAY_PORT', 8080, 0, 65535),
    dashboard: int(env, 'DASHBOARD_PORT', 8081, 0, 65535),
    processor: int(env, 'PROCESSOR_PORT', 8082, 0, 65535),
    notifier: int(env, 'NOTIFIER_PORT', 8083, 0, 65535),
  };
  const port = {
    'api-gateway': ports.gateway,
    dashboard: ports.dashboard,
    'order-processor': ports.processor,
    notifier: ports.notifier,
  }[service];

  const notifyWebhookUrl = webhook ? url('NOTIFY_WEBHOOK_URL', webhook, ['http:', 'https:']) : undefined;
  const breakerCooldown = raw(env, 'NOTIFY_BREAKER_COOLDOWN');
  const security = securityConfig(env, production, redis.url, rabbitmqUrls);
  const redisTlsCa = caFile(env, 'REDIS_TLS_CA');
  if (redisTlsCa) redis.tlsCa = redisTlsCa;
  // Many instances and overload (docs/running-many.md).
  const rabbitmqNodeOrder = raw(env, 'RABBITMQ_NODE_ORDER') ?? 'random';
  if (rabbitmqNodeOrder !== 'random' && rabbitmqNodeOrder !== 'listed') {
    throw new ConfigError('RABBITMQ_NODE_ORDER', `must be "random" or "listed", got "${rabbitmqNodeOrder}"`);
  }
  const maxBacklog = int(env, 'MAX_BACKLOG', 100_000, 1, 100_000_000);

  const config: Config = {
    service,
    production,
    redis,
    rabbitmqUrls,
    queueType,
    publishTimeoutMs: int(env, 'PUBLISH_TIMEOUT_MS', 2000, 50, 60_000),
    idempotencyTtlSeconds: int(env, 'IDEMPOTENCY_TTL_SECONDS', 86_400, 60, 30 * 86_400),
    prefetch: int(env, 'PREFETCH', 100, 1, 65_535),
    orderTtlMs: int(env, 'ORDER_TTL_MS', 900_000, 100, 7 * 86_400_000),
    orderRetentionDays: int(env, 'ORDER_RETENTION_DAYS', DEFAULT_ORDER_RETENTION_DAYS, 1, 3650),
    logLevel: logLevel as LogLevel,
    ports,
    port,
    ...(notifyWebhookUrl ? { notifyWebhookUrl } : {}),
    notifyWebhookSecrets: webhookSecrets(env, production, notifyWebhookUrl),
    notifyRetryScheduleMs: retrySchedule(env),
    notifyBreakerThreshold: int(env, 'NOTIFY_BREAKER_THRESHOLD', 5, 1, 1000),
    notifyBreakerCooldownMs: breakerCooldown === undefined ? 30_000 : Math.max(1, duration('NOTIFY_BREAKER_COOLDOWN', breakerCooldown)),
    ...(otlp ? { otlpEndpoint: url('OTEL_EXPORTER_OTLP_ENDPOINT', otlp, ['http:', 'https:']) } : {}),
    ...security,
    rabbitmqNodeOrder,
    maxBacklog,
  };
  return deepFreeze(config);
}

// --- The notifier's webhook delivery: NOTIFY_WEBHOOK_SECRET, NOTIFY_RETRY_SCHEDULE, NOTIFY_BREAKER_* ---

export const DEFAULT_RETRY_SCHEDULE = '0,5s,5m,30m,2h,5h,10h';
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** The longest delay a schedule entry may have: a day (RabbitMQ takes TTLs far longer, a schedule should not). */
const MAX_DELAY_MS = 86_400_000;

/** A duration with its unit, `250ms`, `5s`, `5m`, `2h` (a bare `0` too), in ms; NaN when malformed. */
export function parseDuration(v: string): number {
  if (v === '0') return 0;
  const m = /^(\d{1,9})(ms|s|m|h)$/.exec(v);
  return m ? Number(m[1]) * (DURATION_UNITS[m[2] as string] as number) : NaN;
}

function duration(name: string, v: string): number {
  const ms = parseDuration(v);
  if (Number.isNaN(ms)) throw new ConfigError(name, `"${v}" is not a duration: a whole number with a unit (ms, s, m or h), e.g. 5s`);
  if (ms > MAX_DELAY_MS) throw new ConfigError(name, `"${v}" is longer than 24h`);
  return ms;
}

function retrySchedule(env: Env): number[] {
  const name = 'NOTIFY_RETRY_SCHEDULE';
  const parts = (raw(env, name) ?? DEFAULT_RETRY_SCHEDULE).split(',').map((p) => p.trim());
  const ms = parts.map((p) => duration(name, p));
  if (ms.length > 50) throw new ConfigError(name, `lists ${ms.length} attempts; at most 50`);
  // The first attempt is the delivery itself, made as the event arrives.
  if (ms[0] !== 0) throw new ConfigError(name, `must start with 0 (the first attempt is made at once), got "${parts[0]}"`);
  return ms;
}

/** The key a `whsec_` secret stands for; throws ConfigError naming the variable when malformed. */
export function webhookSecretKey(secret: string, name = 'NOTIFY_WEBHOOK_SECRET'): Buffer {
  if (!secret.startsWith('whsec_')) throw new ConfigError(name, 'each secret must be "whsec_" followed by base64');
  const b64 = secret.slice('whsec_'.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0)
    throw new ConfigError(name, 'a secret is not valid base64 after "whsec_"');
  const key = Buffer.from(b64, 'base64');
  if (key.length < 24 || key.length > 64) throw new ConfigError(name, `a secret's key must be 24 to 64 bytes, got ${key.length}`);
  return key;
}

function webhookSecrets(env: Env, production: boolean, webhookUrl: string | undefined): string[] {
  const name = 'NOTIFY_WEBHOOK_SECRET';
  const secrets = (raw(env, name) ?? '').split(/[\s,]+/).filter((s) => s !== '');
  for (const s of secrets) webhookSecretKey(s, name);
  if (secrets.length === 0 && production && webhookUrl) {
    throw new ConfigError(name, 'is required when NODE_ENV=production and NOTIFY_WEBHOOK_URL is set (receivers verify the signature)');
  }
  return secrets;
}

// --- Security (docs/security.md): auth, the metrics token, the rate limit, TLS, production credentials ---

/**
 * Passwords the servers ship with (RabbitMQ's guest/guest; the local-development URLs above use
 * it): never accepted in production, under any user name.
 */
const DEFAULT_PASSWORDS = new Set(['guest']);

/** In production: no `guest` user and no default password in a connection URL. */
function productionCredentials(name: string, v: string): void {
  const u = new URL(v);
  const user = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  if (user === 'guest') throw new ConfigError(name, 'must not use the "guest" user when NODE_ENV=production');
  if (password !== '' && DEFAULT_PASSWORDS.has(password.toLowerCase())) {
    throw new ConfigError(name, 'carries a default password; give a real one when NODE_ENV=production');
  }
}

function securityConfig(
  env: Env,
  production: boolean,
  redisUrl: string,
  rabbitmqUrls: string[],
): Pick<Config, 'auth' | 'metricsBearerToken' | 'rateLimitPerMinute' | 'rabbitmqTlsCa'> {
  if (production) {
    productionCredentials('REDIS_URL', redisUrl);
    for (const u of rabbitmqUrls) productionCredentials('RABBITMQ_URLS', u);
  }
  // Not trimmed: a secret is its bytes.
  const secret = env.AUTH_JWT_SECRET ? env.AUTH_JWT_SECRET : undefined;
  const jwks = raw(env, 'AUTH_JWKS_URL');
  const issuer = raw(env, 'AUTH_JWT_ISSUER');
  const audience = raw(env, 'AUTH_JWT_AUDIENCE');
  let auth: AuthConfig | undefined;
  if (secret !== undefined && jwks !== undefined) {
    throw new ConfigError('AUTH_JWKS_URL', 'and AUTH_JWT_SECRET are both set: give one of them');
  }
  const claims = { ...(issuer ? { issuer } : {}), ...(audience ? { audience } : {}) };
  if (secret !== undefined) {
    // HS256 wants a key at least as long as the hash (RFC 7518 section 3.2).
    if (Buffer.byteLength(secret) < 32) throw new ConfigError('AUTH_JWT_SECRET', 'must be at least 32 bytes (HS256)');
    auth = { kind: 'secret', secret, ...claims };
  } else if (jwks !== undefined) {
    // A JWKS serves whoever its provider signs for: without iss or aud, a token minted for another
    // application of the same provider would pass.
    if (!issuer && !audience) throw new ConfigError('AUTH_JWT_ISSUER', 'or AUTH_JWT_AUDIENCE is required with AUTH_JWKS_URL');
    auth = { kind: 'jwks', jwksUrl: url('AUTH_JWKS_URL', jwks, ['https:', 'http:']), ...claims };
  } else if (issuer || audience) {
    throw new ConfigError(issuer ? 'AUTH_JWT_ISSUER' : 'AUTH_JWT_AUDIENCE', 'needs AUTH_JWT_SECRET or AUTH_JWKS_URL');
  }
  const metricsBearerToken = raw(env, 'METRICS_BEARER_TOKEN');
  const rate = raw(env, 'RATE_LIMIT_PER_MINUTE');
  const rabbitmqTlsCa = caFile(env, 'RABBITMQ_TLS_CA');
  return {
    ...(auth ? { auth } : {}),
    ...(metricsBearerToken ? { metricsBearerToken } : {}),
    ...(rate === undefined || rate === '0' ? {} : { rateLimitPerMinute: int(env, 'RATE_LIMIT_PER_MINUTE', 0, 1, 1_000_000) }),
    ...(rabbitmqTlsCa ? { rabbitmqTlsCa } : {}),
  };
}

/** A CA file for REDIS_TLS_CA / RABBITMQ_TLS_CA: it must exist, so a typo fails at start, not at connect. */
function caFile(env: Env, name: string): string | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  if (!existsSync(v)) throw new ConfigError(name, `names no file: "${v}"`);
  return v;
}

/** loadConfig for a composition root: on a bad value, print one line and exit(1). */
export function configOrExit(service: ServiceName, env: Env = process.env): Config {
  try {
    return loadConfig(service, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: invalid configuration: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
