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
  /** OTLP/HTTP endpoint (base URL) to export trace spans to; unset: spans are not exported. */
  otlpEndpoint?: string;
  logLevel: LogLevel;
  ports: { gateway: number; dashboard: number; processor: number; notifier: number };
  /** Port of the HTTP server of this service. */
  port: number;

  // Many instances and overload (docs/running-many.md).
  /** RABBITMQ_NODE_ORDER: each connection walks RABBITMQ_URLS in its own random order, or as listed. */
  rabbitmqNodeOrder: 'random' | 'listed';
  /**
   * MAX_BACKLOG: the gateway refuses new orders (503) while orders.queue holds this many messages
   * or more, whatever the measured drain rate says.
   */
  maxBacklog: number;
}

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

function url(name: string, v: string, protocols: string[]): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ConfigError(name, `is not a URL: "${v}"`);
  }
  if (!protocols.includes(u.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${u.protocol}" in "${v}"`);
  }
  if (!u.hostname) throw new ConfigError(name, `has no host: "${v}"`);
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
    ...(webhook ? { notifyWebhookUrl: url('NOTIFY_WEBHOOK_URL', webhook, ['http:', 'https:']) } : {}),
    ...(otlp ? { otlpEndpoint: url('OTEL_EXPORTER_OTLP_ENDPOINT', otlp, ['http:', 'https:']) } : {}),
    rabbitmqNodeOrder,
    maxBacklog,
  };
  return deepFreeze(config);
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
