// The pipeline and the least pipeline at fixed rates: one fixed-rate step (paced requests at the
// door, then every accepted order followed to its notification), the bisection for the sustained
// rate, run for both pipelines probe by probe, and the latency rounds at one rate for both.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../poll.mjs';
import { cpuSeconds, paced, rotate } from './load.mjs';
import { summarize } from './report.mjs';

/**
 * One pipeline as the fixed-rate steps drive it.
 * @typedef {object} Pipeline
 * @property {string} label
 * @property {number} port  its door's HTTP port (POST /orders)
 * @property {() => Promise<number>} notified  orders notified so far
 * @property {(ids: string[]) => Promise<(number | undefined)[]>} sentAt  when each order was notified (epoch ms)
 * @property {Record<string, number[]>} pids  the processes its CPU per order counts, by role
 * @property {number} door  the door's own saturation rate: the bisection's upper bound
 */

/**
 * CPU seconds of each role (the sum over its processes), undefined for a role with a process
 * whose /proc cannot be read.
 * @param {Record<string, number[]>} pids
 */
export function cpuByRole(pids) {
  /** @type {Record<string, number | undefined>} */
  const out = {};
  for (const [role, list] of Object.entries(pids)) {
    const each = list.map((pid) => cpuSeconds(pid));
    out[role] = list.length > 0 && each.every((v) => v !== undefined) ? each.reduce((a, b) => (a ?? 0) + (b ?? 0), 0) : undefined;
  }
  return out;
}

/**
 * CPU microseconds per order by role between two cpuByRole readings, and their total (undefined
 * when a role could not be read).
 * @param {Record<string, number | undefined>} before
 * @param {Record<string, number | undefined>} after
 * @param {number} orders
 */
export function cpuPerOrder(before, after, orders) {
  /** @type {Record<string, number | undefined>} */
  const out = {};
  let total = 0;
  let complete = true;
  for (const role of Object.keys(before)) {
    const b = before[role];
    const a = after[role];
    const us = b === undefined || a === undefined || orders === 0 ? undefined : Math.round(((a - b) / orders) * 1e6);
    out[role] = us;
    if (us === undefined) complete = false;
    else total += us;
  }
  out.total = complete ? total : undefined;
  return out;
}

/**
 * `rate` orders/s at the pipeline's door for `stepS` seconds, then until every accepted order is
 * notified (at most 15 s). Sustained when every request got a 202, the last answer came within
 * 0.5 s of the last request, the backlog between 202 and notification when the last request went
 * out was under 0.5 s of work, and every accepted order was notified within 5 s after.
 * @param {Pipeline} p
 * @param {{ rate: number, stepS: number, body: (n: number) => { id: string, text: string }, e2e?: boolean }} o
 */
export async function fixedRateStep(p, { rate, stepS, body, e2e = false }) {
  const before = await p.notified();
  const cpuBefore = cpuByRole(p.pids);
  /** @type {number[]} */
  const backlog = [];
  let sending = true;
  let sentSoFar = 0;
  const sampler = (async () => {
    while (sending) {
      await sleep(500);
      backlog.push(sentSoFar - ((await p.notified()) - before));
    }
  })();
  const run = await paced({
    host: '127.0.0.1',
    port: p.port,
    rate,
    durationMs: stepS * 1000,
    body: (n) => {
      sentSoFar = n; // requests sent so far: the backlog sampler's upper bound
      return body(n);
    },
  });
  // The backlog between 202 and notification as the last request goes out.
  const atEnd = run.sent.filter((r) => r.status === 202).length - ((await p.notified()) - before);
  const answeredSeconds = await run.answered;
  sending = false;
  await sampler;
  const { sent, sendSeconds } = run;
  const accepted = sent.filter((r) => r.status === 202);
  const drainStart = performance.now();
  let drained = true;
  try {
    await waitFor('notifications', async () => ((await p.notified()) - before >= accepted.length ? true : undefined), 15_000, 100);
  } catch {
    drained = false;
  }
  const drainMs = Math.round(performance.now() - drainStart);
  const cpu = cpuPerOrder(cpuBefore, cpuByRole(p.pids), accepted.length);
  const checks = {
    allAccepted: accepted.length >= 0.99 * sent.length,
    // No queue at the door either: the last answer comes soon after the last request.
    answeredInTime: answeredSeconds <= sendSeconds + 0.5,
    backlogBounded: atEnd <= Math.max(25, rate * 0.5),
    drained: drained && drainMs <= 5000,
  };
  /** @type {number[]} */
  const e2eMs = [];
  if (e2e) {
    const at = await p.sentAt(accepted.map((r) => r.id));
    accepted.forEach((r, i) => {
      const t = at[i];
      if (t !== undefined) e2eMs.push(t - r.start);
    });
  }
  return {
    rate: Math.round(rate),
    requests: sent.length,
    accepted: accepted.length,
    sendSeconds: Math.round(sendSeconds * 100) / 100,
    answeredSeconds: Math.round(answeredSeconds * 100) / 100,
    backlogSamples: backlog,
    backlogAtEnd: atEnd,
    drainMs,
    cpuUsPerOrder: cpu,
    responseMs: summarize(sent.filter((r) => r.status).map((r) => r.ms)),
    ...(e2e ? { notifiedWithSentAt: e2eMs.length, e2eMs: summarize(e2eMs) } : {}),
    sustained: Object.values(checks).every(Boolean),
    checks,
  };
}

