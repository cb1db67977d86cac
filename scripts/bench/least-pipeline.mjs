// "The least a pipeline can do" after its door (the least gateway's one confirmed publish): the
// same hops as order-processor and notifier with nothing else. LEAST_ROLE=processor consumes
// BENCH_IN_QUEUE, runs one Redis script (a once-only reservation: SET NX of the order's status,
// then DECRBY of the stock) and publishes a confirmed outcome into BENCH_OUT_QUEUE;
// LEAST_ROLE=notifier consumes BENCH_IN_QUEUE and writes one Redis key (the time it was notified,
// as a field of the hash BENCH_SENT_KEY, which the benchmark reads). Both ack each delivery after
// its work (the processor after the outcome's confirm). No validation, logging, metrics or tracing.
//
// Environment: LEAST_ROLE, BENCH_AMQP_URL, LEAST_REDIS_URL, BENCH_IN_QUEUE, BENCH_OUT_QUEUE
// (processor), BENCH_SENT_KEY (notifier), PREFETCH (100, the services' default). Prints
// {"ready": true} on stdout once consuming.

import amqp from 'amqplib';
import { Redis } from 'ioredis';

const env = process.env;
const role = env.LEAST_ROLE;
if (role !== 'processor' && role !== 'notifier') throw new Error(`LEAST_ROLE must be processor or notifier, got ${role}`);
const inQueue = env.BENCH_IN_QUEUE ?? '';
const outQueue = env.BENCH_OUT_QUEUE ?? '';
const sentKey = env.BENCH_SENT_KEY ?? 'bench:least:sent';

const redis = new Redis(env.LEAST_REDIS_URL ?? 'redis://127.0.0.1:6379', { enableAutoPipelining: true });
// The one script: a redelivered copy finds the status set and reserves nothing.
redis.defineCommand('leastReserve', {
  numberOfKeys: 2,
  lua: "if redis.call('SET', KEYS[1], 'created', 'NX') then redis.call('DECRBY', KEYS[2], ARGV[1]) return 1 end return 0",
});
const reserve = /** @type {(status: string, stock: string, qty: number) => Promise<number>} */ (
  /** @type {any} */ (redis).leastReserve.bind(redis)
);

const connection = await amqp.connect(env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
const channel = await connection.createConfirmChannel();
await channel.prefetch(Number(env.PREFETCH ?? 100));

/** @param {import('amqplib').ConsumeMessage} msg */
async function processOne(msg) {
  const order = JSON.parse(msg.content.toString());
  await reserve(`bench:least:order:${order.id}`, `bench:least:stock:${order.sku}`, Number(order.qty));
  await new Promise((resolve, reject) => {
    channel.publish(
      '',
      outQueue,
      Buffer.from(JSON.stringify({ id: order.id })),
      { persistent: true, contentType: 'application/json' },
      (err) => (err ? reject(err) : resolve(undefined)),
    );
  });
}

/** @param {import('amqplib').ConsumeMessage} msg */
async function notifyOne(msg) {
  const { id } = JSON.parse(msg.content.toString());
  await redis.hset(sentKey, id, String(Date.now()));
}

const handle = role === 'processor' ? processOne : notifyOne;
await channel.consume(inQueue, (msg) => {
  if (!msg) return;
  handle(msg).then(
    () => channel.ack(msg),
    () => channel.nack(msg, false, true),
  );
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);

process.on('SIGTERM', () => {
  redis.disconnect();
  connection.close().finally(() => process.exit(0));
});
