// "The least a gateway can do": a minimal Koa app that reads the body, makes one confirmed publish
// of it into a scratch queue and answers 202. No validation, no idempotency, no logging. The
// benchmark measures it exactly like the real gateway, as the reference the gateway is held to.
//
// With LEAST_REDIS_URL it also does the least idempotency can cost: a plain `SET NX PX` claim
// of the order id before the publish and a plain `SET EX` after the confirm (two round trips, no
// Lua, no fingerprint). The gap between the two variants is what any Redis-based idempotency
// costs on the machine, before validation, metrics and logging.
//
// Environment: BENCH_AMQP_URL, BENCH_QUEUE (declared by the benchmark), LEAST_REDIS_URL
// (optional), PORT (0 = any free port). Prints {"port": N} on stdout once listening.

import amqp from 'amqplib';
import { Redis } from 'ioredis';
import Koa from 'koa';
import getRawBody from 'raw-body';

const url = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const queue = process.env.BENCH_QUEUE ?? 'bench.scratch';

const connection = await amqp.connect(url);
const channel = await connection.createConfirmChannel();

const redis = process.env.LEAST_REDIS_URL ? new Redis(process.env.LEAST_REDIS_URL, { enableAutoPipelining: true }) : undefined;

const app = new Koa();
app.use(async (ctx) => {
  const body = await getRawBody(ctx.req, { limit: 16 * 1024 });
  const key = redis ? `bench:least:${JSON.parse(body.toString()).id}` : '';
  if (redis && (await redis.set(key, 'inflight', 'PX', 5000, 'NX')) !== 'OK') {
    ctx.status = 409;
    return;
  }
  await new Promise((resolve, reject) => {
    channel.publish('', queue, body, { persistent: true, contentType: 'application/json' }, (err) =>
      err ? reject(err) : resolve(undefined),
    );
  });
  if (redis) await redis.set(key, 'accepted', 'EX', 3600);
  ctx.status = 202;
  ctx.body = '{"status":"accepted"}';
  ctx.type = 'application/json';
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
});

process.on('SIGTERM', () => {
  server.close();
  redis?.disconnect();
  connection.close().finally(() => process.exit(0));
});
