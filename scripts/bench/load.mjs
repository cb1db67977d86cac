// The benchmark's load generators and probes: the broker's confirmed-publish ceiling, Redis SET NX
// rate, autocannon at saturation, a paced HTTP client for fixed rates, a process's RSS.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import autocannon from 'autocannon';
import { waitFor } from '../poll.mjs';

/**
 * Confirmed publishes per second from one amqplib client into `queue`, `inFlight` at a time.
 * @param {{ url: string, queue: string, content: Buffer, options: import('amqplib').Options.Publish, durationMs: number, inFlight?: number }} o
 */
export async function brokerCeiling({ url, queue, content, options, durationMs, inFlight = 500 }) {
  const connection = await amqp.connect(url);
  connection.on('error', () => undefined);
  try {
    const ch = await connection.createConfirmChannel();
    let confirmed = 0;
    let failed = 0;
    const started = performance.now();
    const end = started + durationMs;
    await new Promise((resolve) => {
      let outstanding = 0;
      const pump = () => {
        while (outstanding < inFlight && performance.now() < end) {
          outstanding++;
          ch.publish('', queue, content, { ...options, persistent: true }, (err) => {
            outstanding--;
            if (err) failed++;
            else confirmed++;
            if (performance.now() < end) pump();
            else if (outstanding === 0) resolve(undefined);
          });
        }
      };
      pump();
    });
    const seconds = (performance.now() - started) / 1000;
    await ch.close();
    return { rate: Math.round(confirmed / seconds), confirmed, failed, inFlight, seconds: round2(seconds), messageBytes: content.length };
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/**
 * SET NX (with a TTL) per second through one ioredis client with auto-pipelining, `inFlight` at a time.
 * @param {{ redis: import('ioredis').Redis, prefix: string, durationMs: number, inFlight?: number }} o
 */
export async function redisSetNxRate({ redis, prefix, durationMs, inFlight = 500 }) {
  let done = 0;
  let i = 0;
  const started = performance.now();
  const end = started + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      await redis.set(`${prefix}${i++}`, '{"state":"inflight"}', 'PX', 60_000, 'NX');
      done++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = (performance.now() - started) / 1000;
  return { rate: Math.round(done / seconds), commands: done, inFlight, seconds: round2(seconds) };
}

/**
 * Saturates `url` + /orders with POSTs of unique ids for `durationMs`, measuring like autocannon does.
 * @param {{ url: string, body: (n: number) => string, durationMs: number, connections: number, overallRate?: number, amount?: number }} o
 */
export async function cannon({ url, body, durationMs, connections, overallRate, amount }) {
  let n = 0;
  const result = await autocannon({
    url,
    connections,
    duration: Math.max(1, Math.round(durationMs / 1000)),
    ...(overallRate ? { overallRate } : {}),
    ...(amount ? { amount } : {}),
    requests: [
      {
        method: 'POST',
        path: '/orders',
        headers: { 'content-type': 'application/json' },
        setupRequest: (/** @type {any} */ req) => ({ ...req, body: body(n++) }),
      },
    ],
  });
  const ok = result['2xx'];
  return {
    rate: Math.round(ok / result.duration),
    requests: result.requests.total,
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    seconds: round2(result.duration),
    connections,
    statusCodes: result.statusCodeStats,
  };
}

/**
 * One second at saturation before anything is measured (JIT, connections), with ids of its own.
 * @param {{ port: number, body: (n: number) => { text: string }, connections: number }} o
 */
export function warmUp({ port, body, connections }) {
  return cannon({ url: `http://127.0.0.1:${port}`, body: (n) => body(n).text, durationMs: 1000, connections });
}

/**
 * Sends `rate` POSTs per second for `durationMs` (count bounded: rate x duration), each with its own
 * id, and records each request's start (epoch ms, sub-ms precision) and status. Resolves once the
 * last request is sent; `answered` resolves (with the seconds since the start) once all are answered.
 * @param {{ host: string, port: number, rate: number, durationMs: number, body: (n: number) => { id: string, text: string }, maxSockets?: number }} o
 */
export async function paced({ host, port, rate, durationMs, body, maxSockets = 256 }) {
  const sockets = new http.Agent({ keepAlive: true, maxSockets });
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  /** @type {{ id: string, start: number, status: number, ms: number }[]} */
  const sent = [];
  const t0 = performance.now();
  // Starts are compared with wall-clock times other processes write (e.g. a notification's
  // sentAt): anchor the monotonic clock to the wall clock now, not at this process's start, so a
  // wall clock that was adjusted (NTP) since then does not shift every end-to-end figure.
  const wallOffset = Date.now() - (performance.timeOrigin + t0);
  let next = 0;
  const pending = new Set();
  const send = (/** @type {number} */ n) => {
    const { id, text } = body(n);
    const start = performance.now();
    const rec = { id, start: performance.timeOrigin + wallOffset + start, status: 0, ms: 0 };
    sent.push(rec);
    const p = new Promise((resolve) => {
      const req = http.request(
        {
          host,
          port,
          method: 'POST',
          path: '/orders',
          agent: sockets,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            rec.status = res.statusCode ?? 0;
            rec.ms = performance.now() - start;
            resolve(undefined);
          });
        },
      );
      req.on('error', () => resolve(undefined));
      req.end(text);
    });
    pending.add(p);
    p.finally(() => pending.delete(p));
  };
  while (next < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
    while (next < due) send(next++);
    await sleep(2);
  }
  const sendSeconds = (performance.now() - t0) / 1000;
  const answered = Promise.all([...pending]).then(() => {
    sockets.destroy();
    return (performance.now() - t0) / 1000;
  });
  return { sent, sendSeconds, answered };
}

