// Bearer tokens on the gateway against real Redis and RabbitMQ: every refusal of the table
// (401 with its RFC 6750 challenge, 403 without the scope) writes nothing to Redis and publishes
// nothing; an accepted token's subject is the order's placedBy and the history's "by"; /healthz
// and /readyz stay open; /metrics wants METRICS_BEARER_TOKEN. The JWKS case fetches its keys
// from a local HTTP server serving keys made with jose.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { Channel, ChannelModel } from 'amqplib';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { pino } from 'pino';
import {
  ConfigError,
  createRedis,
  keys,
  loadConfig,
  queues,
  redisReady,
  type Broker,
  type Config,
  type Logger,
  type RedisClient,
} from '@order-pipeline/shared';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { drainQueue, newBroker, openTopologyChannel } from '../../test/helpers/broker.js';
import { expectDocumented } from '../../test/helpers/openapi.js';
import { resetAll, testServers } from '../../test/helpers/servers.js';
import { start, type Gateway } from '../src/app.js';

const { redisUrl, rabbitmqUrls } = testServers();
const SECRET = 'a-test-secret-of-at-least-32-bytes-long!';
const ISSUER = 'https://issuer.test/';
const AUDIENCE = 'order-pipeline';
const METRICS_TOKEN = 'scrape-me-please';

const logLines: Record<string, unknown>[] = [];
const log: Logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  }),
);

function configFor(extra: Record<string, string>): Config {
  return loadConfig('api-gateway', { REDIS_URL: redisUrl, RABBITMQ_URLS: rabbitmqUrls.join(','), LOG_LEVEL: 'silent', ...extra });
}

let redis: RedisClient;
let gwRedis: RedisClient;
let broker: Broker;
let gw: Gateway;
let jwksGw: Gateway;
let jwksServer: Server;
let amqp: ChannelModel;
let ch: Channel;
let rsa: CryptoKeyPair;
let ec: CryptoKeyPair;

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  redis = createRedis({ url: redisUrl });
  gwRedis = createRedis({ url: redisUrl });
  const config = configFor({
    AUTH_JWT_SECRET: SECRET,
    AUTH_JWT_ISSUER: ISSUER,
    AUTH_JWT_AUDIENCE: AUDIENCE,
    METRICS_BEARER_TOKEN: METRICS_TOKEN,
  });
  broker = newBroker(config, log, 'gateway-auth-test');
  await Promise.all([redisReady(redis), redisReady(gwRedis), broker.connection.connect({ timeout: 20_000 })]);
  ({ amqp, ch } = await openTopologyChannel(rabbitmqUrls[0] as string, config.queueType));
  gw = await start({ config, redis: gwRedis, broker, log, port: 0, host: '127.0.0.1' });

  // The issuer's key set: one RS256 and one ES256 key, as an identity provider serves them.
  rsa = await generateKeyPair('RS256');
  ec = await generateKeyPair('ES256');
  const jwks: { keys: JWK[] } = {
    keys: [
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ],
  };
  jwksServer = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(jwks));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  jwksGw = await start({
    config: configFor({ AUTH_JWKS_URL: jwksUrl, AUTH_JWT_ISSUER: ISSUER }),
    redis: gwRedis,
    broker,
    log,
    port: 0,
    host: '127.0.0.1',
  });
});

afterAll(async () => {
  await gw?.stop();
  await jwksGw?.stop();
  jwksServer?.close();
  await amqp?.close().catch(() => undefined);
  await broker?.close();
  gwRedis?.disconnect();
  redis?.disconnect();
});

beforeEach(async () => {
  await drainQueue(ch, queues.orders);
});

interface Claims {
  sub?: string;
  scope?: string;
  iss?: string;
  aud?: string;
  exp?: number | string;
  nbf?: number | string;
}

const now = () => Math.floor(Date.now() / 1000);

async function hs256(claims: Claims, secret = SECRET): Promise<string> {
  const jwt = new SignJWT({ ...(claims.scope === undefined ? {} : { scope: claims.scope }) }).setProtectedHeader({ alg: 'HS256' });
  if (claims.sub !== undefined) jwt.setSubject(claims.sub);
  jwt.setIssuer(claims.iss ?? ISSUER).setAudience(claims.aud ?? AUDIENCE);
  jwt.setExpirationTime(claims.exp ?? '10m');
  if (claims.nbf !== undefined) jwt.setNotBefore(claims.nbf);
  return jwt.sign(new TextEncoder().encode(secret));
}

