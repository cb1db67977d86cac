#!/usr/bin/env node
// `npm run bench`: what the gateway and the pipeline sustain, how fast they answer and what CPU
// they spend, as ratios against the least that does the same work, measured in the same run on
// the same machine (absolute figures depend on the machine and on what else runs on it), and what
// each guarantee costs. The goals it checks (issue 16, single node, quorum queues, median of
// interleaved rounds) and the accounting behind them are in docs/performance.md.
//
// Default run (about 6 minutes), on one RabbitMQ node and one standalone Redis:
//   - references: the broker's confirmed-publish ceiling and Redis SET NX/s (one client each);
//   - gateways, in interleaved rounds: the least gateway (read body, one confirmed publish, 202),
//     the least gateway with idempotency (a plain SET NX before, SET after), the built gateway;
//   - pipelines: the pipeline (gateway, order-processor, notifier) and the least pipeline (the
//     least gateway, a consumer running one Redis script and publishing a confirmed outcome, a
//     consumer writing one Redis key; scripts/bench/least-pipeline.mjs): their sustained rates
//     (bisections, probe by probe interleaved), then interleaved rounds of both at half the
//     pipeline's sustained rate: end-to-end latency and CPU per order over every process (door,
//     two consumers, Redis, RabbitMQ; the load generator in neither);
//   - every guarantee priced, in interleaved rounds of service variants (scripts/bench/price.mjs):
//     the history and index writes (BENCH_SKIP_HISTORY_INDEX=1 against the default), tracing
//     with an exporter (OTEL_EXPORTER_OTLP_ENDPOINT at a sink the bench runs against none), and
//     WAIT (REDIS_MIN_REPLICAS=1 against 0, against a Redis primary, replicas and three Sentinels).
// Opt-in: BENCH_CLUSTER=1 repeats the gateways and pipelines on a three-node cluster;
// BENCH_OUTAGE_S=60 kills every broker node at the end while requests keep coming (gateway RSS).
// BENCH_QUICK=1: about 90 s, single node, one round, no Sentinel group, for a check before a commit.
//
// It starts its own throwaway Redis and RabbitMQ (scripts/local-servers.mjs) unless given
// BENCH_REDIS_URL and BENCH_RABBITMQ_URLS (single node) / BENCH_RABBITMQ_CLUSTER_URLS. Servers given
// by URL must be throwaway ones too (the benchmark purges orders.queue and notifier.queue), and
// their CPU is then not counted. Every knob is listed in docs/performance.md#reproduce.

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
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
  orderBody,
  queueSettled,
  redisSetNxRate,
  rotate,
  rssMiB,
  sampleRss,
  scrapeHistograms,
  warmUp,
} from './bench/load.mjs';
import { bisect, fixedRateStep, latencyRounds } from './bench/pipelines.mjs';
import { priceVariants } from './bench/price.mjs';
import {
  chartSvg,
  formatTable,
  goalRows,
  goals,
  guaranteeCost,
  medianRound,
  pipelineRatios,
  priceRows,
  ratio,
  tableRows,
} from './bench/report.mjs';
import { startSentinelGroup } from './bench/sentinels.mjs';

