#!/usr/bin/env node
// `npm run bench`: how much the pipeline sustains and how fast it answers, as ratios against
// references measured in the same run on the same machine (absolute figures depend on the machine
// and on what else runs on it).
//
// Per setup (one RabbitMQ node, then a three-node cluster with quorum queues replicated to 3):
//   - broker ceiling: confirmed publishes/s of one amqplib client, many in flight, order.placed-sized
//     messages into a scratch queue of the same type;
//   - Redis SET NX/s through one ioredis client, many in flight;
//   - least gateway: a minimal Koa app (read body, one confirmed publish, 202), under autocannon;
//   - gateway: the built api-gateway, under autocannon with a unique id per request;
//   - pipeline: all services; the highest fixed rate whose orders are all notified without a
//     growing backlog (bisection), then end-to-end latency (request start -> notification sentAt)
//     at half that rate.
// Then, on the last setup, every broker node is killed while requests keep coming: the gateway's
// RSS before and after.
// Before the single-node setup, what WAIT costs: against a Redis primary, its replicas and three
// Sentinels (the services given REDIS_SENTINELS only), the gateway at saturation and the pipeline
// draining the gateway's backlog, with REDIS_MIN_REPLICAS=1 and with 0, in interleaved rounds;
// reported as the ratios WAIT on / WAIT off (about 90 s with the defaults).
//
// It starts its own throwaway Redis and RabbitMQ (scripts/local-servers.mjs) unless given
// BENCH_REDIS_URL and BENCH_RABBITMQ_URLS (single node) / BENCH_RABBITMQ_CLUSTER_URLS. Servers given
// by URL must be throwaway ones too: the benchmark purges orders.queue and notifier.queue.
//
// Knobs (environment): BENCH_DURATION_S (8) seconds per saturation run, BENCH_STEP_S (6) seconds
// per fixed-rate step, BENCH_PROBES (4) bisection steps, BENCH_ROUNDS (3) interleaved rounds of
// the three saturation runs (least gateway, with idempotency, gateway), BENCH_CONNECTIONS (64) autocannon
// connections, BENCH_CLUSTER (1; 0 skips the cluster), BENCH_OUTAGE_S (60; 0 skips the outage),
// BENCH_OUTAGE_RATE (200 req/s during the outage), BENCH_QUEUE_TYPE (quorum), BENCH_LOG_LEVEL
// (info, the services' LOG_LEVEL), BENCH_CPU_PROF (a folder: the services run with --cpu-prof into
// it), BENCH_OUT (bench/results), BENCH_KEEP_LOGS (1 keeps the services' logs), BENCH_MAX_S (900,
// the run gives up after it), BENCH_WAIT (1; 0 skips the WAIT phase), BENCH_WAIT_REPLICAS (2
// replicas in its Sentinel group), BENCH_REDIS_SENTINELS and BENCH_REDIS_SENTINEL_NAME (orders: a
// throwaway Sentinel group to use instead of starting one). PREFETCH, PUBLISH_TIMEOUT_MS and
// REDIS_WAIT_TIMEOUT_MS pass through to the services.

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { freePort, startRabbitCluster, startRedis } from './local-servers.mjs';
import { waitFor } from './poll.mjs';
import {
  brokerCeiling,
  cannon,
  cpuSeconds,
  histogramBetween,
  paced,
  redisSetNxRate,
  rssMiB,
  sampleRss,
  scrapeHistograms,
} from './bench/load.mjs';
import { chartSvg, formatTable, medianRound, percentile, ratio, summarize, tableRows, waitRounds } from './bench/report.mjs';
import { startSentinelGroup } from './bench/sentinels.mjs';

/**
 * Resolves once orders.queue stops growing (two equal depths a second apart): autocannon stops
 * with requests in flight, and each ends within the publish timeout.
 * @param {() => Promise<number>} depth  orders.queue's depth now
 */
function ordersQueueSettled(depth) {
  let last = -1;
  return waitFor(
    'orders.queue to settle',
    async () => {
      const now = await depth();
      const settled = now === last;
      last = now;
      return settled ? true : undefined;
    },
    30_000,
    1000,
  );
}

/** @typedef {typeof import('@order-pipeline/shared')} SharedModule */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const env = process.env;
const num = (/** @type {string} */ name, /** @type {number} */ def) => {
  const v = env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`bench: ${name} must be a non-negative number, got "${v}"\n`);
    process.exit(1);
  }
  return n;
};
const settings = {
  durationS: num('BENCH_DURATION_S', 8),
  stepS: num('BENCH_STEP_S', 6),
  probes: num('BENCH_PROBES', 4),
  rounds: Math.max(1, num('BENCH_ROUNDS', 3)),
  connections: num('BENCH_CONNECTIONS', 64),
  cluster: env.BENCH_CLUSTER !== '0',
  outageS: num('BENCH_OUTAGE_S', 60),
  outageRate: num('BENCH_OUTAGE_RATE', 200),
  queueType: env.BENCH_QUEUE_TYPE ?? 'quorum',
  logLevel: env.BENCH_LOG_LEVEL ?? 'info',
  prefetch: env.PREFETCH ?? '100 (default)',
  publishTimeoutMs: env.PUBLISH_TIMEOUT_MS ?? '2000 (default)',
  brokerCeilingInFlight: 500,
  redisInFlight: 500,
  cpuProf: env.BENCH_CPU_PROF ? path.resolve(env.BENCH_CPU_PROF) : undefined,
  wait: env.BENCH_WAIT !== '0',
  waitReplicas: Math.max(1, num('BENCH_WAIT_REPLICAS', 2)),
};
const OUT = path.resolve(ROOT, env.BENCH_OUT ?? 'bench/results');
const startedAt = new Date();
const runId = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
const t0 = performance.now();
// Other work on the machine skews every figure; the load average says how much there was.
const loadAverageAtStart = os.loadavg().map((v) => Math.round(v * 100) / 100);

