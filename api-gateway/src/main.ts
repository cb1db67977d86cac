import { awaitDependencies, configOrExit, createBroker, createLogger, createRedis, exitOnStartFailure, onShutdown } from '@order-pipeline/shared';
import { start, type Gateway } from './app.js';

const config = configOrExit('api-gateway');
const log = createLogger(config.service, config.logLevel);
const redis = createRedis(config.redis, { log });
const broker = createBroker({ urls: config.rabbitmqUrls, queueType: config.queueType, log, publishTimeoutMs: config.publishTimeoutMs, name: config.service });

let gateway: Gateway | undefined;
// Registered first so a SIGTERM while still waiting for the servers exits cleanly too.
onShutdown(log, async () => {
  await gateway?.stop();
  await broker.close();
  await redis.quit().catch(() => redis.disconnect());
});

// Listens only once Redis and the broker answer.
await awaitDependencies(log, redis, broker);
gateway = await start({ config, redis, broker, log }).catch(exitOnStartFailure(log));
log.info({ address: gateway.address }, 'api-gateway listening');