async function signed(alg: 'RS256' | 'ES256', kid: string, claims: Claims, key: CryptoKey): Promise<string> {
  return new SignJWT({ scope: claims.scope ?? 'orders:write orders:read' })
    .setProtectedHeader({ alg, kid })
    .setSubject(claims.sub ?? 'jwks-user')
    .setIssuer(claims.iss ?? ISSUER)
    .setExpirationTime('10m')
    .sign(key);
}

/** An unsecured JWT (RFC 7519 section 6): header alg none, empty signature. */
function unsigned(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
}

interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function request(path: string, init: RequestInit & { token?: string } = {}, base = gw.address): Promise<Reply> {
  const headers = new Headers(init.headers);
  if (init.token !== undefined) headers.set('authorization', `Bearer ${init.token}`);
  const res = await fetch(base + path, { ...init, headers });
  const text = await res.text();
  expectDocumented({ method: init.method ?? 'GET', path, status: res.status, headers: res.headers, body: text });
  return { status: res.status, headers: res.headers, body: /json/.test(res.headers.get('content-type') ?? '') ? JSON.parse(text) : {} };
}

function post(path: string, body: unknown, token?: string, base?: string): Promise<Reply> {
  return request(
    path,
    {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(token === undefined ? {} : { token }),
    },
    base,
  );
}

/** Every key and its value: what a refused request must leave exactly as it was. */
async function redisState(): Promise<Record<string, string>> {
  const state: Record<string, string> = {};
  for (const key of (await redis.keys('*')).sort()) state[key] = ((await redis.dumpBuffer(key)) ?? Buffer.alloc(0)).toString('hex');
  return state;
}

const order = (id: string) => ({ id, sku: 'sku-auth', qty: 1 });

