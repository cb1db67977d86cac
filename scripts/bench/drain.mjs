// Consumers' cost per order, without the gateway or an HTTP load generator in the way: starts a
// throwaway Redis and one RabbitMQ node, the built order-processor and notifier, then publishes
// DRAIN_ORDERS order.placed messages (300 confirmed publishes in flight) and waits until every
// one is notified. Prints the drain rate and the CPU time per order of the processor, the notifier,
// Redis and RabbitMQ (the broker's figure includes taking the loader's publishes).
//
//   npm run build && node scripts/bench/drain.mjs
//
// Environment: DRAIN_ORDERS (15000), DRAIN_ROUNDS (3; fresh consumer processes each round),
// QUEUE_TYPE (quorum), PREFETCH (service default).

import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { freePort, startRabbitCluster, startRedis } from '../local-servers.mjs';
import { waitFor } from '../poll.mjs';
import { cpuSeconds } from './load.mjs';

/** @type {typeof import('@order-pipeline/shared')} */
const shared = await import(new URL('../../shared/dist/index.js', import.meta.url).href);
const ROOT = new URL('../../', import.meta.url);
const N = Number(process.env.DRAIN_ORDERS ?? 15_000);
const ROUNDS = Number(process.env.DRAIN_ROUNDS ?? 3);
const queueType = process.env.QUEUE_TYPE ?? 'quorum';

const redisServer = await startRedis();
const rabbit = await startRabbitCluster({ nodes: 1 });
const stopServers = async () => {
  await rabbit.stop().catch(() => undefined);
  await redisServer.stop().catch(() => undefined);
};
// Bounded in time whatever happens.
setTimeout(() => {
  console.error('drain: still running after 10 minutes; giving up');
  void stopServers().finally(() => process.exit(2));
}, 600_000).unref();

const redis = shared.createRedis({ url: redisServer.url });
await shared.redisReady(redis);
await redis.set(shared.keys.inventory('drain-sku'), String(1e12));
const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
const [node] = rabbit.nodes;
if (!node) throw new Error('the broker started no node');
const beamPid = Number((await node.ctl('eval', 'list_to_integer(os:getpid()).')).trim());
const devNull = openSync('/dev/null', 'w');
const conn = await amqp.connect(rabbit.urls[0] ?? '');
const ch = await conn.createConfirmChannel();
const perOrder = (/** @type {number} */ before, /** @type {number | undefined} */ after) =>
  after === undefined ? undefined : Math.round(((after - before) / N) * 1e6);

let seq = 0;
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const env = {
      ...process.env,
      REDIS_URL: redisServer.url,
      RABBITMQ_URLS: rabbit.urls.join(','),
      QUEUE_TYPE: queueType,
      LOG_LEVEL: 'info',
    };
    const services = [];
    for (const [svc, portVar] of /** @type {const} */ ([
      ['order-processor', 'PROCESSOR_PORT'],
      ['notifier', 'NOTIFIER_PORT'],
    ])) {
      const port = await freePort();
      const child = spawn(process.execPath, [`${svc}/dist/main.js`], {
        cwd: ROOT,
        env: { ...env, [portVar]: String(port) },
        stdio: ['ignore', devNull, devNull],
      });
      services.push({ child, port });
    }
    for (const { port } of services) {
      await waitFor(
        `service on :${port} ready`,
        async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined),
        60_000,
      );
    }
    const sentKey = shared.keys.stats.notificationsSent;
    const before = Number((await redis.get(sentKey)) ?? 0);
    const cpu0 = [...services.map((s) => cpuSeconds(s.child.pid) ?? 0), cpuSeconds(redisPid) ?? 0, cpuSeconds(beamPid) ?? 0];
    const t0 = performance.now();
    let inFlight = 0;
    for (let i = 0; i < N; i++) {
      const { content, options } = shared.encodeEvent(
        shared.makeEvent(shared.routingKeys.placed, { id: `drain-${seq++}`, sku: 'drain-sku', qty: 1 }),
      );
      while (inFlight >= 300) await sleep(1);
      inFlight++;
      ch.publish(shared.exchanges.direct, shared.routingKeys.placed, content, options, () => inFlight--);
    }
    const deadline = Date.now() + 300_000;
    while (Number((await redis.get(sentKey)) ?? 0) - before < N) {
      if (Date.now() > deadline) throw new Error('orders not all notified within 5 minutes');
      await sleep(20);
    }
    const seconds = (performance.now() - t0) / 1000;
    const [proc, notif, red, beam] = [...services.map((s) => s.child.pid), redisPid, beamPid].map((pid, i) =>
      perOrder(cpu0[i] ?? 0, cpuSeconds(pid)),
    );
    console.log(
      `round ${round}: ${Math.round(N / seconds)} orders/s; CPU µs per order: processor ${proc}, notifier ${notif}, redis ${red}, rabbitmq ${beam}`,
    );
    for (const { child } of services) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
} finally {
  await conn.close().catch(() => undefined);
  redis.disconnect();
  await stopServers();
}
process.exit(0);
