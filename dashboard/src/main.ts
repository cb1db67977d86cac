import { awaitDependencies, configOrExit, createBroker, createLogger, createRedis, exitOnStartFailure, onShutdown } from '@order-pipeline/shared';
import { start } from './app.js';

const config = configOrExit('dashboard');
const log = createLogger(config.service, config.logLevel);
const redis = createRedis(config.redis, { log });
const broker = createBroker({ urls: config.rabbitmqUrls, queueType: config.queueType, log, publishTimeoutMs: config.publishTimeoutMs, name: config.service });

await awaitDependencies(log, redis, broker);
const dashboard = await start({ config, redis, broker, log }).catch(exitOnStartFailure(log));
onShutdown(log, async () => {
  await dashboard.stop();
  await broker.close();
  await redis.quit().catch(() => redis.disconnect());
});