/**
 * The sustained rate of each pipeline: a bisection between 0 and its door's rate, the pipelines'
 * probes interleaved (probe 1 of each, then probe 2 of each, ..., each probe starting with the
 * next pipeline) so both see the same machine.
 * Resolution: the door's rate / 2^probes; the sustained rate lies in [sustainedRate, notSustainedRate).
 * @param {Pipeline[]} pipelines
 * @param {{ probes: number, stepS: number, body: (label: string, probe: number) => (n: number) => { id: string, text: string }, say: (m: string) => void }} o
 */
export async function bisect(pipelines, { probes, stepS, body, say }) {
  const state = pipelines.map((p) => ({ p, lo: 0, hi: p.door, probes: /** @type {any[]} */ ([]) }));
  for (let i = 0; i < probes; i++) {
    for (const s of rotate(state, i)) {
      const rate = Math.max(10, Math.round((s.lo + s.hi) / 2));
      const r = await fixedRateStep(s.p, { rate, stepS, body: body(s.p.label, i) });
      s.probes.push(r);
      say(
        `  ${s.p.label} at ${rate}/s: ${r.sustained ? 'sustained' : 'NOT sustained'} (accepted ${r.accepted}/${r.requests}, backlog at end ${r.backlogAtEnd}, drained in ${r.drainMs} ms, responses p99 ${r.responseMs.p99} ms, CPU µs/order ${r.cpuUsPerOrder.total})`,
      );
      if (r.sustained) s.lo = rate;
      else s.hi = rate;
    }
  }
  return Object.fromEntries(state.map((s) => [s.p.label, { sustainedRate: s.lo, notSustainedRate: s.hi, probes: s.probes }]));
}

/**
 * `rounds` interleaved rounds of one fixed-rate step per pipeline at the same `rate` (each round
 * starting with the next pipeline), each with its end-to-end latency (request start to notification) and CPU per order.
 * @param {Pipeline[]} pipelines
 * @param {{ rounds: number, rate: number, stepS: number, body: (label: string, round: number) => (n: number) => { id: string, text: string }, say: (m: string) => void }} o
 */
export async function latencyRounds(pipelines, { rounds, rate, stepS, body, say }) {
  /** @type {Record<string, any>[]} */
  const out = [];
  for (let round = 0; round < rounds; round++) {
    /** @type {Record<string, any>} */
    const r = {};
    for (const p of rotate(pipelines, round)) {
      const s = await fixedRateStep(p, { rate, stepS, body: body(p.label, round), e2e: true });
      r[p.label] = s;
      say(
        `  ${p.label} at ${rate}/s: end-to-end p50 ${s.e2eMs?.p50} p99 ${s.e2eMs?.p99} ms, CPU µs/order ${JSON.stringify(s.cpuUsPerOrder)}${s.sustained ? '' : ' (NOT sustained)'}`,
      );
    }
    out.push(r);
  }
  return out;
}
