import { setTimeout as sleep } from 'node:timers/promises';
import { configOrExit, createBroker, createLogger, createRedis, exitOnStartFailure, onShutdown, redisReady, type Logger } from '@order-pipeline/shared';
import { start, type Gateway } from './app.js';

const config = configOrExit('api-gateway');
const log = createLogger(config.service, config.logLevel);
const redis = createRedis(config.redis, { log });
const broker = createBroker({
  urls: config.rabbitmqUrls,
  queueType: config.queueType,
  log,
  publishTimeoutMs: config.publishTimeoutMs,
  name: config.service,
});

let gateway: Gateway | undefined = undefined;
onShutdown(log, async () => {
  await gateway?.stop();
  await broker.close();
  await redis.quit().catch(() => redis.disconnect());
});

// At start Redis or the broker may still be booting: wait for them, however long, with a line
// now and then, rather than exiting and relying on a restart loop.
async function waitFor(what: string, attempt: () => Promise<void>, logger: Logger): Promise<void> {
  for (;;) {
    try {
      await attempt();
      return;
    } catch (err) {
      logger.warn({ err: (err as Error).message }, `waiting for ${what}`);
      await sleep(1000);
    }
  }
}

await waitFor('redis', () => redisReady(redis, 10_000), log);
await waitFor('the broker', () => broker.connection.connect({ timeout: 10_000 }), log);
gateway = await start({ config, redis, broker, log }).catch(exitOnStartFailure(log));
log.info({ address: gateway.address }, 'api-gateway listening');