/**
 * Resident set size of a process in MiB (Linux /proc), or undefined elsewhere.
 * @param {number | undefined} pid
 */
export function rssMiB(pid) {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds (user + system) a process has used so far (Linux /proc; clock ticks assumed 100/s),
 * or undefined elsewhere.
 * @param {number | undefined} pid
 */
export function cpuSeconds(pid) {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Samples a process's RSS every `everyMs` until `stop()`; returns the samples.
 * @param {number | undefined} pid
 * @param {number} [everyMs]
 */
export function sampleRss(pid, everyMs = 500) {
  /** @type {number[]} */
  const samples = [];
  const timer = setInterval(() => {
    const v = rssMiB(pid);
    if (v !== undefined) samples.push(v);
  }, everyMs);
  return {
    samples,
    stop: () => {
      clearInterval(timer);
      return samples;
    },
  };
}

/** @param {number} v */
function round2(v) {
  return Math.round(v * 100) / 100;
}

/**
 * The histograms a service exports on /metrics, by series (name and labels without `le`):
 * cumulative bucket counts, sum and count.
 * @param {string} url  the service's base URL
 * @returns {Promise<Map<string, { buckets: [number, number][], sum: number, count: number }>>}
 */
export async function scrapeHistograms(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  /** @type {Map<string, { buckets: [number, number][], sum: number, count: number }>} */
  const series = new Map();
  const get = (/** @type {string} */ key) => {
    let s = series.get(key);
    if (!s) series.set(key, (s = { buckets: [], sum: 0, count: 0 }));
    return s;
  };
  for (const line of text.split('\n')) {
    const m = /^(\w+)_(bucket|sum|count)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const [, name, part, labels = '', value] = m;
    const le = /(?:^|,)le="([^"]*)"/.exec(labels)?.[1];
    const rest = labels
      .split(/,(?=\w+=")/)
      .filter((l) => l && !l.startsWith('le=') && !l.startsWith('service='))
      .join(',');
    const s = get(`${name}{${rest}}`);
    if (part === 'bucket' && le !== undefined) s.buckets.push([le === '+Inf' ? Infinity : Number(le), Number(value)]);
    else if (part === 'sum') s.sum = Number(value);
    else if (part === 'count') s.count = Number(value);
  }
  return series;
}

/**
 * What one histogram series observed between two scrapes: count, mean, and p50/p99 interpolated
 * within their buckets (so only as precise as the buckets), in ms.
 * @param {Awaited<ReturnType<typeof scrapeHistograms>>} before
 * @param {Awaited<ReturnType<typeof scrapeHistograms>>} after
 * @param {string} key  e.g. 'consumer_handle_seconds{queue="orders.queue",outcome="ack"}'
 */
export function histogramBetween(before, after, key) {
  const a = after.get(key);
  if (!a) return undefined;
  const b = before.get(key) ?? { buckets: [], sum: 0, count: 0 };
  const count = a.count - b.count;
  if (count <= 0) return { count: 0 };
  /** @type {[number, number][]} */
  const buckets = a.buckets.map(([le, n]) => [le, n - (b.buckets.find(([l]) => l === le)?.[1] ?? 0)]);
  const quantile = (/** @type {number} */ q) => {
    const rank = q * count;
    let prevLe = 0;
    let prevN = 0;
    for (const [le, n] of buckets) {
      if (n >= rank) {
        if (le === Infinity) return `>${prevLe * 1000}`;
        return round2((prevLe + ((le - prevLe) * (rank - prevN)) / Math.max(1, n - prevN)) * 1000);
      }
      prevLe = le;
      prevN = n;
    }
    return undefined;
  };
  return { count, meanMs: round2(((a.sum - b.sum) / count) * 1000), p50Ms: quantile(0.5), p99Ms: quantile(0.99) };
}

/**
 * Request bodies with their own order ids: `${prefix}-${n}`, one stock-keeping unit for all.
 * @param {string} prefix
 * @param {string} [sku]
 */
export const orderBody =
  (prefix, sku = 'bench-sku') =>
  (/** @type {number} */ n) => {
    const id = `${prefix}-${n}`;
    return { id, text: `{"id":"${id}","sku":"${sku}","qty":1}` };
  };

/**
 * Resolves once a queue stops growing (two equal depths half a second apart): autocannon stops
 * with requests in flight, and each ends within the publish timeout.
 * @param {() => Promise<number>} depth  the queue's depth now
 */
export function queueSettled(depth) {
  let last = -1;
  return waitFor(
    'the queue to settle',
    async () => {
      const now = await depth();
      const settled = now === last;
      last = now;
      return settled ? true : undefined;
    },
    30_000,
    500,
  );
}

/**
 * `list` rotated left by `by`: interleaved rounds start each with the next entry, so no run
 * always follows the same other one (a purge's or a drain's after-effects fall on each in turn).
 * @template T
 * @param {T[]} list
 * @param {number} by
 * @returns {T[]}
 */
export function rotate(list, by) {
  const k = list.length === 0 ? 0 : by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}
