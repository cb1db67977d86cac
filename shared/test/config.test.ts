// loadConfig is the only reader of the environment: these pin the defaults of the spec's table
// and the promise that a bad value stops the service with a message naming the variable.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, brokerConfig, configOrExit, loadConfig, type Config } from '@order-pipeline/shared';

/** The ConfigError loadConfig throws for `env`, or fails the test when it throws none. */
function configError(env: Record<string, string>, service: Config['service'] = 'api-gateway'): ConfigError {
  try {
    loadConfig(service, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig defaults', () => {
  it('match the spec table when nothing is set', () => {
    const c = loadConfig('api-gateway', {});
    expect(c).toMatchObject({
      service: 'api-gateway',
      production: false,
      redis: { url: 'redis://127.0.0.1:6379' },
      rabbitmqUrls: ['amqp://guest:guest@127.0.0.1:5672'],
      queueType: 'quorum',
      publishTimeoutMs: 2000,
      idempotencyTtlSeconds: 86_400,
      prefetch: 100,
      orderTtlMs: 900_000,
      orderRetentionDays: 30,
      logLevel: 'info',
      ports: { gateway: 8080, dashboard: 8081, processor: 8082, notifier: 8083 },
      port: 8080,
    });
    expect(c.notifyWebhookUrl).toBeUndefined();
    expect(c.otlpEndpoint).toBeUndefined();
    expect(c.redis.sentinels).toBeUndefined();
    expect(c.redis.sentinelName).toBeUndefined();
  });

  it('give each service its own port', () => {
    expect(loadConfig('api-gateway', {}).port).toBe(8080);
    expect(loadConfig('dashboard', {}).port).toBe(8081);
    expect(loadConfig('order-processor', {}).port).toBe(8082);
    expect(loadConfig('notifier', {}).port).toBe(8083);
    expect(loadConfig('notifier', { NOTIFIER_PORT: '0' }).port).toBe(0);
  });

  it('treat an empty or blank value as unset', () => {
    const c = loadConfig('order-processor', { PREFETCH: '', QUEUE_TYPE: '  ', NOTIFY_WEBHOOK_URL: '' });
    expect(c.prefetch).toBe(100);
    expect(c.queueType).toBe('quorum');
    expect(c.notifyWebhookUrl).toBeUndefined();
  });
});

describe('loadConfig with values set', () => {
  it('reads every variable', () => {
    const c = loadConfig('notifier', {
      REDIS_URL: 'redis://cache:6380/2',
      RABBITMQ_URLS: 'amqp://u:p@r1:5672',
      QUEUE_TYPE: 'classic',
      PUBLISH_TIMEOUT_MS: '500',
      IDEMPOTENCY_TTL_SECONDS: '3600',
      PREFETCH: '7',
      ORDER_TTL_MS: '60000',
      ORDER_RETENTION_DAYS: '7',
      NOTIFY_WEBHOOK_URL: 'https://hooks.example.com/orders',
      LOG_LEVEL: 'DEBUG',
      NOTIFIER_PORT: '9000',
    });
    expect(c).toMatchObject({
      redis: { url: 'redis://cache:6380/2' },
      rabbitmqUrls: ['amqp://u:p@r1:5672'],
      queueType: 'classic',
      publishTimeoutMs: 500,
      idempotencyTtlSeconds: 3600,
      prefetch: 7,
      orderTtlMs: 60_000,
      orderRetentionDays: 7,
      notifyWebhookUrl: 'https://hooks.example.com/orders',
      logLevel: 'debug',
      port: 9000,
    });
  });

  it('reads OTEL_EXPORTER_OTLP_ENDPOINT, the base URL spans are exported to', () => {
    expect(loadConfig('order-processor', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).otlpEndpoint).toBe(
      'http://collector:4318',
    );
    expect(loadConfig('notifier', { OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }).otlpEndpoint).toBeUndefined();
  });

  it('splits comma-separated RABBITMQ_URLS into a list, trimming blanks', () => {
    const c = loadConfig('order-processor', {
      RABBITMQ_URLS: 'amqp://u:p@rabbit1:5672, amqp://u:p@rabbit2:5672 ,amqps://u:p@rabbit3:5671,',
    });
    expect(c.rabbitmqUrls).toEqual(['amqp://u:p@rabbit1:5672', 'amqp://u:p@rabbit2:5672', 'amqps://u:p@rabbit3:5671']);
  });

  it('reads Redis Sentinels and their master name', () => {
    const c = loadConfig('dashboard', { REDIS_SENTINELS: 's1:26379, s2:26380', REDIS_SENTINEL_NAME: 'orders' });
    expect(c.redis.sentinels).toEqual([
      { host: 's1', port: 26379 },
      { host: 's2', port: 26380 },
    ]);
    expect(c.redis.sentinelName).toBe('orders');
  });

  it('returns a frozen config, nested parts included', () => {
    const c = loadConfig('api-gateway', { REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'orders' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.redis)).toBe(true);
    expect(Object.isFrozen(c.redis.sentinels)).toBe(true);
    expect(Object.isFrozen(c.rabbitmqUrls)).toBe(true);
    expect(Object.isFrozen(c.ports)).toBe(true);
    expect(() => {
      (c as { queueType: string }).queueType = 'classic';
    }).toThrow(TypeError);
    expect(() => (c.rabbitmqUrls as string[]).push('amqp://x')).toThrow(TypeError);
    expect(c.queueType).toBe('quorum');
  });
});

describe('loadConfig rejects a bad value with a message naming the variable', () => {
  const cases: { env: Record<string, string>; variable: string; says: RegExp }[] = [
    { env: { PUBLISH_TIMEOUT_MS: 'abc' }, variable: 'PUBLISH_TIMEOUT_MS', says: /whole number.*abc/ },
    { env: { PUBLISH_TIMEOUT_MS: '1.5' }, variable: 'PUBLISH_TIMEOUT_MS', says: /whole number/ },
    { env: { PREFETCH: '0' }, variable: 'PREFETCH', says: /between 1 and/ },
    { env: { PREFETCH: '-3' }, variable: 'PREFETCH', says: /whole number/ },
    { env: { IDEMPOTENCY_TTL_SECONDS: '1' }, variable: 'IDEMPOTENCY_TTL_SECONDS', says: /between/ },
    { env: { ORDER_TTL_MS: '15m' }, variable: 'ORDER_TTL_MS', says: /whole number.*15m/ },
    { env: { ORDER_TTL_MS: '0' }, variable: 'ORDER_TTL_MS', says: /between 100 and/ },
    { env: { ORDER_RETENTION_DAYS: '0' }, variable: 'ORDER_RETENTION_DAYS', says: /between 1 and 3650/ },
    { env: { ORDER_RETENTION_DAYS: '30d' }, variable: 'ORDER_RETENTION_DAYS', says: /whole number.*30d/ },
    { env: { ORDER_RETENTION_DAYS: '3651' }, variable: 'ORDER_RETENTION_DAYS', says: /between 1 and 3650/ },
    { env: { GATEWAY_PORT: '70000' }, variable: 'GATEWAY_PORT', says: /between 0 and 65535/ },
    { env: { QUEUE_TYPE: 'lazy' }, variable: 'QUEUE_TYPE', says: /"quorum" or "classic".*lazy/ },
    { env: { RABBITMQ_URLS: 'http://x' }, variable: 'RABBITMQ_URLS', says: /amqp: or amqps:/ },
    { env: { RABBITMQ_URLS: 'amqp://r1:5672,nope' }, variable: 'RABBITMQ_URLS', says: /not a URL: "nope"/ },
    { env: { RABBITMQ_URLS: ' , ' }, variable: 'RABBITMQ_URLS', says: /no broker URL/ },
    { env: { REDIS_URL: 'nope' }, variable: 'REDIS_URL', says: /not a URL/ },
    { env: { REDIS_URL: 'http://cache:6379' }, variable: 'REDIS_URL', says: /redis: or rediss:/ },
    { env: { LOG_LEVEL: 'loud' }, variable: 'LOG_LEVEL', says: /one of .*info.*loud/ },
    { env: { NOTIFY_WEBHOOK_URL: 'ftp://x' }, variable: 'NOTIFY_WEBHOOK_URL', says: /http: or https:/ },
    { env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, variable: 'OTEL_EXPORTER_OTLP_ENDPOINT', says: /http: or https:/ },
    { env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' }, variable: 'OTEL_EXPORTER_OTLP_ENDPOINT', says: /not a URL/ },
    { env: { REDIS_SENTINELS: 'bad', REDIS_SENTINEL_NAME: 'orders' }, variable: 'REDIS_SENTINELS', says: /host:port/ },
    { env: { REDIS_SENTINELS: 's1:99999', REDIS_SENTINEL_NAME: 'orders' }, variable: 'REDIS_SENTINELS', says: /host:port/ },
    { env: { REDIS_SENTINELS: 's1:26379' }, variable: 'REDIS_SENTINEL_NAME', says: /required when REDIS_SENTINELS/ },
    { env: { REDIS_SENTINEL_NAME: 'orders' }, variable: 'REDIS_SENTINELS', says: /required when REDIS_SENTINEL_NAME/ },
  ];

  it.each(cases)('$variable for $env', ({ env, variable, says }) => {
    const err = configError(env);
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}: `)).toBe(true);
    expect(err.message).toMatch(says);
  });
});

describe('loadConfig in production (NODE_ENV=production)', () => {
  const both = { REDIS_URL: 'redis://redis:6379', RABBITMQ_URLS: 'amqp://orders:secret@rabbit1:5672' };

  it('refuses to fall back to a local REDIS_URL', () => {
    const err = configError({ NODE_ENV: 'production', RABBITMQ_URLS: both.RABBITMQ_URLS });
    expect(err.variable).toBe('REDIS_URL');
    expect(err.message).toMatch(/REDIS_URL: is required when NODE_ENV=production/);
  });

  it('refuses to fall back to the guest RABBITMQ_URLS', () => {
    const err = configError({ NODE_ENV: 'production', REDIS_URL: both.REDIS_URL });
    expect(err.variable).toBe('RABBITMQ_URLS');
    expect(err.message).toMatch(/RABBITMQ_URLS: is required when NODE_ENV=production/);
  });

  it('starts with both given', () => {
    const c = loadConfig('order-processor', { NODE_ENV: 'production', ...both });
    expect(c.production).toBe(true);
    expect(c.redis.url).toBe(both.REDIS_URL);
    expect(c.rabbitmqUrls).toEqual([both.RABBITMQ_URLS]);
  });

  it('does not need REDIS_URL when Sentinels are given', () => {
    const c = loadConfig('order-processor', {
      NODE_ENV: 'production',
      RABBITMQ_URLS: both.RABBITMQ_URLS,
      REDIS_SENTINELS: 's1:26379',
      REDIS_SENTINEL_NAME: 'orders',
    });
    expect(c.redis.sentinels).toEqual([{ host: 's1', port: 26379 }]);
  });
});

describe('configOrExit', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('prints one line naming the service and the variable, then exits with 1', () => {
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    // process.exit must not end the test run: stop at the call instead.
    const exit = vi.spyOn(process, 'exit').mockImplementation((code?: string | number | null) => {
      throw new Error(`exit ${code}`);
    });
    expect(() => configOrExit('notifier', { PREFETCH: '0' })).toThrow('exit 1');
    expect(exit).toHaveBeenCalledWith(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^notifier: invalid configuration: PREFETCH: .*\n$/);
  });

  it('returns the config when every value is good', () => {
    expect(configOrExit('dashboard', { DASHBOARD_PORT: '9100' }).port).toBe(9100);
  });
});

describe('brokerConfig (the broker part alone, for the dead-letter CLI)', () => {
  it('reads RABBITMQ_URLS and QUEUE_TYPE as loadConfig does and ignores the rest', () => {
    expect(brokerConfig({ RABBITMQ_URLS: 'amqp://a:5672, amqp://b:5672', QUEUE_TYPE: 'classic', PREFETCH: 'junk' })).toEqual({
      rabbitmqUrls: ['amqp://a:5672', 'amqp://b:5672'],
      queueType: 'classic',
    });
    expect(brokerConfig({})).toEqual({ rabbitmqUrls: ['amqp://guest:guest@127.0.0.1:5672'], queueType: 'quorum' });
    expect(() => brokerConfig({ QUEUE_TYPE: 'lazy' })).toThrow(ConfigError);
  });
});

describe('loadConfig: many instances and overload', () => {
  it('walks the broker nodes in a random order and bounds the backlog at 100000 by default', () => {
    const c = loadConfig('api-gateway', {});
    expect(c.rabbitmqNodeOrder).toBe('random');
    expect(c.maxBacklog).toBe(100_000);
  });

  it('reads RABBITMQ_NODE_ORDER and MAX_BACKLOG', () => {
    const c = loadConfig('api-gateway', { RABBITMQ_NODE_ORDER: 'listed', MAX_BACKLOG: '5000' });
    expect(c.rabbitmqNodeOrder).toBe('listed');
    expect(c.maxBacklog).toBe(5000);
  });

  it('names the variable of a bad value', () => {
    expect(configError({ RABBITMQ_NODE_ORDER: 'first' }).message).toMatch(/^RABBITMQ_NODE_ORDER: .*"random" or "listed"/);
    expect(configError({ MAX_BACKLOG: '0' }).message).toMatch(/^MAX_BACKLOG: /);
    expect(configError({ MAX_BACKLOG: 'lots' }).message).toMatch(/^MAX_BACKLOG: /);
  });
});