const say = (/** @type {string} */ m) =>
  process.stdout.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(3)}s] ${m}\n`);

// ---------------------------------------------------------------------------------------------
// Cleanup: every child and server this run started goes away, however it ends.

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();
/** @type {Array<() => Promise<void>>} */
const serverStops = [];
const logDir = mkdtempSync(path.join(os.tmpdir(), 'order-pipeline-bench-'));
let cleaning = false;
async function cleanup() {
  if (cleaning) return;
  cleaning = true;
  for (const c of children) c.kill('SIGKILL');
  for (const stop of serverStops.splice(0).reverse()) await stop().catch(() => undefined);
  if (env.BENCH_KEEP_LOGS) say(`service logs kept in ${logDir}`);
  else rmSync(logDir, { recursive: true, force: true });
}
for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(sig, () => {
    say(`${sig}: stopping`);
    void cleanup().finally(() => process.exit(130));
  });
}
// Bounded in time whatever happens.
const MAX_S = num('BENCH_MAX_S', 900);
setTimeout(() => {
  say(`still running after ${MAX_S} s; giving up`);
  void cleanup().finally(() => process.exit(2));
}, MAX_S * 1000).unref();

// ---------------------------------------------------------------------------------------------
// Processes

/**
 * Starts `script` (relative to the root) with node, output into a log file.
 * @param {string} name
 * @param {string} script
 * @param {Record<string, string>} extraEnv
 */
function startNode(name, script, extraEnv) {
  const out = createWriteStream(path.join(logDir, `${name}.log`));
  const prof = settings.cpuProf
    ? ['--cpu-prof', `--cpu-prof-dir=${settings.cpuProf}`, `--cpu-prof-name=${name}-${runId}-${process.hrtime.bigint()}.cpuprofile`]
    : [];
  const child = spawn(process.execPath, [...prof, script], { cwd: ROOT, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    child,
    pid: child.pid,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
      children.delete(child);
    },
    tail: () =>
      readFileSync(path.join(logDir, `${name}.log`), 'utf8')
        .split('\n')
        .slice(-15)
        .join('\n'),
  };
}

/** @param {number} port */
const ready = (port) =>
  waitFor(`:${port}/readyz`, async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined), 60_000, 200);

/**
 * @param {'api-gateway' | 'order-processor' | 'notifier'} service
 * @param {{ redisUrl: string, rabbitUrls: string[] }} servers
 * @param {Record<string, string>} [extraEnv]
 * @param {string} [logName]  the log file's name (two processes of one service run side by side)
 */
async function startService(service, servers, extraEnv = {}, logName = service) {
  const port = await freePort();
  const portVar = { 'api-gateway': 'GATEWAY_PORT', 'order-processor': 'PROCESSOR_PORT', notifier: 'NOTIFIER_PORT' }[service];
  const proc = startNode(logName, `${service}/dist/main.js`, {
    REDIS_URL: servers.redisUrl,
    // Standalone unless extraEnv names Sentinels (the WAIT phase): nothing inherited decides it.
    REDIS_SENTINELS: '',
    REDIS_SENTINEL_NAME: '',
    REDIS_MIN_REPLICAS: '',
    RABBITMQ_URLS: servers.rabbitUrls.join(','),
    QUEUE_TYPE: settings.queueType,
    LOG_LEVEL: settings.logLevel,
    [portVar]: String(port),
    ...extraEnv,
  });
  try {
    await ready(port);
  } catch (err) {
    say(`${service} did not get ready:\n${proc.tail()}`);
    throw err;
  }
  return { ...proc, port };
}

// ---------------------------------------------------------------------------------------------
// One setup: references, gateway, pipeline

/** CPU microseconds per request between two cpuSeconds readings. */
const cpuPerRequest = (
  /** @type {number | undefined} */ before,
  /** @type {number | undefined} */ after,
  /** @type {number} */ requests,
) => (before === undefined || after === undefined || requests === 0 ? undefined : Math.round(((after - before) / requests) * 1e6));

const SKU = 'bench-sku';
/** @param {string} prefix */
const orderBody = (prefix) => (/** @type {number} */ n) => {
  const id = `${prefix}-${n}`;
  return { id, text: `{"id":"${id}","sku":"${SKU}","qty":1}` };
};

/**
 * @param {string} name
 * @param {{ redisUrl: string, rabbitUrls: string[] }} servers
 * @param {SharedModule} shared  the built shared package
 * @param {boolean} withOutage
 * @param {(() => Promise<void>) | undefined} killBrokers
 */
async function runSetup(name, servers, shared, withOutage, killBrokers) {
  const tag = `b${runId.slice(-6)}${name[0]}`;
  const D = settings.durationS * 1000;
  /** @type {Record<string, any>} */
  const result = { rabbitmqNodes: servers.rabbitUrls.length };
  const redis = new Redis(servers.redisUrl, { enableAutoPipelining: true });
  const conn = await amqp.connect(servers.rabbitUrls[0] ?? '');
  // The outage kills the node under this connection: expected, not a crash.
  conn.on('error', () => undefined);
  const admin = await conn.createChannel();
  const scratch = `bench.scratch.${runId}.${name.replace(/\W+/g, '-')}`;
  await admin.assertQueue(scratch, { durable: true, arguments: { 'x-queue-type': settings.queueType } });
  const depth = async (/** @type {string} */ q) => (await admin.checkQueue(q)).messageCount;

  // An order.placed message exactly as the gateway publishes it.
  const sample = shared.encodeEvent(shared.makeEvent(shared.routingKeys.placed, { id: `${tag}-ceiling-000000`, sku: SKU, qty: 1 }));

  say(`${name}: broker confirmed-publish ceiling (${settings.durationS} s)`);
  result.brokerCeiling = await brokerCeiling({
    url: servers.rabbitUrls[0] ?? '',
    queue: scratch,
    content: sample.content,
    options: sample.options,
    durationMs: D,
    inFlight: settings.brokerCeilingInFlight,
  });
  await admin.purgeQueue(scratch);
  say(`${name}: ${result.brokerCeiling.rate} confirmed publishes/s`);

  say(`${name}: Redis SET NX rate (${settings.durationS / 2} s)`);
  result.redisSetNx = await redisSetNxRate({ redis, prefix: `bench:setnx:${tag}:`, durationMs: D / 2, inFlight: settings.redisInFlight });
  say(`${name}: ${result.redisSetNx.rate} SET NX/s`);

  let leastRuns = 0;
  /**
   * The least gateway (or, with Redis, the least gateway with idempotency) under the same load as
   * the gateway: its own process, a warm-up with its own ids, then the measured run.
   * @param {string} label
   * @param {Record<string, string>} extraEnv
   */
  const leastGatewayRun = async (label, extraEnv) => {
    say(`${name}: ${label} (${settings.durationS} s, ${settings.connections} connections)`);
    const least = startNode(`least-gateway-${name}`, 'scripts/bench/least-gateway.mjs', {
      BENCH_AMQP_URL: servers.rabbitUrls[0] ?? '',
      BENCH_QUEUE: scratch,
      PORT: '0',
      ...extraEnv,
    });
    const leastPort = await new Promise((resolve, reject) => {
      let buf = '';
      least.child.stdout?.on('data', (d) => {
        buf += String(d);
        const m = /"port":(\d+)/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
      least.child.once('exit', () => reject(new Error(`least gateway exited:\n${least.tail()}`)));
    });
    // Every run has its own ids: the idempotent variant would refuse a repeated one.
    const leastBody = orderBody(`${tag}-${extraEnv.LEAST_REDIS_URL ? 'least-idem' : 'least'}-${(leastRuns += 1)}`);
    await cannon({
      url: `http://127.0.0.1:${leastPort}`,
      body: (n) => leastBody(n).text,
      durationMs: 1000,
      connections: settings.connections,
    });
    const leastRss = sampleRss(least.pid);
    const leastCpu = cpuSeconds(least.pid);
    const measured = await cannon({
      url: `http://127.0.0.1:${leastPort}`,
      body: (n) => leastBody(n + 1e6).text,
      durationMs: D,
      connections: settings.connections,
    });
    const run = {
      ...measured,
      cpuUsPerRequest: cpuPerRequest(leastCpu, cpuSeconds(least.pid), measured.requests),
      rssMaxMiB: Math.max(0, ...leastRss.stop()),
    };
    await least.stop();
    await admin.purgeQueue(scratch);
    say(`${name}: ${label} ${run.rate} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, ${run.cpuUsPerRequest} CPU µs/request`);
    return run;
  };
  // The saturation runs move by a tenth or more from one run to the next on a shared machine, and
  // more over minutes: the three gateways are measured in interleaved rounds, each ratio is taken
  // within a round (runs seconds apart), and the median round is reported with the range.
  say(`${name}: gateway started for ${settings.rounds} round(s) of least gateway, least gateway with idempotency, gateway`);
  const gateway = await startService('api-gateway', servers);
  const gwUrl = `http://127.0.0.1:${gateway.port}`;
  const gwBody = orderBody(`${tag}-gw`);
  // Warm-up (JIT, connections) with its own ids.
  await cannon({ url: gwUrl, body: (n) => gwBody(n).text, durationMs: 1000, connections: settings.connections });
  const gatewayRun = async (/** @type {number} */ round) => {
    say(`${name}: gateway at saturation (${settings.durationS} s, ${settings.connections} connections)`);
    const gwRss = sampleRss(gateway.pid);
    const gwCpu = cpuSeconds(gateway.pid);
    const measured = await cannon({
      url: gwUrl,
      body: (n) => gwBody(n + (round + 1) * 1e6).text,
      durationMs: D,
      connections: settings.connections,
    });
    const run = {
      ...measured,
      cpuUsPerRequest: cpuPerRequest(gwCpu, cpuSeconds(gateway.pid), measured.requests),
      rssMaxMiB: Math.max(0, ...gwRss.stop()),
      rssAfterMiB: rssMiB(gateway.pid),
    };
    // Nobody consumed those orders: drop them so the next run and the pipeline start from empty
    // queues. autocannon stops with requests still in flight; each ends within the publish timeout
    // (2 s by default), so wait until the queue stops growing before purging.
    await ordersQueueSettled(() => depth(shared.queues.orders));
    await admin.purgeQueue(shared.queues.orders);
    say(
      `${name}: gateway ${run.rate} orders/s, p50 ${run.p50} ms, p99 ${run.p99} ms, ${run.cpuUsPerRequest} CPU µs/request, RSS max ${run.rssMaxMiB} MiB`,
    );
    return run;
  };
  /** @type {{ leastGateway: any, leastGatewayIdempotent: any, gateway: any }[]} */
  const rounds = [];
  for (let round = 0; round < settings.rounds; round++) {
    rounds.push({
      leastGateway: await leastGatewayRun('least gateway', {}),
      leastGatewayIdempotent: await leastGatewayRun('least gateway with idempotency', { LEAST_REDIS_URL: servers.redisUrl }),
      gateway: await gatewayRun(round),
    });
  }
  const saturation = medianRound(rounds);
  Object.assign(result, saturation.median);
  result.rounds = saturation.rounds;
  result.ratioRanges = saturation.ranges;
  say(
    `${name}: median round: least gateway ${result.leastGateway.rate}, with idempotency ${result.leastGatewayIdempotent.rate}, gateway ${result.gateway.rate} req/s; gateway / least gateway ${JSON.stringify(saturation.ranges.gatewayToLeastGateway)} over the rounds`,
  );

  say(`${name}: pipeline (order-processor, notifier)`);
  await redis.set(shared.keys.inventory(SKU), String(1e12));
  const processor = await startService('order-processor', servers);
  const notifier = await startService('notifier', servers);
  const notified = async () => Number((await redis.get(shared.keys.stats.notificationsSent)) ?? 0);

  /** @param {number} rate @param {string} stage */
  const step = async (rate, stage) => {
    const body = orderBody(`${tag}-${stage}`);
    const before = await notified();
    const cpuBefore = [gateway, processor, notifier].map((x) => cpuSeconds(x.pid));
    /** @type {number[]} */
    const backlog = [];
    let sending = true;
    let acceptedSoFar = 0;
    const sampler = (async () => {
      while (sending) {
        await sleep(500);
        backlog.push(acceptedSoFar - ((await notified()) - before));
      }
    })();
    const run = await paced({
      host: '127.0.0.1',
      port: gateway.port,
      rate,
      durationMs: settings.stepS * 1000,
      body: (n) => {
        acceptedSoFar = n; // requests sent so far: the backlog sampler's upper bound
        return body(n);
      },
    });
    // The backlog between 202 and notification as the last request goes out.
    const atEnd = run.sent.filter((r) => r.status === 202).length - ((await notified()) - before);
    const answeredSeconds = await run.answered;
    const { sent, sendSeconds } = run;
    sending = false;
    await sampler;
    const accepted = sent.filter((r) => r.status === 202);
    const queueDepth = { orders: await depth(shared.queues.orders), notifier: await depth(shared.queues.notifier) };
    const drainStart = performance.now();
    let drained = true;
    try {
      await waitFor('notifications', async () => ((await notified()) - before >= accepted.length ? true : undefined), 15_000, 100);
    } catch {
      drained = false;
    }
    const drainMs = Math.round(performance.now() - drainStart);
    const [gwUs, procUs, notUs] = [gateway, processor, notifier].map((x, i) =>
      cpuPerRequest(cpuBefore[i], cpuSeconds(x.pid), accepted.length),
    );
    const ok = {
      allAccepted: accepted.length >= 0.99 * sent.length,
      // No queue at the door either: the last answer comes soon after the last request.
      answeredInTime: answeredSeconds <= sendSeconds + 0.5,
      backlogBounded: atEnd <= Math.max(25, rate * 0.5),
      drained: drained && drainMs <= 5000,
    };
    return {
      rate: Math.round(rate),
      requests: sent.length,
      accepted: accepted.length,
      sendSeconds: Math.round(sendSeconds * 100) / 100,
      answeredSeconds: Math.round(answeredSeconds * 100) / 100,
      backlogSamples: backlog,
      backlogAtEnd: atEnd,
      queueDepthAtEnd: queueDepth,
      drainMs,
      cpuUsPerOrder: { gateway: gwUs, processor: procUs, notifier: notUs },
      responseMs: summarize(sent.filter((r) => r.status).map((r) => r.ms)),
      sustained: Object.values(ok).every(Boolean),
      checks: ok,
      sent,
    };
  };

  // Bisection between 0 and the gateway's own rate: the pipeline cannot take more than its door.
  let lo = 0;
  let hi = result.gateway.rate;
  const probes = [];
  for (let i = 0; i < settings.probes; i++) {
    const rate = Math.max(10, Math.round((lo + hi) / 2));
    say(`${name}: pipeline at ${rate} orders/s for ${settings.stepS} s`);
    const s = await step(rate, `p${i}`);
    const { sent: _sent, ...kept } = s;
    probes.push(kept);
    say(
      `${name}:   ${s.sustained ? 'sustained' : 'NOT sustained'} (accepted ${s.accepted}/${s.requests}, backlog at end ${s.backlogAtEnd}, drained in ${s.drainMs} ms, responses p99 ${s.responseMs.p99} ms, CPU µs/order ${JSON.stringify(s.cpuUsPerOrder)})`,
    );
    if (s.sustained) lo = rate;
    else hi = rate;
  }
  const sustainedRate = lo;
  const halfRate = Math.max(10, Math.round((sustainedRate || result.gateway.rate * 0.1) / 2));
  say(`${name}: end-to-end latency at ${halfRate} orders/s for ${settings.stepS} s`);
  // The services' own histograms over the latency step split the end-to-end time into stages.
  const services = { gateway, processor, notifier };
  const scrape = () => Promise.all(Object.values(services).map((x) => scrapeHistograms(`http://127.0.0.1:${x.port}`)));
  const histBefore = await scrape();
  const half = await step(halfRate, 'lat');
  const histAfter = await scrape();
  const stage = (/** @type {number} */ i, /** @type {string} */ key) =>
    histogramBetween(histBefore[i] ?? new Map(), histAfter[i] ?? new Map(), key);
  const stages = {
    gatewayRequest: stage(0, 'http_request_duration_seconds{method="POST",route="/orders",status="202"}'),
    gatewayPublishConfirm: stage(0, 'gateway_publish_confirm_seconds{outcome="confirmed"}'),
    processorHandle: stage(1, `consumer_handle_seconds{queue="${shared.queues.orders}",outcome="ack"}`),
    processorPublishConfirm: stage(1, `broker_publish_confirm_seconds{exchange="${shared.exchanges.topic}",outcome="confirmed"}`),
    notifierHandle: stage(2, `consumer_handle_seconds{queue="${shared.queues.notifier}",outcome="ack"}`),
  };
  const accepted = half.sent.filter((r) => r.status === 202);
  const sentAt = await Promise.all(accepted.map((r) => redis.hget(shared.keys.notification(r.id), 'sentAt')));
  /** @type {number[]} */
  const e2e = [];
  accepted.forEach((r, i) => {
    const at = sentAt[i];
    if (at) e2e.push(Date.parse(at) - r.start);
  });
  const { sent: _sent, ...halfKept } = half;
  result.pipeline = {
    sustainedRate,
    probes,
    latency: { ...halfKept, notifiedWithSentAt: e2e.length, e2eMs: summarize(e2e), stages },
  };
  const fmt = (/** @type {any} */ h) => (h?.count ? `mean ${h.meanMs} p50 ${h.p50Ms} p99 ${h.p99Ms}` : 'none');
  say(
    `${name}: stages (ms) at ${halfRate}/s: ${Object.entries(stages)
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join('; ')}; client-side response p50 ${half.responseMs.p50} p99 ${half.responseMs.p99}`,
  );
  say(
    `${name}: sustained ${sustainedRate} orders/s; end-to-end p50 ${percentile(e2e, 50)} ms, p99 ${percentile(e2e, 99)} ms at ${halfRate}/s`,
  );

  await Promise.all([processor.stop(), notifier.stop()]);
  result.ratios = {
    ...saturation.ratios,
    gatewayToBrokerCeiling: ratio(result.gateway.rate, result.brokerCeiling.rate),
    pipelineToGateway: ratio(sustainedRate, result.gateway.rate),
  };

  if (withOutage && killBrokers && settings.outageS > 0) {
    const amount = Math.round(settings.outageRate * settings.outageS);
    say(`${name}: every broker node down; ${amount} requests at ${settings.outageRate}/s for ${settings.outageS} s`);
    await killBrokers();
    await waitFor('gateway not ready', async () => ((await fetch(`${gwUrl}/readyz`)).status === 503 ? true : undefined), 30_000, 200);
    const rssStart = rssMiB(gateway.pid);
    const outRss = sampleRss(gateway.pid, 1000);
    const outBody = orderBody(`${tag}-down`);
    const load = await cannon({
      url: gwUrl,
      body: (n) => outBody(n).text,
      durationMs: settings.outageS * 1000,
      connections: 16,
      overallRate: settings.outageRate,
      amount,
    });
    const samples = outRss.stop();
    const rssEnd = rssMiB(gateway.pid);
    result.outage = {
      seconds: settings.outageS,
      requests: load.requests,
      statusCodes: load.statusCodes,
      errors: load.errors,
      rssStartMiB: rssStart,
      rssEndMiB: rssEnd,
      rssMaxMiB: Math.max(0, ...samples),
      rssGrowthMiB: rssStart !== undefined && rssEnd !== undefined ? Math.round((rssEnd - rssStart) * 10) / 10 : undefined,
    };
    say(
      `${name}: outage RSS ${rssStart} -> ${rssEnd} MiB (max ${result.outage.rssMaxMiB}) over ${load.requests} requests ${JSON.stringify(load.statusCodes)}`,
    );
  } else {
    await admin.deleteQueue(scratch).catch(() => undefined);
  }
  await gateway.stop();
  await conn.close().catch(() => undefined);
  redis.disconnect();
  return result;
}

