// "The least a gateway can do": a minimal Koa app that reads the body, makes one confirmed publish
// of it into a scratch queue and answers 202. No validation, no idempotency, no logging. The
// benchmark measures it exactly like the real gateway, as the reference the gateway is held to.
//
// Environment: BENCH_AMQP_URL, BENCH_QUEUE (declared by the benchmark), PORT (0 = any free port).
// Prints {"port": N} on stdout once listening.

import amqp from 'amqplib';
import Koa from 'koa';
import getRawBody from 'raw-body';

const url = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const queue = process.env.BENCH_QUEUE ?? 'bench.scratch';

const connection = await amqp.connect(url);
const channel = await connection.createConfirmChannel();

const app = new Koa();
app.use(async (ctx) => {
  const body = await getRawBody(ctx.req, { limit: 16 * 1024 });
  await new Promise((resolve, reject) => {
    channel.publish('', queue, body, { persistent: true, contentType: 'application/json' }, (err) => (err ? reject(err) : resolve(undefined)));
  });
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
  connection.close().finally(() => process.exit(0));
});
