// What each guarantee costs: the gateway and the pipeline run with it and without it (service
// variants that differ in one setting), in interleaved rounds like the saturation runs. Per run:
// that variant's gateway at saturation (its accepted orders stay in orders.queue, nothing consumes
// them), then a processor and a notifier of the same variant started on that backlog; their drain
// rate (notifications/s after a 0.5 s warm-up, until the backlog or the time is used up) is the
// pipeline's figure. Next to each rate, the CPU per order of the gateway with the servers (Redis,
// RabbitMQ) and of the consumers with the servers: steadier than rates when other work shares
// the machine. Fresh consumers each run: every variant's processor would otherwise take its
// share of the others' backlogs. Each round starts with the next variant (round 1: a, b, c; round
// 2: b, c, a; ...), so none always runs after the same one.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { cannon, rotate, warmUp } from './load.mjs';
import { cpuByRole, cpuPerOrder } from './pipelines.mjs';

/**
 * @typedef {{ label: string, env: Record<string, string> }} Variant
 * @typedef {{ port: number, pid: number | undefined, stop: () => Promise<void> }} Started
 * @typedef {{
 *   gateway: { rate: number, p50: number, p99: number, cpuUsPerRequest: number | undefined, cpuUsPerOrder: Record<string, number | undefined>, statusCodes: unknown },
 *   pipeline: { drainRate: number | undefined, cpuUsPerOrder: Record<string, number | undefined>, backlog: number, notifiedInWindow: number, windowMs: number, backlogUsedUp: boolean },
 * }} VariantRun
 */

/**
 * @param {{
 *   name: string,
 *   variants: Variant[],
 *   rounds: number,
 *   durationS: number,
 *   connections: number,
 *   serverPids: Record<string, number[]>,
 *   startService: (service: 'api-gateway' | 'order-processor' | 'notifier', env: Record<string, string>, logName: string) => Promise<Started>,
 *   settle: () => Promise<unknown>,
 *   ordersDepth: () => Promise<number>,
 *   purge: () => Promise<void>,
 *   notified: () => Promise<number>,
 *   body: (label: string, round: number) => (n: number) => { id: string, text: string },
 *   say: (m: string) => void,
 * }} o
 * @returns {Promise<Record<string, VariantRun>[]>} one record per round, by variant label
 */
export async function priceVariants(o) {
  const D = o.durationS * 1000;
  // Labels name files and order ids: letters, digits and dashes only.
  const slug = (/** @type {string} */ label) => label.replace(/\W+/g, '-');
  /** @type {Record<string, Started>} */
  const gateways = {};
  try {
    // Started and warmed side by side: nothing is measured yet.
    await Promise.all(
      o.variants.map(async (v) => {
        const gw = await o.startService('api-gateway', v.env, `api-gateway-${slug(o.name)}-${slug(v.label)}`);
        gateways[v.label] = gw;
        await warmUp({ port: gw.port, body: o.body(`${slug(v.label)}-warm`, 0), connections: o.connections });
      }),
    );
    await o.settle();
    await o.purge();

    /** @param {Variant} v @param {number} round @returns {Promise<VariantRun>} */
    const run = async (v, round) => {
      const gw = /** @type {Started} */ (gateways[v.label]);
      const body = o.body(slug(v.label), round);
      // CPU of the gateway and of the servers (their work for it counts too: a WAIT is work for
      // the replicas), per request.
      const gwRoles = { gateway: gw.pid ? [gw.pid] : [], ...o.serverPids };
      const cpu0 = cpuByRole(gwRoles);
      const m = await cannon({ url: `http://127.0.0.1:${gw.port}`, body: (n) => body(n).text, durationMs: D, connections: o.connections });
      const gwCpu = cpuPerOrder(cpu0, cpuByRole(gwRoles), m.requests);
      const cpuUsPerRequest = gwCpu.gateway;
      await o.settle();
      const backlog = await o.ordersDepth();
      const before = await o.notified();
      const consumers = await Promise.all([
        o.startService('order-processor', v.env, `order-processor-${slug(o.name)}-${slug(v.label)}-${round}`),
        o.startService('notifier', v.env, `notifier-${slug(o.name)}-${slug(v.label)}-${round}`),
      ]);
      await sleep(500);
      const pipeRoles = {
        processor: consumers[0].pid ? [consumers[0].pid] : [],
        notifier: consumers[1].pid ? [consumers[1].pid] : [],
        ...o.serverPids,
      };
      const n1 = await o.notified();
      const pipeCpu0 = cpuByRole(pipeRoles);
      const t1 = performance.now();
      let n2 = n1;
      let t2 = t1;
      while (t2 - t1 < D && n2 - before < backlog) {
        await sleep(50);
        n2 = await o.notified();
        t2 = performance.now();
      }
      const pipeCpu = cpuPerOrder(pipeCpu0, cpuByRole(pipeRoles), n2 - n1);
      await Promise.all(consumers.map((c) => c.stop()));
      await o.purge();
      const drainRate = n2 > n1 && t2 > t1 ? Math.round(((n2 - n1) * 1000) / (t2 - t1)) : undefined;
      o.say(
        `${o.name} ${v.label}: gateway ${m.rate} orders/s (p50 ${m.p50} ms, p99 ${m.p99} ms, CPU µs/request ${cpuUsPerRequest}, with the servers' ${gwCpu.total}); pipeline drained ${drainRate} orders/s (${n2 - n1} in ${Math.round(t2 - t1)} ms of a ${backlog}-order backlog; CPU µs/order ${pipeCpu.total})`,
      );
      return {
        gateway: { rate: m.rate, p50: m.p50, p99: m.p99, cpuUsPerRequest, cpuUsPerOrder: gwCpu, statusCodes: m.statusCodes },
        pipeline: {
          drainRate,
          cpuUsPerOrder: pipeCpu,
          backlog,
          notifiedInWindow: n2 - n1,
          windowMs: Math.round(t2 - t1),
          backlogUsedUp: n2 - before >= backlog,
        },
      };
    };

    o.say(`${o.name}: ${o.rounds} round(s) of ${o.variants.map((v) => v.label).join(', ')}; ${o.durationS} s each at saturation`);
    /** @type {Record<string, VariantRun>[]} */
    const rounds = [];
    for (let round = 0; round < o.rounds; round++) {
      /** @type {Record<string, VariantRun>} */
      const r = {};
      // Each round starts with the next variant: no variant always follows the same one.
      for (const v of rotate(o.variants, round)) r[v.label] = await run(v, round);
      rounds.push(r);
    }
    return rounds;
  } finally {
    await Promise.all(Object.values(gateways).map((g) => g.stop()));
  }
}