describe('with AUTH_JWT_SECRET, a request the token does not allow changes nothing', () => {
  const refusals: [string, () => Promise<string | undefined>, RegExp][] = [
    ['no token', async () => undefined, /^Bearer realm="order-pipeline"$/],
    ['a malformed token', async () => 'not.a.jwt', /error="invalid_token", error_description="the token is malformed"/],
    [
      'a forged token (another secret)',
      () => hs256({ sub: 'mallory', scope: 'orders:write' }, 'another-secret-of-at-least-32-bytes!!'),
      /error="invalid_token".*signature/,
    ],
    ['an expired token', () => hs256({ sub: 'alice', scope: 'orders:write', exp: now() - 3600 }), /error="invalid_token".*expired/],
    [
      'a token not valid yet',
      () => hs256({ sub: 'alice', scope: 'orders:write', nbf: now() + 3600 }),
      /error="invalid_token".*not valid yet/,
    ],
    [
      'a token of another issuer',
      () => hs256({ sub: 'alice', scope: 'orders:write', iss: 'https://evil.test/' }),
      /error="invalid_token".*issuer/,
    ],
    [
      'a token for another audience',
      () => hs256({ sub: 'alice', scope: 'orders:write', aud: 'billing' }),
      /error="invalid_token".*audience/,
    ],
    ['a token without a subject', () => hs256({ scope: 'orders:write' }), /error="invalid_token".*sub/],
    [
      'an unsigned token (alg none)',
      async () => unsigned({ sub: 'alice', scope: 'orders:write', iss: ISSUER, aud: AUDIENCE, exp: now() + 600 }),
      /error="invalid_token"/,
    ],
  ];

  it.each(refusals)('%s: 401 with WWW-Authenticate, nothing written, nothing published', async (_what, token, challenge) => {
    const before = await redisState();
    const r = await post('/orders', order('auth-refused-1'), await token());
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ type: '/problems/unauthorized', status: 401 });
    expect(r.headers.get('www-authenticate')).toMatch(challenge);
    // The same for a cancel and a restock.
    expect((await post('/orders/auth-refused-1/cancel', {}, await token())).status).toBe(401);
    expect((await post('/inventory/sku-auth/adjust', { delta: 5 }, await token())).status).toBe(401);
    expect(await redisState()).toEqual(before);
    expect(await drainQueue(ch, queues.orders)).toHaveLength(0);
  });

  it('a valid token without the scope: 403 insufficient_scope naming it, nothing written or published', async () => {
    const reader = await hs256({ sub: 'reader', scope: 'orders:read inventory:read' });
    const before = await redisState();
    const r = await post('/orders', order('auth-refused-2'), reader);
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ type: '/problems/insufficient-scope', scope: 'orders:write' });
    expect(r.headers.get('www-authenticate')).toBe('Bearer realm="order-pipeline", error="insufficient_scope", scope="orders:write"');
    expect((await post('/orders/x/cancel', {}, reader)).status).toBe(403);
    expect(
      (
        await request('/inventory/sku-auth', {
          method: 'PUT',
          token: reader,
          headers: { 'content-type': 'application/json' },
          body: '{"available":9}',
        })
      ).status,
    ).toBe(403);
    expect(await redisState()).toEqual(before);
    expect(await drainQueue(ch, queues.orders)).toHaveLength(0);

    const writer = await hs256({ sub: 'writer', scope: 'orders:write inventory:write' });
    expect((await request('/orders', { token: writer })).status).toBe(403);
    expect((await request('/orders/auth-refused-2', { token: writer })).status).toBe(403);
    expect((await request('/inventory', { token: writer })).status).toBe(403);
    expect((await request('/inventory/sku-auth', { token: writer })).status).toBe(403);
  });

  it('a token with the scope: the order is placed, its placedBy and history name the subject, as does the cancel', async () => {
    const alice = await hs256({ sub: 'alice', scope: 'orders:write orders:read' });
    const r = await post('/orders', order('auth-ok-1'), alice);
    expect(r.status).toBe(202);
    expect(await drainQueue(ch, queues.orders)).toHaveLength(1);
    expect(await redis.hget(keys.order('auth-ok-1'), 'placedBy')).toBe('alice');

    // A replay by another caller: placedBy is not part of the fingerprint, so the same payload is
    // the same order (200, the first answer); it stays alice's.
    const bob = await hs256({ sub: 'bob', scope: 'orders:write orders:read' });
    const again = await post('/orders', order('auth-ok-1'), bob);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');

    expect((await post('/orders/auth-ok-1/cancel', { reason: 'changed my mind' }, bob)).status).toBe(202);
    const view = await request('/orders/auth-ok-1', { token: alice });
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({ placedBy: 'alice', cancelRequestedBy: 'bob' });
    expect(view.body.history).toEqual([
      { at: expect.any(String), event: 'accepted', by: 'alice' },
      { at: expect.any(String), event: 'cancel_requested', reason: 'changed my mind', by: 'bob' },
    ]);
    // The subject is logged with the request.
    expect(logLines.some((l) => l.sub === 'bob' && l.orderId === 'auth-ok-1' && l.msg === 'cancellation requested')).toBe(true);
  });

  it('a stock change is logged with the subject that made it', async () => {
    const ops = await hs256({ sub: 'ops-1', scope: 'inventory:write inventory:read' });
    const put = await request('/inventory/sku-auth-2', {
      method: 'PUT',
      token: ops,
      headers: { 'content-type': 'application/json' },
      body: '{"available":7}',
    });
    expect(put.status).toBe(200);
    expect((await post('/inventory/sku-auth-2/adjust', { delta: 3 }, ops)).body).toEqual({ sku: 'sku-auth-2', available: 10 });
    expect(logLines.filter((l) => l.sub === 'ops-1' && l.sku === 'sku-auth-2').map((l) => l.kind)).toEqual(['set', 'adjust']);
    expect((await request('/inventory/sku-auth-2', { token: ops })).body).toEqual({ sku: 'sku-auth-2', available: 10 });
  });

  it('/healthz and /readyz stay open; /metrics wants METRICS_BEARER_TOKEN, compared whole', async () => {
    expect((await request('/healthz')).status).toBe(200);
    expect((await request('/readyz')).status).toBe(200);
    const none = await request('/metrics');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="metrics"');
    expect((await request('/metrics', { token: METRICS_TOKEN.slice(0, -1) })).status).toBe(401);
    expect((await request('/metrics', { token: await hs256({ sub: 'alice', scope: 'orders:read' }) })).status).toBe(401);
    const ok = await fetch(`${gw.address}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toMatch(/gateway_orders_total/);
  });
});

describe('with AUTH_JWKS_URL, keys fetched from the issuer', () => {
  it('takes RS256 and ES256 tokens of the key set', async () => {
    const r1 = await post(
      '/orders',
      order('auth-jwks-1'),
      await signed('RS256', 'rsa-1', { sub: 'rs-user' }, rsa.privateKey),
      jwksGw.address,
    );
    expect(r1.status).toBe(202);
    const r2 = await post(
      '/orders',
      order('auth-jwks-2'),
      await signed('ES256', 'ec-1', { sub: 'es-user' }, ec.privateKey),
      jwksGw.address,
    );
    expect(r2.status).toBe(202);
    expect(await redis.hget(keys.order('auth-jwks-2'), 'placedBy')).toBe('es-user');
    expect(await drainQueue(ch, queues.orders)).toHaveLength(2);
  });

  it('refuses a key it does not hold, an HS256 token, another issuer: 401, nothing written', async () => {
    const stranger = await generateKeyPair('RS256');
    const tokens = [
      await signed('RS256', 'rsa-1', {}, stranger.privateKey),
      await signed('RS256', 'rsa-unknown', {}, stranger.privateKey),
      await hs256({ sub: 'alice', scope: 'orders:write' }),
      await signed('ES256', 'ec-1', { iss: 'https://evil.test/' }, ec.privateKey),
    ];
    const before = await redisState();
    for (const token of tokens) {
      const r = await post('/orders', order('auth-jwks-refused'), token, jwksGw.address);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    }
    expect(await redisState()).toEqual(before);
    expect(await drainQueue(ch, queues.orders)).toHaveLength(0);
  });
});

describe('auth configuration', () => {
  const base = { REDIS_URL: 'redis://127.0.0.1:1', RABBITMQ_URLS: 'amqp://127.0.0.1:1' };
  const error = (env: Record<string, string>): ConfigError => {
    try {
      loadConfig('api-gateway', { ...base, ...env });
    } catch (err) {
      if (err instanceof ConfigError) return err;
    }
    throw new Error('no ConfigError');
  };

  it('is off by default', () => {
    expect(loadConfig('api-gateway', base).auth).toBeUndefined();
  });

  it('refuses a secret and a JWKS URL together, a JWKS URL without issuer or audience, a short secret', () => {
    expect(error({ AUTH_JWT_SECRET: SECRET, AUTH_JWKS_URL: 'https://idp.test/jwks', AUTH_JWT_ISSUER: ISSUER }).variable).toBe(
      'AUTH_JWKS_URL',
    );
    expect(error({ AUTH_JWKS_URL: 'https://idp.test/jwks' }).message).toMatch(/AUTH_JWT_ISSUER: or AUTH_JWT_AUDIENCE is required/);
    expect(error({ AUTH_JWT_SECRET: 'short' }).variable).toBe('AUTH_JWT_SECRET');
    expect(error({ AUTH_JWT_ISSUER: ISSUER }).message).toMatch(/needs AUTH_JWT_SECRET or AUTH_JWKS_URL/);
  });

  it('in production refuses the guest user and its default password', () => {
    const prod = { NODE_ENV: 'production', REDIS_URL: 'redis://:s3cr3t-long@redis:6379' };
    expect(error({ ...prod, RABBITMQ_URLS: 'amqp://guest:guest@rabbit:5672' }).message).toMatch(
      /RABBITMQ_URLS: must not use the "guest" user/,
    );
    expect(error({ ...prod, RABBITMQ_URLS: 'amqp://orders:guest@rabbit:5672' }).message).toMatch(/default password/);
    expect(
      error({ NODE_ENV: 'production', REDIS_URL: 'redis://:guest@redis:6379', RABBITMQ_URLS: 'amqp://o:p4ss-w0rd@r:5672' }).variable,
    ).toBe('REDIS_URL');
    expect(loadConfig('api-gateway', { ...prod, RABBITMQ_URLS: 'amqp://orders:p4ss-w0rd@rabbit:5672' }).production).toBe(true);
  });

  it('never shows a password in a configuration error', () => {
    const wrong = error({ RABBITMQ_URLS: 'http://orders:top-secret-1@rabbit:5672' });
    expect(wrong.message).toContain('http://orders:***@rabbit:5672');
    expect(wrong.message).not.toContain('top-secret-1');
    expect(error({ REDIS_URL: 'redis://:top-secret-2@' }).message).not.toContain('top-secret-2');
  });
});
