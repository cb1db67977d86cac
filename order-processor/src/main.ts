// Composition root: config -> clients -> start -> shutdown hooks.
import { awaitDependencies, configOrExit, createBroker, createLogger, createRedis, exitOnStartFailure, onShutdown } from '@order-pipeline/shared';
import { start } from './app.js';

const config = configOrExit('order-processor');
const log = createLogger(config.service, config.logLevel);
const redis = createRedis(config.redis, { log });
const broker = createBroker({ urls: config.rabbitmqUrls, queueType: config.queueType, log, publishTimeoutMs: config.publishTimeoutMs, name: config.service });

let app: Awaited<ReturnType<typeof start>> | undefined;
// Registered first so a SIGTERM while still waiting for the servers exits cleanly too.
onShutdown(log, async () => {
  await app?.stop();
  await broker.close();
  await redis.quit().catch(() => redis.disconnect());
});

// Consumes only once Redis and the broker answer.
await awaitDependencies(log, redis, broker);
app = await start({ config, redis, broker, log }).catch(exitOnStartFailure(log));
