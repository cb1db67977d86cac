// Vitest global setup: find or start the Redis and RabbitMQ the tests use and provide
// their URLs to the test files (read them with `inject()` or test/helpers/servers.ts).
//
// Resolution order:
//   a. TEST_REDIS_URL and TEST_RABBITMQ_URLS (comma-separated) from the environment;
//   b. throwaway servers from the locally installed binaries, on free ports;
//   c. testcontainers, when a container engine (Docker) answers;
//   d. otherwise one error saying what is missing.
import type { TestProject } from 'vitest/node';
import { haveBinaries, startLocalServers } from '../scripts/local-servers.mjs';

type Source = 'env' | 'local' | 'containers';

interface Servers {
  source: Source;
  redisUrl: string;
  rabbitmqUrls: string[];
  stop: () => Promise<void>;
}

const log = (message: string): void => {
  console.log(`[test servers] ${message}`);
};

function splitUrls(value: string): string[] {
  return value
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
}

function fromEnv(): Servers | undefined {
  const redisUrl = process.env.TEST_REDIS_URL?.trim();
  const rabbitmqUrls = splitUrls(process.env.TEST_RABBITMQ_URLS ?? '');
  if (!redisUrl && rabbitmqUrls.length === 0) return undefined;
  if (!redisUrl || rabbitmqUrls.length === 0) {
    throw new Error(
      'Set both TEST_REDIS_URL and TEST_RABBITMQ_URLS (comma-separated amqp:// URLs), or neither to let the tests start their own servers.',
    );
  }
  return { source: 'env', redisUrl, rabbitmqUrls, stop: async () => {} };
}

async function fromLocalBinaries(): Promise<Servers | undefined> {
  const bins = haveBinaries();
  if (!bins.redis || !bins.rabbitmq) return undefined;
  const servers = await startLocalServers({ rabbitNodes: 1 });
  return {
    source: 'local',
    redisUrl: servers.redisUrl,
    rabbitmqUrls: servers.rabbitmqUrls,
    stop: () => servers.stop(),
  };
}

async function fromContainers(): Promise<Servers | undefined> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
  try {
    await getContainerRuntimeClient();
  } catch {
    return undefined;
  }
  const [redis, rabbit] = await Promise.all([
    new GenericContainer('redis:7-alpine')
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .withStartupTimeout(60_000)
      .start(),
    new GenericContainer('rabbitmq:3.13-alpine')
      .withExposedPorts(5672)
      .withWaitStrategy(Wait.forLogMessage(/Server startup complete/))
      .withStartupTimeout(120_000)
      .start(),
  ]);
  return {
    source: 'containers',
    redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
    rabbitmqUrls: [`amqp://guest:guest@${rabbit.getHost()}:${rabbit.getMappedPort(5672)}`],
    stop: async () => {
      await Promise.all([redis.stop(), rabbit.stop()]);
    },
  };
}

function missingServersError(): Error {
  const bins = haveBinaries();
  const missing = [!bins.redis && 'redis-server', !bins.rabbitmq && 'rabbitmq-server'].filter(Boolean).join(' and ');
  return new Error(
    `No test servers: ${missing} not installed and no Docker engine answers. ` +
      'Install the Debian packages redis-server and rabbitmq-server, or run a Docker engine, ' +
      'or point the tests at running servers with TEST_REDIS_URL and TEST_RABBITMQ_URLS (comma-separated).',
  );
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const servers = fromEnv() ?? (await fromLocalBinaries()) ?? (await fromContainers());
  if (!servers) throw missingServersError();

  project.provide('redisUrl', servers.redisUrl);
  project.provide('rabbitmqUrls', servers.rabbitmqUrls);
  project.provide('serverSource', servers.source);
  log(
    `${servers.source}: redis ${servers.redisUrl}, rabbitmq ${servers.rabbitmqUrls.join(',')}` +
      (servers.source === 'env' ? '' : ` (started in ${Date.now() - started} ms)`),
  );

  return async () => {
    await servers.stop();
  };
}