// ---------------------------------------------------------------------------------------------
// WAIT on and off: what REDIS_MIN_REPLICAS costs

/**
 * The gateway and the pipeline against a Sentinel group, every service configured with
 * REDIS_SENTINELS only (no REDIS_URL), once with REDIS_MIN_REPLICAS=1 (WAIT after every announced
 * script) and once with 0, in interleaved rounds like the saturation runs. Per run: the gateway at
 * saturation for half a saturation run's time (its accepted orders stay in orders.queue), then a
 * processor and a notifier of the same setting are started on that backlog and their drain rate
 * (notifications/s, after a 1 s warm-up, until the backlog or the time is used up) is the
 * pipeline's figure.
 * @param {{ rabbitUrls: string[] }} broker
 * @param {SharedModule} shared
 */
async function runWait(broker, shared) {
  const name = 'WAIT';
  const tag = `b${runId.slice(-6)}w`;
  const D = (settings.durationS * 1000) / 2;
  /** @type {{ name: string, sentinels: { host: string, port: number }[], env: Record<string, string>, stop?: () => Promise<void> }} */
  let group;
  if (env.BENCH_REDIS_SENTINELS) {
    const list = env.BENCH_REDIS_SENTINELS.split(',').map((hp) => {
      const [host, port] = hp.trim().split(':');
      return { host: host ?? '127.0.0.1', port: Number(port) };
    });
    const groupName = env.BENCH_REDIS_SENTINEL_NAME ?? 'orders';
    group = { name: groupName, sentinels: list, env: { REDIS_SENTINELS: env.BENCH_REDIS_SENTINELS, REDIS_SENTINEL_NAME: groupName } };
  } else {
    say(`${name}: starting a Redis primary, ${settings.waitReplicas} replica(s) and 3 Sentinels`);
    const started = await startSentinelGroup({ replicas: settings.waitReplicas });
    serverStops.push(started.stop);
    group = started;
  }
  // The benchmark's own client finds the primary through the Sentinels too.
  const redis = new Redis({ sentinels: group.sentinels, name: group.name, role: 'master', enableAutoPipelining: true });
  const conn = await amqp.connect(broker.rabbitUrls[0] ?? '');
  conn.on('error', () => undefined);
  const admin = await conn.createChannel();
  const depth = async (/** @type {string} */ q) => (await admin.checkQueue(q)).messageCount;
  const purge = async () => {
    await admin.purgeQueue(shared.queues.orders).catch(() => undefined);
    await admin.purgeQueue(shared.queues.notifier).catch(() => undefined);
  };
  await redis.set(shared.keys.inventory(SKU), String(1e12));
  const notified = async () => Number((await redis.get(shared.keys.stats.notificationsSent)) ?? 0);
  const servers = { redisUrl: '', rabbitUrls: broker.rabbitUrls };
  // REDIS_URL empty: the services can only reach Redis through the Sentinels.
  const variantEnv = (/** @type {number} */ minReplicas) => ({ ...group.env, REDIS_URL: '', REDIS_MIN_REPLICAS: String(minReplicas) });
  const variants = /** @type {const} */ ([
    ['on', 1],
    ['off', 0],
  ]);
  /** @type {Record<string, Awaited<ReturnType<typeof startService>>>} */
  const gateways = {};
  for (const [label, min] of variants) {
    gateways[label] = await startService('api-gateway', servers, variantEnv(min), `api-gateway-wait-${label}`);
    const warm = orderBody(`${tag}-${label}-warm`);
    await cannon({
      url: `http://127.0.0.1:${gateways[label]?.port}`,
      body: (n) => warm(n).text,
      durationMs: 1000,
      connections: settings.connections,
    });
  }
  // autocannon stops with requests in flight, each ends within the publish timeout: the queue has
  // its backlog once it stops growing.
  const settle = () => ordersQueueSettled(() => depth(shared.queues.orders));
  await settle();
  await purge();

  /** @param {'on' | 'off'} label @param {number} min @param {number} round */
  const run = async (label, min, round) => {
    const gw = /** @type {Awaited<ReturnType<typeof startService>>} */ (gateways[label]);
    const body = orderBody(`${tag}-${label}-${round}`);
    const gwCpu = cpuSeconds(gw.pid);
    const measured = await cannon({
      url: `http://127.0.0.1:${gw.port}`,
      body: (n) => body(n).text,
      durationMs: D,
      connections: settings.connections,
    });
    const gatewayCpu = cpuPerRequest(gwCpu, cpuSeconds(gw.pid), measured.requests);
    await settle();
    const backlog = await depth(shared.queues.orders);
    const before = await notified();
    const [processor, notifier] = await Promise.all([
      startService('order-processor', servers, variantEnv(min), `order-processor-wait-${label}-${round}`),
      startService('notifier', servers, variantEnv(min), `notifier-wait-${label}-${round}`),
    ]);
    await sleep(1000);
    const n1 = await notified();
    const t1 = performance.now();
    let n2 = n1;
    let t2 = t1;
    while (t2 - t1 < D && n2 - before < backlog) {
      await sleep(50);
      n2 = await notified();
      t2 = performance.now();
    }
    await Promise.all([processor.stop(), notifier.stop()]);
    await purge();
    const pipeline = n2 > n1 && t2 > t1 ? Math.round(((n2 - n1) * 1000) / (t2 - t1)) : undefined;
    const result = {
      gateway: {
        rate: measured.rate,
        p50: measured.p50,
        p99: measured.p99,
        cpuUsPerRequest: gatewayCpu,
        statusCodes: measured.statusCodes,
      },
      pipeline: {
        drainRate: pipeline,
        backlog,
        notifiedInWindow: n2 - n1,
        windowMs: Math.round(t2 - t1),
        backlogUsedUp: n2 - before >= backlog,
      },
    };
    say(
      `${name} ${label}: gateway ${measured.rate} orders/s (p50 ${measured.p50} ms, p99 ${measured.p99} ms, ${gatewayCpu} CPU µs/request); pipeline drained ${pipeline} orders/s (${n2 - n1} in ${Math.round(t2 - t1)} ms of a ${backlog}-order backlog)`,
    );
    return result;
  };

  say(`${name}: ${settings.rounds} round(s) of WAIT on (REDIS_MIN_REPLICAS=1), WAIT off (0); ${D / 1000} s each at saturation`);
  /** @type {{ on: any, off: any }[]} */
  const runs = [];
  for (let round = 0; round < settings.rounds; round++) {
    runs.push({ on: await run('on', 1, round), off: await run('off', 0, round) });
  }
  await Promise.all(Object.values(gateways).map((g) => g.stop()));
  await conn.close().catch(() => undefined);
  redis.disconnect();
  if (group.stop) {
    await group.stop();
    serverStops.splice(serverStops.indexOf(group.stop), 1);
  }
  const reduced = waitRounds(
    runs.map((r) => ({
      gatewayOn: r.on.gateway.rate,
      gatewayOff: r.off.gateway.rate,
      pipelineOn: r.on.pipeline.drainRate,
      pipelineOff: r.off.pipeline.drainRate,
    })),
  );
  say(
    `${name}: WAIT on / off: gateway ${reduced.ratios.gatewayOnToOff} ${JSON.stringify(reduced.ranges.gatewayOnToOff)}, pipeline ${reduced.ratios.pipelineOnToOff} ${JSON.stringify(reduced.ranges.pipelineOnToOff)} over the rounds`,
  );
  return {
    redis: env.BENCH_REDIS_SENTINELS
      ? { given: true, sentinels: group.sentinels.length }
      : { replicas: settings.waitReplicas, sentinels: 3, appendfsync: 'always', minReplicasToWrite: 1 },
    waitTimeoutMs: env.REDIS_WAIT_TIMEOUT_MS ?? '500 (default)',
    rounds: reduced.rounds,
    rates: reduced.rates,
    ratios: reduced.ratios,
    ratioRanges: reduced.ranges,
    runs,
  };
}

