import { configOrExit, createBroker, createLogger, createRedis, exitOnStartFailure, onShutdown, redisReady, type Broker, type Logger } from '@order-pipeline/shared';
import { start } from './app.js';

const config = configOrExit('dashboard');
const log = createLogger(config.service, config.logLevel);
const redis = createRedis(config.redis, { log });
const broker = createBroker({ urls: config.rabbitmqUrls, queueType: config.queueType, log, publishTimeoutMs: config.publishTimeoutMs, name: config.service });

// At start the servers may still be booting: wait for them, saying so, rather than exit.
await retryForever(log, 'redis', () => redisReady(redis, 5000));
await retryForever(log, 'broker', () => brokerConnected(broker, 5000));

const dashboard = await start({ config, redis, broker, log }).catch(exitOnStartFailure(log));
onShutdown(log, async () => {
  await dashboard.stop();
  await broker.close();
  await redis.quit().catch(() => redis.disconnect());
});

async function retryForever(log: Logger, what: string, attempt: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      log.warn({ err: (err as Error).message }, `waiting for ${what}`);
    }
  }
}

// connection.connect() waits for the next 'connect' event, which never comes if the connection
// was made while we waited for Redis: check the current state first.
function brokerConnected(broker: Broker, timeoutMs: number): Promise<void> {
  if (broker.isConnected()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      broker.connection.off('connect', onConnect);
      reject(new Error(`no broker node reachable after ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = () => {
      clearTimeout(timer);
      resolve();
    };
    broker.connection.once('connect', onConnect);
  });
}
