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

  it('waits for one replica within 500 ms with Sentinel, for none standalone, unless told otherwise', () => {
    const sentinel = loadConfig('dashboard', { REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'orders' });
    expect([sentinel.redis.minReplicas, sentinel.redis.waitTimeoutMs]).toEqual([1, 500]);
    expect(loadConfig('dashboard', {}).redis.minReplicas).toBe(0);
    const set = loadConfig('dashboard', { REDIS_URL: 'redis://r:6379', REDIS_MIN_REPLICAS: '2', REDIS_WAIT_TIMEOUT_MS: '250' });
    expect([set.redis.minReplicas, set.redis.waitTimeoutMs]).toEqual([2, 250]);
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
    { env: { REDIS_MIN_REPLICAS: '-1' }, variable: 'REDIS_MIN_REPLICAS', says: /whole number/ },
    { env: { REDIS_MIN_REPLICAS: '17' }, variable: 'REDIS_MIN_REPLICAS', says: /between 0 and 16/ },
    { env: { REDIS_WAIT_TIMEOUT_MS: '0' }, variable: 'REDIS_WAIT_TIMEOUT_MS', says: /between 1 and 60000/ },
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

describe("the notifier's webhook settings", () => {
  // 24 and 32 bytes of key, base64: the shortest the spec allows, and a common length.
  const key24 = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;
  const key32 = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;

  it('default to the Standard Webhooks schedule, no secret, a breaker of 5 failures and 30 s', () => {
    const c = loadConfig('notifier', {});
    expect(c.notifyRetryScheduleMs).toEqual([0, 5000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000]);
    expect(c.notifyWebhookSecrets).toEqual([]);
    expect([c.notifyBreakerThreshold, c.notifyBreakerCooldownMs]).toEqual([5, 30_000]);
  });

  it('read a compressed schedule, several secrets separated by spaces or commas, and the breaker', () => {
    const c = loadConfig('notifier', {
      NOTIFY_RETRY_SCHEDULE: '0, 200ms,1s,2m,1h',
      NOTIFY_WEBHOOK_SECRET: `${key32}, ${key24} ${key32}`,
      NOTIFY_BREAKER_THRESHOLD: '3',
      NOTIFY_BREAKER_COOLDOWN: '750ms',
    });
    expect(c.notifyRetryScheduleMs).toEqual([0, 200, 1000, 120_000, 3_600_000]);
    expect(c.notifyWebhookSecrets).toEqual([key32, key24, key32]);
    expect([c.notifyBreakerThreshold, c.notifyBreakerCooldownMs]).toEqual([3, 750]);
  });

  const cases: { env: Record<string, string>; variable: string; says: RegExp }[] = [
    { env: { NOTIFY_WEBHOOK_URL: 'mailto:ops@example.com' }, variable: 'NOTIFY_WEBHOOK_URL', says: /http: or https:/ },
    { env: { NOTIFY_WEBHOOK_URL: 'hooks.example.com/orders' }, variable: 'NOTIFY_WEBHOOK_URL', says: /not a URL/ },
    { env: { NOTIFY_WEBHOOK_SECRET: Buffer.alloc(32).toString('base64') }, variable: 'NOTIFY_WEBHOOK_SECRET', says: /"whsec_"/ },
    { env: { NOTIFY_WEBHOOK_SECRET: 'whsec_not*base64' }, variable: 'NOTIFY_WEBHOOK_SECRET', says: /base64/ },
    {
      env: { NOTIFY_WEBHOOK_SECRET: `whsec_${Buffer.alloc(16).toString('base64')}` },
      variable: 'NOTIFY_WEBHOOK_SECRET',
      says: /24 to 64 bytes, got 16/,
    },
    { env: { NOTIFY_RETRY_SCHEDULE: '0,5,5m' }, variable: 'NOTIFY_RETRY_SCHEDULE', says: /"5" is not a duration/ },
    { env: { NOTIFY_RETRY_SCHEDULE: '0,5d' }, variable: 'NOTIFY_RETRY_SCHEDULE', says: /"5d" is not a duration/ },
    { env: { NOTIFY_RETRY_SCHEDULE: '0,,5s' }, variable: 'NOTIFY_RETRY_SCHEDULE', says: /"" is not a duration/ },
    { env: { NOTIFY_RETRY_SCHEDULE: '5s,5m' }, variable: 'NOTIFY_RETRY_SCHEDULE', says: /must start with 0/ },
    { env: { NOTIFY_RETRY_SCHEDULE: '0,25h' }, variable: 'NOTIFY_RETRY_SCHEDULE', says: /longer than 24h/ },
    { env: { NOTIFY_BREAKER_THRESHOLD: '0' }, variable: 'NOTIFY_BREAKER_THRESHOLD', says: /between 1 and/ },
    { env: { NOTIFY_BREAKER_COOLDOWN: '30' }, variable: 'NOTIFY_BREAKER_COOLDOWN', says: /not a duration/ },
  ];

  it.each(cases)('refuse $variable for $env', ({ env, variable, says }) => {
    const err = configError(env, 'notifier');
    expect(err.variable).toBe(variable);
    expect(err.message).toMatch(says);
  });

  it('require a secret in production when a webhook is set', () => {
    const prod = { NODE_ENV: 'production', REDIS_URL: 'redis://r:6379', RABBITMQ_URLS: 'amqp://u:p@b:5672' };
    const err = configError({ ...prod, NOTIFY_WEBHOOK_URL: 'https://hooks.example.com/o' }, 'notifier');
    expect(err.variable).toBe('NOTIFY_WEBHOOK_SECRET');
    expect(
      loadConfig('notifier', { ...prod, NOTIFY_WEBHOOK_URL: 'https://h.example.com/o', NOTIFY_WEBHOOK_SECRET: key24 }).notifyWebhookSecrets,
    ).toEqual([key24]);
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