// ---------------------------------------------------------------------------------------------
// The run

async function serverVersions(/** @type {string} */ redisUrl, /** @type {string} */ amqpUrl) {
  const redis = new Redis(redisUrl);
  const info = await redis.info('server');
  redis.disconnect();
  const conn = await amqp.connect(amqpUrl);
  conn.on('error', () => undefined);
  const props = conn.connection.serverProperties ?? {};
  await conn.close();
  return { redis: /redis_version:(\S+)/.exec(info)?.[1], rabbitmq: String(props.version ?? '') };
}

async function main() {
  say('building (tsc -b)');
  const build = spawnSync('npx', ['tsc', '-b'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('build failed');
  // Imported only now, after the build above.
  /** @type {SharedModule} */
  const shared = await import(new URL('../shared/dist/index.js', import.meta.url).href);
  if (settings.cpuProf) mkdirSync(settings.cpuProf, { recursive: true });

  let redisUrl = env.BENCH_REDIS_URL;
  if (!redisUrl) {
    const r = await startRedis();
    serverStops.push(() => r.stop());
    redisUrl = r.url;
  }
  /** @type {Record<string, any>} */
  const phases = {};
  /** @type {Record<string, any>} */
  let versions = {};

  /** @type {{ name: string, nodes: number, urls?: string[] }[]} */
  const setups = [{ name: 'single node', nodes: 1, urls: env.BENCH_RABBITMQ_URLS?.split(',') }];
  if (settings.cluster) setups.push({ name: '3-node cluster', nodes: 3, urls: env.BENCH_RABBITMQ_CLUSTER_URLS?.split(',') });

  for (const [i, setup] of setups.entries()) {
    const last = i === setups.length - 1;
    let urls = setup.urls;
    /** @type {import('./local-servers.mjs').RabbitCluster | undefined} */
    let cluster;
    if (!urls) {
      const s = performance.now();
      say(`starting a ${setup.nodes}-node RabbitMQ`);
      cluster = await startRabbitCluster({ nodes: setup.nodes });
      const stopCluster = cluster.stop;
      serverStops.push(stopCluster);
      urls = cluster.urls;
      say(`RabbitMQ up in ${((performance.now() - s) / 1000).toFixed(0)} s`);
    }
    if (!versions.redis) versions = await serverVersions(redisUrl, urls[0] ?? '');
    const owned = cluster;
    // First, while the single node is fresh: the outage at the end of the last setup kills it.
    // A failure here costs its own figures only (its processes and servers go at cleanup).
    const wait =
      i === 0 && settings.wait
        ? await runWait({ rabbitUrls: urls }, shared).catch((/** @type {any} */ err) => {
            say(`WAIT phase failed: ${err?.stack ?? err}`);
            return { error: String(err?.message ?? err) };
          })
        : undefined;
    phases[setup.name] = await runSetup(
      setup.name,
      { redisUrl, rabbitUrls: urls },
      shared,
      last,
      owned ? async () => void (await Promise.all(owned.nodes.map((n) => n.kill()))) : undefined,
    );
    if (wait) phases[setup.name].wait = wait;
    if (owned) {
      await owned.stop();
      serverStops.splice(serverStops.indexOf(owned.stop), 1);
    }
  }

  const finishedAt = new Date();
  const cpus = os.cpus();
  const report = {
    benchmark: 'order-pipeline',
    formatVersion: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationS: Math.round((finishedAt.getTime() - startedAt.getTime()) / 1000),
    machine: {
      cores: cpus.length,
      cpuModel: cpus[0]?.model,
      memoryMiB: Math.round(os.totalmem() / 2 ** 20),
      platform: `${os.platform()} ${os.release()}`,
      loadAverageAtStart,
      loadAverageAtEnd: os.loadavg().map((v) => Math.round(v * 100) / 100),
    },
    node: process.version,
    servers: { ...versions, local: !env.BENCH_REDIS_URL && !env.BENCH_RABBITMQ_URLS },
    queueType: settings.queueType,
    settings,
    notes: {
      rates: 'per second; gateway rate counts 2xx answers only; each request has its own order id',
      pipelineSustained:
        'highest fixed rate (bisection between 0 and the gateway rate) at which every request got a 202, the last answer came within 0.5 s of the last request, the backlog between 202 and notification when the last request went out was under 0.5 s of work, and every accepted order was notified within 5 s after',
      e2e: 'request start (client clock) to notifications:<id> sentAt (ms resolution, same machine)',
    },
    phases,
  };
  mkdirSync(OUT, { recursive: true });
  const stamp = startedAt.toISOString().replace(/:/g, '-').replace(/\..*/, '');
  const jsonPath = path.join(OUT, `${stamp}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  const svg = chartSvg({
    title: 'order-pipeline benchmark',
    subtitle: `${report.startedAt} · ${cpus.length} cores ${cpus[0]?.model ?? ''} · load ${loadAverageAtStart[0]} · Node ${process.version} · Redis ${versions.redis} · RabbitMQ ${versions.rabbitmq} · ${settings.queueType} queues`,
    phases,
  });
  writeFileSync(path.join(OUT, `${stamp}.svg`), svg);
  copyFileSync(path.join(OUT, `${stamp}.svg`), path.join(OUT, 'latest.svg'));

  process.stdout.write(`\n${formatTable(tableRows(phases))}\n\n`);
  const outage = Object.values(phases).find((p) => p.outage)?.outage;
  if (outage)
    process.stdout.write(
      `gateway RSS with every broker node down: ${outage.rssStartMiB} -> ${outage.rssEndMiB} MiB over ${outage.requests} requests (${outage.seconds} s)\n`,
    );
  say(`wrote ${path.relative(ROOT, jsonPath)} and ${path.relative(ROOT, path.join(OUT, 'latest.svg'))}`);
}

main()
  .then(
    () => cleanup(),
    async (err) => {
      process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
      await cleanup();
      process.exitCode = 1;
    },
  )
  .finally(() => process.exit());
