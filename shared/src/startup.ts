import type { Redis } from 'ioredis';
import { waitForBroker, type Broker } from './broker.js';
import type { Logger } from './logger.js';
import { redisReady } from './redis.js';

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
