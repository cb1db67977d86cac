import type { Redis } from 'ioredis';
import { createBroker, defaultBackoffMs, waitForBroker, type Broker, type ConsumeOptions, type Consumer } from './broker/index.js';
import { configOrExit, type Config, type ServiceName } from './config.js';
import { exitOnStartFailure, onShutdown } from './lifecycle.js';
import { createLogger, type Logger } from './logger.js';
import { closeServer, createMetrics, dependencyChecks, startOpsServer, type Metrics } from './http.js';
import { brokerMetrics, observeRedis } from './metrics.js';
import { createRedis, redisReady, type RedisClient, type RedisClientOptions } from './redis.js';
import { setupTracing } from './tracing.js';

/** What every service's `start` is built from: the clients, already created. */
export interface ServiceDeps {
  config: Config;
  redis: RedisClient;
  broker: Broker;
  log: Logger;
  /**
   * The service's metrics registry, already holding the broker's and Redis' metrics (runService
   * creates it); a service without one creates its own.
   */
  metrics?: Metrics;
  /** HTTP port; defaults to the service's port from the config (tests pass 0 for any free port). */
  port?: number;
  host?: string;
}

/** A started service. `stop` stops intake and drains; the clients stay open for the caller to close. */
export interface RunningService {
  address: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * A service's Redis and broker clients and its metrics registry, the clients already observed by
 * it (connection state, errors, publish confirms, consumer outcomes).
 */
export function createServiceClients(
  config: Config,
  log: Logger,
  publishTimeoutMs = config.publishTimeoutMs,
  redisOptions: Pick<RedisClientOptions, 'autoPipelining'> = {},
): { metrics: Metrics; redis: RedisClient; broker: Broker } {
  const metrics = createMetrics(config.service);
  const redis = createRedis(config.redis, { log, ...redisOptions });
  observeRedis(redis, metrics);
  const broker = createBroker({
    urls: config.rabbitmqUrls,
    nodeOrder: config.rabbitmqNodeOrder,
    queueType: config.queueType,
    log,
    publishTimeoutMs,
    name: config.service,
    observer: brokerMetrics(metrics, config.rabbitmqUrls),
    ...(config.rabbitmqTlsCa ? { tlsCa: config.rabbitmqTlsCa } : {}),
  });
  return { metrics, redis, broker };
}

/**
 * The composition root of every service, run by its main.ts: config -> clients -> wait for the
 * servers -> start -> shutdown hooks. The services differ only in the `start` they pass.
 */
export async function runService(
  service: ServiceName,
  start: (deps: ServiceDeps) => Promise<RunningService>,
  options: { redis?: Pick<RedisClientOptions, 'autoPipelining'> } = {},
): Promise<void> {
  const config = configOrExit(service);
  const log = createLogger(config.service, config.logLevel);
  // Before any client: their spans and trace ids come from this provider.
  const tracing = setupTracing({ service: config.service, ...(config.otlpEndpoint ? { otlpEndpoint: config.otlpEndpoint } : {}) });
  const { metrics, redis, broker } = createServiceClients(config, log, config.publishTimeoutMs, options.redis);

  let running: RunningService | undefined;
  // Registered first so a SIGTERM while still waiting for the servers exits cleanly too.
  onShutdown(log, async () => {
    await running?.stop();
    await broker.close();
    await redis.quit().catch(() => redis.disconnect());
    // Last: the spans of the work drained above are exported before the exit.
    await tracing.shutdown();
  });

  // Takes work only once Redis and the broker answer.
  await awaitDependencies(log, redis, broker);
  running = await start({ config, redis, broker, log, metrics }).catch(exitOnStartFailure(log));
}

/** The knobs a consumer service takes on top of ServiceDeps (tests shorten the retries). */
export interface ConsumerDeps extends ServiceDeps {
  /** Attempts before a transiently failing message is dead-lettered. */
  maxAttempts?: number;
  backoffMs?: (attempt: number) => number;
}

/**
 * The shape of both consumer services: the ops server (ready only while Redis, the broker and the
 * consumer are up), then one consumer on `queue` with the shared failure policy. `stop` stops
 * consuming (waits for the messages in hand), then closes the ops server; it runs once.
 */
export async function startConsumerService(opts: {
  deps: ConsumerDeps;
  metrics: Metrics;
  queue: string;
  /** The service's ops port when deps.port is not given. */
  defaultPort: number;
  handler: ConsumeOptions['handler'];
  /** Extra fields for the "started" log line. */
  describe?: Record<string, unknown>;
}): Promise<RunningService> {
  const { deps, queue } = opts;
  const { config, redis, broker, log } = deps;
  // Set once the ops server listens; /readyz says not ready until then.
  let consumer: Consumer | undefined;
  const checks = dependencyChecks(redis, broker, () => consumer);
  const http = await startOpsServer({
    log,
    metrics: opts.metrics,
    checks,
    port: deps.port ?? opts.defaultPort,
    host: deps.host,
    ...(config.metricsBearerToken ? { metricsToken: config.metricsBearerToken } : {}),
  });
  const started = broker.consume({
    queue,
    prefetch: config.prefetch,
    maxAttempts: deps.maxAttempts ?? 5,
    backoffMs: deps.backoffMs ?? defaultBackoffMs,
    handler: opts.handler,
  });
  consumer = started;
  log.info({ address: http.address, queue, ...opts.describe }, `${config.service} started`);

  let stopping: Promise<void> | undefined;
  return {
    address: http.address,
    port: http.port,
    stop: () =>
      (stopping ??= (async () => {
        await started.stop();
        await closeServer(http.server);
        log.info(`${config.service} stopped`);
      })()),
  };
}

/**
 * Waits for Redis and a broker node before a service starts taking work, however long it takes:
 * at start the servers may still be booting, so say so and keep waiting rather than exit.
 */
export async function awaitDependencies(log: Logger, redis: Redis, broker: Broker, everyMs = 5000): Promise<void> {
  await retryForever(log, 'redis', () => redisReady(redis, everyMs));
  await retryForever(log, 'broker', () => waitForBroker(broker, everyMs));
}

async function retryForever(log: Logger, what: string, attempt: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      log.warn({ err: (err as Error).message }, `waiting for ${what}`);
    }
  }
}
