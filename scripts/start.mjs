#!/usr/bin/env node
// `npm start`: run the four services (built into <service>/dist/main.js) against Redis and
// RabbitMQ. When REDIS_URL / RABBITMQ_URLS point at this machine and nothing answers there,
// a throwaway server is started from the locally installed binaries instead.
//
// Environment: REDIS_URL (default redis://127.0.0.1:6379), RABBITMQ_URLS (comma-separated,
// default amqp://guest:guest@127.0.0.1:5672), GATEWAY_PORT, DASHBOARD_PORT (only printed
// here; the services read them themselves).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { amqpAnswers, haveBinaries, redisAnswers, startRabbitCluster, startRedis } from './local-servers.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVICES = ['api-gateway', 'order-processor', 'notifier', 'dashboard'];
const SHUTDOWN_GRACE_MS = 10_000;
const NAME_WIDTH = Math.max(...SERVICES.map((s) => s.length));
const COLOURS = [36, 35, 33, 32, 34, 31]; // cyan, magenta, yellow, green, blue, red

/** @param {string} message */
const say = (message) => process.stdout.write(`[start] ${message}\n`);
/** @param {string} message */
const complain = (message) => process.stderr.write(`[start] ${message}\n`);

/** Hide the password of a URL for printing. @param {string} url */
function redact(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/** Whether the URL's host is this machine (only then is a throwaway server a stand-in). @param {string} url */
function isLoopback(url) {
  try {
    const host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
    return host === 'localhost' || host === '::1' || host.startsWith('127.');
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Shutdown state (installed first, so an interrupt while servers start leaves nothing behind)

/** @type {Array<() => Promise<void>>} */
const throwawayStops = [];
/** @type {Map<string, import('node:child_process').ChildProcess>} */
const running = new Map();
/** @type {Promise<void>[]} */
const outputClosed = [];
let phase = /** @type {'servers' | 'services' | 'stopping'} */ ('servers');

/** @param {NodeJS.Signals} signal */
function onSignal(signal) {
  if (phase === 'servers') {
    // Servers still starting: the exit hook of local-servers.mjs kills whatever was spawned.
    complain(`${signal} while starting servers; exiting`);
    process.exit(130);
  }
  if (phase === 'stopping') {
    complain(`${signal} again: killing the services now`);
    for (const child of running.values()) child.kill('SIGKILL');
    return;
  }
  say(`${signal}: stopping the services`);
  void shutdown(0);
}
for (const signal of /** @type {NodeJS.Signals[]} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
  process.on(signal, () => onSignal(signal));
}

/** @param {number} code */
async function shutdown(code) {
  if (phase === 'stopping') return;
  phase = 'stopping';
  for (const child of running.values()) child.kill('SIGTERM');
  const allExited = Promise.all([...running.values()].map((child) => new Promise((resolve) => child.once('exit', resolve))));
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const timedOut = await Promise.race([
    allExited.then(() => false),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(true), SHUTDOWN_GRACE_MS);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    complain(`still running after ${SHUTDOWN_GRACE_MS / 1000} s, killing: ${[...running.keys()].join(', ')}`);
    for (const child of running.values()) child.kill('SIGKILL');
    await Promise.race([allExited, new Promise((resolve) => setTimeout(resolve, 3000))]);
  }
  // Let the last lines of output through.
  await Promise.race([Promise.all(outputClosed), new Promise((resolve) => setTimeout(resolve, 1000))]);
  for (const stop of throwawayStops) await stop().catch((err) => complain(`stopping a throwaway server: ${err}`));
  process.exit(code);
}

// ---------------------------------------------------------------------------
// Servers

/** @returns {Promise<{ redisUrl: string, rabbitmqUrls: string[] }>} */
async function resolveServers() {
  let redisUrl = process.env.REDIS_URL?.trim() || 'redis://127.0.0.1:6379';
  const configuredRabbit = (process.env.RABBITMQ_URLS ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  let rabbitmqUrls = configuredRabbit.length ? configuredRabbit : ['amqp://guest:guest@127.0.0.1:5672'];

  const [redisUp, rabbitUp] = await Promise.all([
    redisAnswers(redisUrl, 1500),
    Promise.all(rabbitmqUrls.map((u) => amqpAnswers(u, 1500))).then((r) => r.some(Boolean)),
  ]);
  const bins = haveBinaries();
  const rabbitShown = rabbitmqUrls.map(redact).join(',');

  /** @type {string[]} */
  const problems = [];
  if (!redisUp) {
    if (!isLoopback(redisUrl)) problems.push(`no Redis answers at ${redact(redisUrl)} (not on this machine)`);
    else if (!bins.redis) problems.push(`no Redis at ${redact(redisUrl)} and redis-server is not installed`);
  }
  if (!rabbitUp) {
    if (!rabbitmqUrls.every(isLoopback)) problems.push(`no RabbitMQ node answers at ${rabbitShown} (not on this machine)`);
    else if (!bins.rabbitmq) problems.push(`no RabbitMQ at ${rabbitShown} and rabbitmq-server is not installed`);
  }
  if (problems.length) {
    complain(
      `${problems.join('; ')}.\n` +
        '        Install the Debian packages redis-server and rabbitmq-server (throwaway servers are then started),\n' +
        '        or run `docker compose up -d`, or set REDIS_URL / RABBITMQ_URLS to servers that are running.',
    );
    process.exit(1);
  }

  const [redis, rabbit] = await Promise.all([redisUp ? undefined : startRedis(), rabbitUp ? undefined : startRabbitCluster({ nodes: 1 })]);
  if (redis) {
    throwawayStops.push(() => redis.stop());
    say(`no Redis at ${redact(redisUrl)}; started a throwaway one at ${redis.url} (data is not kept)`);
    redisUrl = redis.url;
  }
  if (rabbit) {
    throwawayStops.push(() => rabbit.stop());
    say(`no RabbitMQ at ${rabbitShown}; started a throwaway one at ${rabbit.urls.join(',')} (data is not kept)`);
    rabbitmqUrls = rabbit.urls;
  }
  return { redisUrl, rabbitmqUrls };
}

// ---------------------------------------------------------------------------
// Services

/**
 * @param {string} name
 * @param {number} index
 */
function prefixFor(name, index) {
  const label = `${name.padEnd(NAME_WIDTH)} | `;
  const colour = process.stdout.isTTY && !process.env.NO_COLOR;
  return colour ? `\x1b[${COLOURS[index % COLOURS.length]}m${label}\x1b[0m` : label;
}

/**
 * @param {string} name
 * @param {number} index
 * @param {NodeJS.ProcessEnv} env
 */
function startService(name, index, env) {
  const child = spawn(process.execPath, [path.join(ROOT, name, 'dist', 'main.js')], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.set(name, child);
  const prefix = prefixFor(name, index);
  for (const [stream, out] of /** @type {const} */ ([
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ])) {
    const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', (line) => out.write(`${prefix}${line}\n`));
    outputClosed.push(new Promise((resolve) => lines.once('close', resolve)));
  }
  child.once('error', (err) => {
    complain(`${name} could not be started: ${err.message}`);
    running.delete(name);
    void shutdown(1);
  });
  child.once('exit', (code, signal) => {
    running.delete(name);
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (phase === 'stopping') {
      if (code !== 0 && signal !== 'SIGTERM') complain(`${name} exited with ${how}`);
      return;
    }
    complain(`${name} exited unexpectedly (${how}); stopping everything`);
    void shutdown(1);
  });
}

// ---------------------------------------------------------------------------

const missing = SERVICES.filter((s) => !existsSync(path.join(ROOT, s, 'dist', 'main.js')));
if (missing.length) {
  complain(`not built: ${missing.map((s) => `${s}/dist/main.js`).join(', ')}. Run \`npm run build\` first.`);
  process.exit(1);
}

const { redisUrl, rabbitmqUrls } = await resolveServers();
phase = 'services';
say(
  `gateway http://127.0.0.1:${process.env.GATEWAY_PORT || 8080}, dashboard http://127.0.0.1:${process.env.DASHBOARD_PORT || 8081}` +
    ` (redis ${redact(redisUrl)}, rabbitmq ${rabbitmqUrls.map(redact).join(',')})`,
);
const env = { ...process.env, REDIS_URL: redisUrl, RABBITMQ_URLS: rabbitmqUrls.join(',') };
SERVICES.forEach((name, i) => startService(name, i, env));
