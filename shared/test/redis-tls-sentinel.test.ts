// TLS with Sentinel: a Sentinel and the primary it monitors, each answering its clients on a TLS
// port with a certificate this test makes with openssl (each keeps a plain port too, used only by
// the server helper to see it started). The Sentinel monitors the primary's TLS port, as a
// deployment over TLS would, so a client must speak TLS to both: the configuration of
// REDIS_SENTINELS + REDIS_TLS_CA reaches the primary and writes. Then the options createRedis
// builds for each way TLS is asked for.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, loadConfig, redisReady, type RedisClient } from '@order-pipeline/shared';
import { freePort, haveBinaries, startRedis, type RedisServer } from '../../scripts/local-servers.mjs';
import { redisTlsOptions } from '../src/redis.js';
import { makeCertificates, type Certificates } from '../../test/helpers/certificates.js';

const bins = haveBinaries();
let dir = '';
const servers: RedisServer[] = [];
let sentinelTlsPort = 0;
let files: Certificates;

describe.skipIf(!bins.redis)('Redis over TLS through Sentinel', () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'op-tls-sentinel-'));
    files = makeCertificates(dir);
    const tls = (port: number) => [
      ['tls-port', String(port)],
      ['tls-cert-file', files.cert],
      ['tls-key-file', files.key],
      ['tls-ca-cert-file', files.ca],
      ['tls-auth-clients', 'no'],
      // The Sentinel reaches the primary (and a replica its primary) over TLS.
      ['tls-replication', 'yes'],
    ];
    const primaryTlsPort = await freePort();
    servers.push(await startRedis({ extraArgs: tls(primaryTlsPort).flatMap(([k, v]) => [`--${k}`, v as string]) }));
    sentinelTlsPort = await freePort();
    servers.push(
      await startRedis({
        sentinel: [
          ...tls(sentinelTlsPort).map((kv) => kv.join(' ')),
          `sentinel monitor orders 127.0.0.1 ${primaryTlsPort} 1`,
          'sentinel down-after-milliseconds orders 5000',
        ],
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('REDIS_TLS_CA with REDIS_SENTINELS: TLS to the Sentinel and to the primary it names', async () => {
    const config = loadConfig('api-gateway', {
      REDIS_SENTINELS: `localhost:${sentinelTlsPort}`,
      REDIS_SENTINEL_NAME: 'orders',
      REDIS_TLS_CA: files.ca,
      REDIS_MIN_REPLICAS: '0',
      RABBITMQ_URLS: 'amqp://127.0.0.1:5672',
    });
    const redis: RedisClient = createRedis(config.redis, { overrides: { connectTimeout: 2000 } });
    redis.on('error', () => undefined);
    try {
      await redisReady(redis, 15_000);
      await redis.set('tls-sentinel', 'yes');
      expect(await redis.get('tls-sentinel')).toBe('yes');
      console.log(`tls sentinel: wrote and read the primary named by the Sentinel on its TLS port ${sentinelTlsPort}`);
    } finally {
      redis.disconnect();
    }
  }, 30_000);
});

describe('the TLS options createRedis builds', () => {
  const sentinel = { sentinels: [{ host: 'sentinel1', port: 26379 }], sentinelName: 'orders' };

  it('standalone: rediss:// alone turns TLS on (ioredis reads the scheme); REDIS_TLS_CA adds its CA', () => {
    expect(redisTlsOptions({ url: 'rediss://redis:6380' })).toEqual({});
    expect(redisTlsOptions({ url: 'redis://redis:6379' })).toEqual({});
    const d = mkdtempSync(path.join(tmpdir(), 'op-tls-opts-'));
    try {
      const ca = path.join(d, 'ca.crt');
      writeFileSync(ca, 'a CA');
      expect(redisTlsOptions({ url: 'rediss://redis:6380', tlsCa: ca })).toEqual({ tls: { ca: readFileSync(ca) } });
      // With Sentinel: both kinds of connection, one CA.
      const withCa = redisTlsOptions({ url: 'redis://127.0.0.1:6379', ...sentinel, tlsCa: ca });
      expect(withCa).toEqual({ tls: { ca: readFileSync(ca) }, sentinelTLS: { ca: readFileSync(ca) }, enableTLSForSentinelMode: true });
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('Sentinel: TLS with the system CAs when REDIS_URL is rediss://, none for redis://', () => {
    expect(redisTlsOptions({ url: 'rediss://redis:6380', ...sentinel })).toEqual({
      tls: {},
      sentinelTLS: {},
      enableTLSForSentinelMode: true,
    });
    expect(redisTlsOptions({ url: 'redis://127.0.0.1:6379', ...sentinel })).toEqual({});
  });
});
