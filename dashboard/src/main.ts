import { awaitDependencies, configOrExit, createBroker, createLogger, createRedis, exitOnStartFailure, onShutdown } from '@order-pipeline/shared';
import { start } from './app.js';

const config = configOrExit('dashboard');
const log = createLogger(config.service, config.logLevel);
const redis = createRedis(config.redis, { log });
const broker = createBroker({ urls: config.rabbitmqUrls, queueType: config.queueType, log, publishTimeoutMs: config.publishTimeoutMs, name: config.service });

let dashboard: Awaited<ReturnType<typeof start>> | undefined;
// Registered first so a SIGTERM while still waiting for the servers exits cleanly too.
onShutdown(log, async () => {
  await dashboard?.stop();
  await broker.close();
  await redis.quit().catch(() => redis.disconnect());
});

await awaitDependencies(log, redis, broker);
dashboard = await start({ config, redis, broker, log }).catch(exitOnStartFailure(log));
