// The pipeline over TLS only: a Redis with no plain port and a RabbitMQ node with no plain AMQP
// listener, both started from the local binaries with certificates this test makes with openssl
// (a CA, and a server certificate for localhost and 127.0.0.1). The built gateway, processor and
// notifier run with NODE_ENV=production, rediss:// and amqps:// URLs carrying passwords, and
// REDIS_TLS_CA / RABBITMQ_TLS_CA; an order goes through, and neither password appears anywhere in
// what the services printed (log level debug, a dead broker node in the list so failures are logged).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRabbitCluster } from '../scripts/local-servers.mjs';
import { freePort, startService, waitFor, waitReady, type ServiceProcess } from './helpers/processes.js';
import { makeCertificates } from './helpers/certificates.js';

const REDIS_PASSWORD = 'redis-pw-7f3a9c1e5b';
const RABBIT_PASSWORD = 'rabbit-pw-2d8e6b4a0c';

let dir = '';
let redisProc: ChildProcess | undefined;
let rabbit: Awaited<ReturnType<typeof startRabbitCluster>> | undefined;
const services: ServiceProcess[] = [];
let gateway = '';
let redisUrl = '';
let ca = '';

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'op-tls-'));
  const files = makeCertificates(dir);
  ca = files.ca;

  const redisPort = await freePort();
  redisProc = spawn(
    'redis-server',
    [
      '--port', '0', '--tls-port', String(redisPort), '--bind', '127.0.0.1',
      '--tls-cert-file', files.cert, '--tls-key-file', files.key, '--tls-ca-cert-file', files.ca, '--tls-auth-clients', 'no',
      '--requirepass', REDIS_PASSWORD, '--save', '', '--appendonly', 'no', '--dir', dir,
    ], // prettier-ignore
    { stdio: 'ignore' },
  );
  redisUrl = `rediss://:${REDIS_PASSWORD}@localhost:${redisPort}`;

  rabbit = await startRabbitCluster({ tls: { certFile: files.cert, keyFile: files.key, caFile: files.ca } });
  const node = rabbit.nodes[0];
  if (!node) throw new Error('no node');
  await node.ctl('add_user', 'orders', RABBIT_PASSWORD);
  await node.ctl('set_permissions', '-p', '/', 'orders', '.*', '.*', '.*');
  const port = new URL(node.url).port;
  // A node that is not there, first: the services log their failed connects to it.
  const dead = `amqps://orders:${RABBIT_PASSWORD}@localhost:${await freePort()}`;
  const env = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'debug',
    REDIS_URL: redisUrl,
    REDIS_TLS_CA: files.ca,
    RABBITMQ_URLS: `${dead},amqps://orders:${RABBIT_PASSWORD}@localhost:${port}`,
    // In the order given, so every service tries the dead node first (the default, random, let
    // one in eight runs start all three on the live node and log no failed connect).
    RABBITMQ_NODE_ORDER: 'listed',
    RABBITMQ_TLS_CA: files.ca,
  };
  const gwPort = await freePort();
  services.push(
    startService('api-gateway', { ...env, GATEWAY_PORT: String(gwPort) }),
    startService('order-processor', { ...env, PROCESSOR_PORT: String(await freePort()) }),
    startService('notifier', { ...env, NOTIFIER_PORT: String(await freePort()) }),
  );
  gateway = `http://127.0.0.1:${gwPort}`;
  await waitReady(gateway, 60_000);
}, 120_000);

afterAll(async () => {
  await Promise.all(services.map((s) => s.stop()));
  await rabbit?.stop();
  redisProc?.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the pipeline over TLS only', () => {
  it('places an order through rediss:// and amqps://, and no password reaches the logs', async () => {
    // Only TLS answers: a plain client to the Redis port gets nothing back.
    const plain = new Redis(redisUrl.replace('rediss:', 'redis:'), {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      retryStrategy: () => null,
    });
    plain.on('error', () => undefined);
    await expect(plain.connect().then(() => plain.ping())).rejects.toThrow();
    plain.disconnect();
    const redis = new Redis(redisUrl, { tls: { ca: readFileSync(ca) } });
    await redis.set('inventory:tls-widget', '5');

    const res = await fetch(`${gateway}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'tls-1', sku: 'tls-widget', qty: 2 }),
    });
    expect(res.status).toBe(202);
    await waitFor('tls-1 created and notified', async () => {
      const o = await redis.hgetall('order:tls-1');
      const n = await redis.hget('notifications:tls-1', 'status');
      return o.status === 'created' && n === 'sent' ? true : undefined;
    }, 30_000, 200); // prettier-ignore
    expect(await redis.get('inventory:tls-widget')).toBe('3');
    redis.disconnect();

    const output = services.map((s) => s.output()).join('\n');
    console.log(`tls run: ${output.split('\n').length} log lines from 3 services; order tls-1 created and notified`);
    expect(output).toMatch(/broker connect failed/);
    expect(output).not.toContain(REDIS_PASSWORD);
    expect(output).not.toContain(RABBIT_PASSWORD);
  });
});