/** @typedef {typeof import('@order-pipeline/shared')} SharedModule */
/** @typedef {import('./bench/pipelines.mjs').Pipeline} Pipeline */
/** @typedef {{ redisUrl: string, rabbitUrls: string[] }} Servers */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const env = process.env;
const quick = env.BENCH_QUICK === '1';
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
  quick,
  durationS: num('BENCH_DURATION_S', quick ? 3 : 5),
  stepS: num('BENCH_STEP_S', quick ? 3 : 4),
  probes: num('BENCH_PROBES', quick ? 3 : 5),
  rounds: Math.max(1, num('BENCH_ROUNDS', quick ? 1 : 3)),
  priceS: Math.max(1, num('BENCH_PRICE_S', quick ? 2 : 3)),
  priceRounds: Math.max(1, num('BENCH_PRICE_ROUNDS', quick ? 1 : 3)),
  connections: num('BENCH_CONNECTIONS', 64),
  references: env.BENCH_REFERENCES ? env.BENCH_REFERENCES !== '0' : !quick,
  price: env.BENCH_PRICE !== '0',
  wait: env.BENCH_WAIT ? env.BENCH_WAIT !== '0' : !quick,
  cluster: env.BENCH_CLUSTER === '1',
  outageS: num('BENCH_OUTAGE_S', 0),
  outageRate: num('BENCH_OUTAGE_RATE', 200),
  queueType: env.BENCH_QUEUE_TYPE ?? 'quorum',
  logLevel: env.BENCH_LOG_LEVEL ?? 'info',
  prefetch: env.PREFETCH ?? '100 (default)',
  publishTimeoutMs: env.PUBLISH_TIMEOUT_MS ?? '2000 (default)',
  brokerCeilingInFlight: 500,
  redisInFlight: 500,
  cpuProf: env.BENCH_CPU_PROF ? path.resolve(env.BENCH_CPU_PROF) : undefined,
  waitReplicas: Math.max(1, num('BENCH_WAIT_REPLICAS', 2)),
};
const OUT = path.resolve(ROOT, env.BENCH_OUT ?? 'bench/results');
const startedAt = new Date();
const runId = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
const t0 = performance.now();
// Other work on the machine skews every figure; the load average says how much there was.
const loadAverageAtStart = os.loadavg().map((v) => Math.round(v * 100) / 100);
const SKU = 'bench-sku';

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
/** Stops a server this run started and forgets it (cleanup would stop it again). @param {() => Promise<void>} stop */
async function stopServer(stop) {
  await stop();
  const i = serverStops.indexOf(stop);
  if (i >= 0) serverStops.splice(i, 1);
}

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
  const tail = () =>
    readFileSync(path.join(logDir, `${name}.log`), 'utf8')
      .split('\n')
      .slice(-15)
      .join('\n');
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
    tail,
    /**
     * Resolves with the first match of `pattern` in the process's stdout (its "I am up" line).
     * @param {RegExp} pattern
     */
    announced: (pattern) =>
      /** @type {Promise<RegExpExecArray>} */ (
        new Promise((resolve, reject) => {
          let buf = '';
          child.stdout?.on('data', (d) => {
            buf += String(d);
            const m = pattern.exec(buf);
            if (m) resolve(m);
          });
          child.once('exit', () => reject(new Error(`${name} exited:\n${tail()}`)));
        })
      ),
  };
}

/**
 * A bench-side process that prints {"port": N} once listening (least gateway, OTLP sink).
 * @param {string} name
 * @param {string} script
 * @param {Record<string, string>} extraEnv
 */
async function startListening(name, script, extraEnv) {
  const proc = startNode(name, script, { PORT: '0', ...extraEnv });
  const m = await proc.announced(/"port":(\d+)/);
  return { ...proc, port: Number(m[1]) };
}

/** @param {number} port */
const ready = (port) =>
  waitFor(`:${port}/readyz`, async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined), 60_000, 200);

/**
 * @param {'api-gateway' | 'order-processor' | 'notifier'} service
 * @param {Servers} servers
 * @param {Record<string, string>} [extraEnv]
 * @param {string} [logName]  the log file's name (two processes of one service run side by side)
 */
async function startService(service, servers, extraEnv = {}, logName = service) {
  const port = await freePort();
  const portVar = { 'api-gateway': 'GATEWAY_PORT', 'order-processor': 'PROCESSOR_PORT', notifier: 'NOTIFIER_PORT' }[service];
  const proc = startNode(logName, `${service}/dist/main.js`, {
    REDIS_URL: servers.redisUrl,
    // Standalone, no exporter, every write: nothing inherited decides it, only a variant's extraEnv.
    REDIS_SENTINELS: '',
    REDIS_SENTINEL_NAME: '',
    REDIS_MIN_REPLICAS: '',
    OTEL_EXPORTER_OTLP_ENDPOINT: '',
    BENCH_SKIP_HISTORY_INDEX: '',
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

/** CPU microseconds per request between two cpuSeconds readings. */
const cpuPerRequest = (
  /** @type {number | undefined} */ before,
  /** @type {number | undefined} */ after,
  /** @type {number} */ requests,
) => (before === undefined || after === undefined || requests === 0 ? undefined : Math.round(((after - before) / requests) * 1e6));

// ---------------------------------------------------------------------------------------------
// One setup: references, gateways, pipelines

/**
 * @param {string} name
 * @param {Servers} servers
 * @param {SharedModule} shared  the built shared package
 * @param {{ redis: number[], rabbitmq: number[] } | undefined} serverPids  of the servers this run started
 * @param {(() => Promise<void>) | undefined} killBrokers  the outage, when it runs on this setup
 */
async function runSetup(name, servers, shared, serverPids, killBrokers) {
  const tag = `b${runId.slice(-6)}${name[0]}`;
  const D = settings.durationS * 1000;
  /** @type {Record<string, any>} */
  const result = { rabbitmqNodes: servers.rabbitUrls.length };
  const redis = new Redis(servers.redisUrl, { enableAutoPipelining: true });
  const conn = await amqp.connect(servers.rabbitUrls[0] ?? '');
  // The outage kills the node under this connection: expected, not a crash.
  conn.on('error', () => undefined);
  const admin = await conn.createChannel();
  const queueArgs = { durable: true, arguments: { 'x-queue-type': settings.queueType } };
  const scratch = `bench.scratch.${runId}.${name.replace(/\W+/g, '-')}`;
  const leastOrders = `bench.least.orders.${runId}.${name.replace(/\W+/g, '-')}`;
  const leastOutcomes = `bench.least.outcomes.${runId}.${name.replace(/\W+/g, '-')}`;
  for (const q of [scratch, leastOrders, leastOutcomes]) await admin.assertQueue(q, queueArgs);
  const depth = async (/** @type {string} */ q) => (await admin.checkQueue(q)).messageCount;
  /** @type {Array<{ stop: () => Promise<void> }>} */
  const procs = [];

  try {
    if (settings.references) {
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
      result.redisSetNx = await redisSetNxRate({
        redis,
        prefix: `bench:setnx:${tag}:`,
        durationMs: D / 2,
        inFlight: settings.redisInFlight,
      });
      say(`${name}: ${result.redisSetNx.rate} SET NX/s`);
    }

    // The saturation runs move by a tenth or more from one run to the next on a shared machine,
    // and more over minutes: the three gateways are measured in interleaved rounds, each ratio is
    // taken within a round (runs seconds apart), and the median round is reported with the range.
    say(`${name}: ${settings.rounds} round(s) of least gateway, least gateway with idempotency, gateway (${settings.durationS} s each)`);
    // Started side by side: nothing is measured until all three are up and warm.
    const [least, leastIdem, gateway] = await Promise.all([
      startListening(`least-gateway-${name}`, 'scripts/bench/least-gateway.mjs', {
        BENCH_AMQP_URL: servers.rabbitUrls[0] ?? '',
        BENCH_QUEUE: scratch,
      }),
      startListening(`least-gateway-idempotent-${name}`, 'scripts/bench/least-gateway.mjs', {
        BENCH_AMQP_URL: servers.rabbitUrls[0] ?? '',
        BENCH_QUEUE: scratch,
        LEAST_REDIS_URL: servers.redisUrl,
      }),
      startService('api-gateway', servers, {}, `api-gateway-${name}`),
    ]);
    procs.push(least, leastIdem, gateway);
    const doors = { least, leastIdem, gateway };
    // Warm-up (JIT, connections) with its own ids, all three at once: nothing is measured yet.
    await Promise.all(
      Object.entries(doors).map(([label, d]) =>
        warmUp({ port: d.port, body: orderBody(`${tag}-${label}-warm`), connections: settings.connections }),
      ),
    );
    await queueSettled(() => depth(shared.queues.orders));
    await admin.purgeQueue(shared.queues.orders);
    await admin.purgeQueue(scratch);

    /**
     * One door at saturation; what it accepted is dropped afterwards (nobody consumes it).
     * @param {string} label @param {{ pid: number | undefined, port: number }} d @param {string} queue @param {number} round
     */
    const saturate = async (label, d, queue, round) => {
      const body = orderBody(`${tag}-${label}-${round}`);
      const rss = sampleRss(d.pid);
      const cpu = cpuSeconds(d.pid);
      const measured = await cannon({
        url: `http://127.0.0.1:${d.port}`,
        body: (n) => body(n).text,
        durationMs: D,
        connections: settings.connections,
      });
      const run = {
        ...measured,
        cpuUsPerRequest: cpuPerRequest(cpu, cpuSeconds(d.pid), measured.requests),
        rssMaxMiB: Math.max(0, ...rss.stop()),
      };
      // autocannon stops with requests still in flight; each ends within the publish timeout.
      await queueSettled(() => depth(queue));
      await admin.purgeQueue(queue);
      say(
        `${name}: ${label} ${run.rate} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, ${run.cpuUsPerRequest} CPU µs/request, RSS max ${run.rssMaxMiB} MiB`,
      );
      return run;
    };
    /** @type {{ leastGateway: any, leastGatewayIdempotent: any, gateway: any }[]} */
    const rounds = [];
    /** @type {[keyof (typeof rounds)[number], string, { pid: number | undefined, port: number }, string][]} */
    const runs = [
      ['leastGateway', 'least gateway', least, scratch],
      ['leastGatewayIdempotent', 'least gateway with idempotency', leastIdem, scratch],
      ['gateway', 'gateway', gateway, shared.queues.orders],
    ];
    for (let round = 0; round < settings.rounds; round++) {
      /** @type {Record<string, any>} */
      const r = {};
      // Each round starts with the next door: none always runs after the same one.
      for (const [key, label, door, queue] of rotate(runs, round)) r[key] = await saturate(label, door, queue, round);
      rounds.push(/** @type {(typeof rounds)[number]} */ (r));
    }
    await Promise.all([least.stop(), leastIdem.stop()]);
    const saturation = medianRound(rounds);
    Object.assign(result, saturation.median);
    result.rounds = saturation.rounds;
    result.ratios = { ...saturation.ratios };
    result.ratioRanges = { ...saturation.ranges };
    say(
      `${name}: gateway / least gateway with idempotency ${saturation.ratios.gatewayToLeastIdempotent} ${JSON.stringify(saturation.ranges.gatewayToLeastIdempotent)} over the rounds`,
    );

    // The pipeline and the least pipeline, all their processes up side by side on the same servers.
    say(`${name}: pipeline (gateway, order-processor, notifier) and least pipeline (least gateway, two least consumers)`);
    await redis.set(shared.keys.inventory(SKU), String(1e12));
    await redis.set(`bench:least:stock:${SKU}`, String(1e12));
    const leastSent = `bench:least:sent:${tag}`;
    const [processor, notifier, leastFront] = await Promise.all([
      startService('order-processor', servers, {}, `order-processor-${name}`),
      startService('notifier', servers, {}, `notifier-${name}`),
      startListening(`least-pipeline-gateway-${name}`, 'scripts/bench/least-gateway.mjs', {
        BENCH_AMQP_URL: servers.rabbitUrls[0] ?? '',
        BENCH_QUEUE: leastOrders,
        LEAST_REDIS_URL: servers.redisUrl,
      }),
    ]);
    procs.push(processor, notifier, leastFront);
    // The least pipeline's door is the least gateway with idempotency (the two plain Redis commands around the
    // publish): the fair reference for a pipeline that keeps the SET NX contract, as it is for the
    // gateway. With the bare least gateway as its door the ratio came out as gateway / least
    // gateway (0.43 on 2026-12-02), a bound idempotency itself rules out.
    const leastConsumer = async (/** @type {'processor' | 'notifier'} */ role, /** @type {Record<string, string>} */ extra) => {
      const p = startNode(`least-pipeline-${role}-${name}`, 'scripts/bench/least-pipeline.mjs', {
        LEAST_ROLE: role,
        BENCH_AMQP_URL: servers.rabbitUrls[0] ?? '',
        LEAST_REDIS_URL: servers.redisUrl,
        ...extra,
      });
      procs.push(p);
      await p.announced(/"ready":true/);
      return p;
    };
    const [leastProcessor, leastNotifier] = await Promise.all([
      leastConsumer('processor', { BENCH_IN_QUEUE: leastOrders, BENCH_OUT_QUEUE: leastOutcomes }),
      leastConsumer('notifier', { BENCH_IN_QUEUE: leastOutcomes, BENCH_SENT_KEY: leastSent }),
    ]);

    const pid = (/** @type {number | undefined} */ p) => (p ? [p] : []);
    /** @type {Record<string, number[]>} */
    const servedBy = serverPids ? { redis: serverPids.redis, rabbitmq: serverPids.rabbitmq } : {};
    /** @type {Pipeline} */
    const pipeline = {
      label: 'pipeline',
      port: gateway.port,
      door: result.gateway.rate,
      notified: async () => Number((await redis.get(shared.keys.stats.notificationsSent)) ?? 0),
      sentAt: async (ids) =>
        (await Promise.all(ids.map((id) => redis.hget(shared.keys.notification(id), 'sentAt')))).map((at) =>
          at ? Date.parse(at) : undefined,
        ),
      pids: { gateway: pid(gateway.pid), processor: pid(processor.pid), notifier: pid(notifier.pid), ...servedBy },
    };
    /** @type {Pipeline} */
    const leastPipeline = {
      label: 'least',
      port: leastFront.port,
      door: result.leastGatewayIdempotent.rate,
      notified: async () => redis.hlen(leastSent),
      sentAt: async (ids) => (ids.length === 0 ? [] : (await redis.hmget(leastSent, ...ids)).map((at) => (at ? Number(at) : undefined))),
      pids: { gateway: pid(leastFront.pid), processor: pid(leastProcessor.pid), notifier: pid(leastNotifier.pid), ...servedBy },
    };
    const both = [pipeline, leastPipeline];
    // Warm-up of both at once, each at a tenth of its door's rate.
    await Promise.all(
      both.map((p) =>
        fixedRateStep(p, { rate: Math.max(10, Math.round(p.door / 10)), stepS: 1, body: orderBody(`${tag}-${p.label}-warm`) }),
      ),
    );

    say(`${name}: sustained rates, ${settings.probes} probes of ${settings.stepS} s each, the two pipelines' probes interleaved`);
    const sustained = await bisect(both, {
      probes: settings.probes,
      stepS: settings.stepS,
      body: (label, probe) => orderBody(`${tag}-${label}-p${probe}`),
      say: (m) => say(`${name}:${m}`),
    });
    const ps = /** @type {{ sustainedRate: number, notSustainedRate: number, probes: any[] }} */ (sustained.pipeline);
    const ls = /** @type {{ sustainedRate: number, notSustainedRate: number, probes: any[] }} */ (sustained.least);
    const halfRate = Math.max(10, Math.round((ps.sustainedRate || result.gateway.rate * 0.1) / 2));
    say(
      `${name}: sustained: pipeline ${ps.sustainedRate}/s, least pipeline ${ls.sustainedRate}/s; ${settings.rounds} latency round(s) of both at ${halfRate}/s`,
    );
    // The services' own histograms over the pipeline's latency steps split its end-to-end time into stages.
    const services = [gateway, processor, notifier];
    const scrape = () => Promise.all(services.map((x) => scrapeHistograms(`http://127.0.0.1:${x.port}`)));
    const histBefore = await scrape();
    const latency = await latencyRounds(both, {
      rounds: settings.rounds,
      rate: halfRate,
      stepS: settings.stepS,
      body: (label, round) => orderBody(`${tag}-${label}-lat${round}`),
      say: (m) => say(`${name}:${m}`),
    });
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
    const pr = pipelineRatios(
      { pipeline: ps, least: ls },
      latency.map((r) => ({ pipeline: r.pipeline, least: r.least })),
    );
    // The round whose p99 ratio is the median stands for the latency figures.
    const order = latency.map((_, i) => i).sort((a, b) => (pr.rounds[a]?.e2eP99ToLeast ?? 0) - (pr.rounds[b]?.e2eP99ToLeast ?? 0));
    const mid = latency[order[Math.ceil(order.length / 2) - 1] ?? 0] ?? {};
    result.pipeline = {
      sustainedRate: ps.sustainedRate,
      notSustainedRate: ps.notSustainedRate,
      probes: ps.probes,
      latency: mid.pipeline,
      stages,
    };
    result.leastPipeline = {
      sustainedRate: ls.sustainedRate,
      notSustainedRate: ls.notSustainedRate,
      probes: ls.probes,
      latency: mid.least,
    };
    result.latencyRounds = latency;
    result.cpuRoles = Object.keys(pipeline.pids);
    Object.assign(result.ratios, {
      sustainedToLeast: pr.sustainedToLeast.median,
      e2eP99ToLeast: pr.e2eP99ToLeast.median,
      e2eP50ToLeast: pr.e2eP50ToLeast.median,
      cpuPerOrderToLeast: pr.cpuPerOrderToLeast.median,
      gatewayToBrokerCeiling: ratio(result.gateway.rate, result.brokerCeiling?.rate),
      pipelineToGateway: ratio(ps.sustainedRate, result.gateway.rate),
    });
    Object.assign(result.ratioRanges, {
      sustainedToLeast: pr.sustainedToLeast.range,
      e2eP99ToLeast: pr.e2eP99ToLeast.range,
      e2eP50ToLeast: pr.e2eP50ToLeast.range,
      cpuPerOrderToLeast: pr.cpuPerOrderToLeast.range,
    });
    result.pipelineRounds = pr.rounds;
    result.goals = goals({ ratios: saturation.ratios, ratioRanges: saturation.ranges }, pr);
    const fmt = (/** @type {any} */ h) => (h?.count ? `mean ${h.meanMs} p50 ${h.p50Ms} p99 ${h.p99Ms}` : 'none');
    say(
      `${name}: pipeline stages (ms) at ${halfRate}/s: ${Object.entries(stages)
        .map(([k, v]) => `${k} ${fmt(v)}`)
        .join('; ')}`,
    );

    await Promise.all([processor, notifier, leastFront, leastProcessor, leastNotifier].map((p) => p.stop()));

    if (killBrokers && settings.outageS > 0) result.outage = await outage(name, gateway, killBrokers, tag);
    await gateway.stop();
    if (!killBrokers || settings.outageS === 0) {
      for (const q of [scratch, leastOrders, leastOutcomes]) await admin.deleteQueue(q).catch(() => undefined);
    }
    return result;
  } finally {
    await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
    await conn.close().catch(() => undefined);
    redis.disconnect();
  }
}

/**
 * Every broker node killed while requests keep coming: the gateway's RSS before and after.
 * @param {string} name
 * @param {{ pid: number | undefined, port: number }} gateway
 * @param {() => Promise<void>} killBrokers
 * @param {string} tag
 */
async function outage(name, gateway, killBrokers, tag) {
  const gwUrl = `http://127.0.0.1:${gateway.port}`;
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
  const out = {
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
    `${name}: outage RSS ${rssStart} -> ${rssEnd} MiB (max ${out.rssMaxMiB}) over ${load.requests} requests ${JSON.stringify(load.statusCodes)}`,
  );
  return out;
}

// ---------------------------------------------------------------------------------------------
// Every guarantee priced

/**
 * Runs priceVariants on one Redis (standalone or a Sentinel group) and the broker.
 * @param {string} name
 * @param {{ redis: Redis, servers: Servers, serverPids: Record<string, number[]>, variants: import('./bench/price.mjs').Variant[] }} o
 * @param {SharedModule} shared
 */
async function priceOn(name, { redis, servers, serverPids, variants }, shared) {
  const tag = `b${runId.slice(-6)}${name.replace(/\W+/g, '').slice(0, 4)}`;
  const conn = await amqp.connect(servers.rabbitUrls[0] ?? '');
  conn.on('error', () => undefined);
  const admin = await conn.createChannel();
  const depth = async () => (await admin.checkQueue(shared.queues.orders)).messageCount;
  try {
    await redis.set(shared.keys.inventory(SKU), String(1e12));
    return await priceVariants({
      name,
      variants,
      rounds: settings.priceRounds,
      durationS: settings.priceS,
      connections: settings.connections,
      serverPids,
      startService: (service, extraEnv, logName) => startService(service, servers, extraEnv, logName),
      settle: () => queueSettled(depth),
      ordersDepth: depth,
      purge: async () => {
        await admin.purgeQueue(shared.queues.orders).catch(() => undefined);
        await admin.purgeQueue(shared.queues.notifier).catch(() => undefined);
      },
      notified: async () => Number((await redis.get(shared.keys.stats.notificationsSent)) ?? 0),
      body: (label, round) => orderBody(`${tag}-${label}-${round}`),
      say,
    });
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** The price variant with an exporter and 1 in 10 traces sampled. */
const SAMPLED = 'exporter, 1 in 10 sampled';

/**
 * The history and index writes and tracing with an exporter, on the standalone Redis: the
 * services as configured by default, with BENCH_SKIP_HISTORY_INDEX=1, and with
 * OTEL_EXPORTER_OTLP_ENDPOINT at a sink this run starts.
 * @param {Servers} servers
 * @param {Record<string, number[]>} serverPids
 * @param {SharedModule} shared
 */
async function priceStandalone(servers, serverPids, shared) {
  const sink = await startListening('otlp-sink', 'scripts/bench/otlp-sink.mjs', {});
  const redis = new Redis(servers.redisUrl, { enableAutoPipelining: true });
  try {
    const rounds = await priceOn(
      'history, tracing',
      {
        redis,
        servers,
        serverPids,
        variants: [
          { label: 'default', env: {} },
          { label: 'no history or index', env: { BENCH_SKIP_HISTORY_INDEX: '1' } },
          { label: 'exporter', env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink.port}` } },
          // Every span recorded and exported is work per order that no code change removes; a
          // sampled trace is what a busy deployment runs (docs/observability.md). Left out of
          // BENCH_QUICK, which has to fit in 90 s.
          ...(quick
            ? []
            : [
                {
                  label: SAMPLED,
                  env: {
                    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink.port}`,
                    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
                    OTEL_TRACES_SAMPLER_ARG: '0.1',
                  },
                },
              ]),
        ],
      },
      shared,
    );
    const received = sink.announced(/\{"exports":(\d+),"bytes":(\d+)\}/);
    await sink.stop();
    const m = await received.catch(() => undefined);
    return { rounds, otlpSink: m ? { exports: Number(m[1]), bytes: Number(m[2]) } : undefined };
  } finally {
    await sink.stop();
    redis.disconnect();
  }
}

/**
 * WAIT on and off: against a Redis primary, its replicas and three Sentinels (the data nodes as
 * docs/high-availability.md recommends), every service given REDIS_SENTINELS only (REDIS_URL
 * empty), with REDIS_MIN_REPLICAS=1 and with 0.
 * @param {Servers} broker
 * @param {number[]} beamPids  the broker's, when this run started it
 * @param {SharedModule} shared
 */
async function priceWait(broker, beamPids, shared) {
  /** @type {{ name: string, sentinels: { host: string, port: number }[], dataPorts?: number[], env: Record<string, string>, stop?: () => Promise<void> }} */
  let group;
  if (env.BENCH_REDIS_SENTINELS) {
    const list = env.BENCH_REDIS_SENTINELS.split(',').map((hp) => {
      const [host, port] = hp.trim().split(':');
      return { host: host ?? '127.0.0.1', port: Number(port) };
    });
    const groupName = env.BENCH_REDIS_SENTINEL_NAME ?? 'orders';
    group = { name: groupName, sentinels: list, env: { REDIS_SENTINELS: env.BENCH_REDIS_SENTINELS, REDIS_SENTINEL_NAME: groupName } };
  } else {
    say(`WAIT: starting a Redis primary, ${settings.waitReplicas} replica(s) and 3 Sentinels`);
    const started = await startSentinelGroup({ replicas: settings.waitReplicas });
    serverStops.push(started.stop);
    group = started;
  }
  // The benchmark's own client finds the primary through the Sentinels too.
  const redis = new Redis({ sentinels: group.sentinels, name: group.name, role: 'master', enableAutoPipelining: true });
  const variantEnv = (/** @type {number} */ minReplicas) => ({ ...group.env, REDIS_URL: '', REDIS_MIN_REPLICAS: String(minReplicas) });
  // The primary and the replicas count (a WAIT is the replicas' work too); a given group does not.
  const dataPids = group.dataPorts ? await Promise.all(group.dataPorts.map((port) => redisPid(`redis://127.0.0.1:${port}`))) : [];
  /** @type {Record<string, number[]>} */
  const serverPids = dataPids.length > 0 && beamPids.length > 0 ? { redis: dataPids, rabbitmq: beamPids } : {};
  try {
    const rounds = await priceOn(
      'WAIT',
      {
        redis,
        servers: { redisUrl: '', rabbitUrls: broker.rabbitUrls },
        serverPids,
        variants: [
          { label: 'on', env: variantEnv(1) },
          { label: 'off', env: variantEnv(0) },
        ],
      },
      shared,
    );
    return {
      redis: env.BENCH_REDIS_SENTINELS
        ? { given: true, sentinels: group.sentinels.length }
        : { replicas: settings.waitReplicas, sentinels: 3, appendfsync: 'always', minReplicasToWrite: 1 },
      waitTimeoutMs: env.REDIS_WAIT_TIMEOUT_MS ?? '500 (default)',
      rounds,
    };
  } finally {
    redis.disconnect();
    if (group.stop) await stopServer(group.stop);
  }
}

/**
 * The price phases, before the single-node setup (its outage, when asked for, kills the node). A
 * failure costs its own figures only (its processes and servers go at cleanup).
 * @param {Servers} servers
 * @param {{ redis: number[], rabbitmq: number[] } | undefined} serverPids  of the servers this run started
 * @param {SharedModule} shared
 */
async function runPricing(servers, serverPids, shared) {
  /** @type {Record<string, any>} */
  const phase = {};
  /** @type {ReturnType<typeof guaranteeCost>[]} */
  const prices = [];
  const failed = (/** @type {string} */ what) => (/** @type {any} */ err) => {
    say(`${what} failed: ${err?.stack ?? err}`);
    return { error: String(err?.message ?? err) };
  };
  if (settings.price) {
    phase.standalone = await priceStandalone(servers, serverPids ? { ...serverPids } : {}, shared).catch(failed('history/tracing pricing'));
    if (phase.standalone.rounds) {
      prices.push(
        guaranteeCost(phase.standalone.rounds, {
          guarantee: 'history and index writes',
          with: 'default',
          without: 'no history or index',
        }),
      );
      prices.push(guaranteeCost(phase.standalone.rounds, { guarantee: 'tracing with an exporter', with: 'exporter', without: 'default' }));
      // Priced when it ran (not under BENCH_QUICK).
      if (phase.standalone.rounds.every((/** @type {Record<string, unknown>} */ r) => r[SAMPLED] !== undefined))
        prices.push(
          guaranteeCost(phase.standalone.rounds, {
            guarantee: 'tracing with an exporter, 1 in 10 sampled',
            with: SAMPLED,
            without: 'default',
          }),
        );
    }
  }
  if (settings.wait) {
    phase.wait = await priceWait(servers, serverPids?.rabbitmq ?? [], shared).catch(failed('WAIT pricing'));
    if (phase.wait.rounds)
      prices.push(guaranteeCost(phase.wait.rounds, { guarantee: 'WAIT (Sentinel group)', with: 'on', without: 'off' }));
  }
  for (const p of prices) {
    say(
      `price of ${p.guarantee}: gateway ${p.gatewayCostPct} % ${JSON.stringify(p.gatewayCostRange)}, pipeline ${p.pipelineCostPct} % ${JSON.stringify(p.pipelineCostRange)} (goal <= ${p.goalPct} %)`,
    );
  }
  return { ...phase, prices };
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

/** The pid of a Redis server (its INFO). @param {string} url */
async function redisPid(url) {
  const r = new Redis(url);
  try {
    return Number(/process_id:(\d+)/.exec(await r.info('server'))?.[1]);
  } finally {
    r.disconnect();
  }
}

async function main() {
  say(`building (tsc -b)${quick ? '; BENCH_QUICK=1' : ''}`);
  const build = spawnSync('npx', ['tsc', '-b'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('build failed');
  // Imported only now, after the build above.
  /** @type {SharedModule} */
  const shared = await import(new URL('../shared/dist/index.js', import.meta.url).href);
  if (settings.cpuProf) mkdirSync(settings.cpuProf, { recursive: true });

  let redisUrl = env.BENCH_REDIS_URL;
  /** @type {number[]} */
  let redisPids = [];
  if (!redisUrl) {
    const r = await startRedis();
    serverStops.push(() => r.stop());
    redisUrl = r.url;
    redisPids = [await redisPid(r.url)];
  }
  /** @type {Record<string, any>} */
  const phases = {};
  /** @type {Record<string, any>} */
  let versions = {};
  /** @type {Record<string, any> | undefined} */
  let pricing;

  /** @type {{ name: string, nodes: number, urls?: string[] }[]} */
  const setups = [{ name: 'single node', nodes: 1, urls: env.BENCH_RABBITMQ_URLS?.split(',') }];
  if (settings.cluster) setups.push({ name: '3-node cluster', nodes: 3, urls: env.BENCH_RABBITMQ_CLUSTER_URLS?.split(',') });

  for (const [i, setup] of setups.entries()) {
    const last = i === setups.length - 1;
    let urls = setup.urls;
    /** @type {import('./local-servers.mjs').RabbitCluster | undefined} */
    let cluster;
    /** @type {number[]} */
    let beamPids = [];
    if (!urls) {
      const s = performance.now();
      say(`starting a ${setup.nodes}-node RabbitMQ`);
      cluster = await startRabbitCluster({ nodes: setup.nodes });
      serverStops.push(cluster.stop);
      urls = cluster.urls;
      beamPids = await Promise.all(cluster.nodes.map(async (n) => Number((await n.ctl('eval', 'list_to_integer(os:getpid()).')).trim())));
      say(`RabbitMQ up in ${((performance.now() - s) / 1000).toFixed(0)} s`);
    }
    if (!versions.redis) versions = await serverVersions(redisUrl, urls[0] ?? '');
    const servers = { redisUrl, rabbitUrls: urls };
    const serverPids = redisPids.length > 0 && beamPids.length > 0 ? { redis: redisPids, rabbitmq: beamPids } : undefined;
    if (i === 0 && (settings.price || settings.wait)) pricing = await runPricing(servers, serverPids, shared);
    const owned = cluster;
    phases[setup.name] = await runSetup(
      setup.name,
      servers,
      shared,
      serverPids,
      last && owned ? async () => void (await Promise.all(owned.nodes.map((n) => n.kill()))) : undefined,
    );
    if (owned) await stopServer(owned.stop);
  }

  const finishedAt = new Date();
  const cpus = os.cpus();
  const report = {
    benchmark: 'order-pipeline',
    formatVersion: 2,
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
      rates: 'per second; a door rate counts 2xx answers only; each request has its own order id',
      sustained:
        'highest fixed rate (bisection between 0 and the door’s saturation rate) at which every request got a 202, the last answer came within 0.5 s of the last request, the backlog between 202 and notification when the last request went out was under 0.5 s of work, and every accepted order was notified within 5 s after; the rate lies in [sustainedRate, notSustainedRate)',
      e2e: 'request start (client clock) to the notification’s time (notifications:<id> sentAt; the least pipeline’s hash field), ms resolution, same machine',
      cpuPerOrder:
        'CPU time (user + system, /proc) of every process of a pipeline over a latency step and its drain, per accepted order: its door (gateway / least gateway), its two consumers, Redis and RabbitMQ (the servers this run started); the load generator counts in neither',
      prices:
        'cost = 100 * (1 - rate with the guarantee / rate without), within each round; gateway at saturation, pipeline = consumers draining that backlog',
    },
    goals: phases['single node']?.goals,
    prices: pricing?.prices,
    pricing,
    phases,
  };
  mkdirSync(OUT, { recursive: true });
  const stamp = startedAt.toISOString().replace(/:/g, '-').replace(/\..*/, '');
  const jsonPath = path.join(OUT, `${stamp}.json`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  const svg = chartSvg({
    title: `order-pipeline benchmark${quick ? ' (BENCH_QUICK)' : ''}`,
    subtitle: `${report.startedAt} · ${cpus.length} cores ${cpus[0]?.model ?? ''} · load ${loadAverageAtStart[0]} · Node ${process.version} · Redis ${versions.redis} · RabbitMQ ${versions.rabbitmq} · ${settings.queueType} queues`,
    phases,
    prices: pricing?.prices ?? [],
  });
  writeFileSync(path.join(OUT, `${stamp}.svg`), svg);
  copyFileSync(path.join(OUT, `${stamp}.svg`), path.join(OUT, 'latest.svg'));

  process.stdout.write(`\n${formatTable(tableRows(phases))}\n\n`);
  if (report.goals) process.stdout.write(`${formatTable(goalRows(report.goals))}\n\n`);
  if (pricing?.prices?.length) process.stdout.write(`${formatTable(priceRows(pricing.prices))}\n\n`);
  const out = Object.values(phases).find((p) => p.outage)?.outage;
  if (out)
    process.stdout.write(
      `gateway RSS with every broker node down: ${out.rssStartMiB} -> ${out.rssEndMiB} MiB over ${out.requests} requests (${out.seconds} s)\n`,
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
