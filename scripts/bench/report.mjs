// The benchmark's pure parts: percentiles, ratios, the printed table and the SVG chart. No I/O,
// so they are unit-tested on their own.

/**
 * The q-th percentile (0..100) of `values` by nearest rank; undefined for no values.
 * @param {number[]} values
 * @param {number} q
 * @returns {number | undefined}
 */
export function percentile(values, q) {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((q / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * count, min, p50, p90, p99, max of `values`, rounded to 0.1.
 * @param {number[]} values
 */
export function summarize(values) {
  const r = (/** @type {number | undefined} */ v) => (v === undefined ? undefined : Math.round(v * 10) / 10);
  return {
    count: values.length,
    min: r(percentile(values, 0)),
    p50: r(percentile(values, 50)),
    p90: r(percentile(values, 90)),
    p99: r(percentile(values, 99)),
    max: r(percentile(values, 100)),
  };
}

/**
 * a / b rounded to 0.01, or undefined when either is missing or b is 0.
 * @param {number | undefined} a
 * @param {number | undefined} b
 */
export function ratio(a, b) {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return undefined;
  return Math.round((a / b) * 100) / 100;
}

/**
 * Interleaved rounds of the three saturation runs reduced to what is reported: within each round
 * the ratios between the gateways (runs seconds apart, so slow drifts of the machine cancel); each
 * ratio's median (nearest rank) and range over the rounds; and the round whose gateway / least
 * gateway with idempotency ratio (the goal's) is the median, whose runs stand for the rates.
 * @template {{ leastGateway?: { rate?: number }, leastGatewayIdempotent?: { rate?: number }, gateway?: { rate?: number } }} R
 * @param {R[]} rounds
 */
export function medianRound(rounds) {
  if (rounds.length === 0) throw new Error('medianRound needs at least one round');
  const perRound = rounds.map((r) => ({
    gatewayToLeastGateway: ratio(r.gateway?.rate, r.leastGateway?.rate),
    leastIdempotentToLeastGateway: ratio(r.leastGatewayIdempotent?.rate, r.leastGateway?.rate),
    gatewayToLeastIdempotent: ratio(r.gateway?.rate, r.leastGatewayIdempotent?.rate),
  }));
  /** @type {Record<string, number | undefined>} */
  const ratios = {};
  /** @type {Record<string, [number, number] | undefined>} */
  const ranges = {};
  for (const key of /** @type {(keyof (typeof perRound)[number])[]} */ (Object.keys(perRound[0] ?? {}))) {
    const values = perRound.map((p) => p[key]).filter((v) => v !== undefined);
    ratios[key] = percentile(values, 50);
    ranges[key] = values.length > 0 ? [Math.min(...values), Math.max(...values)] : undefined;
  }
  const byRatio = rounds
    .map((_, i) => i)
    .sort((a, b) => (perRound[a]?.gatewayToLeastIdempotent ?? 0) - (perRound[b]?.gatewayToLeastIdempotent ?? 0));
  const mid = byRatio[Math.ceil(byRatio.length / 2) - 1] ?? 0;
  return {
    median: /** @type {R} */ (rounds[mid]),
    ratios,
    ranges,
    rounds: rounds.map((r, i) => ({
      leastGateway: r.leastGateway?.rate,
      leastGatewayIdempotent: r.leastGatewayIdempotent?.rate,
      gateway: r.gateway?.rate,
      ...perRound[i],
    })),
  };
}

/**
 * The median (nearest rank) and range of the defined values; undefined for none.
 * @param {(number | undefined)[]} values
 */
export function medianAndRange(values) {
  const defined = /** @type {number[]} */ (values.filter((v) => v !== undefined));
  return {
    median: percentile(defined, 50),
    range: defined.length > 0 ? /** @type {[number, number]} */ ([Math.min(...defined), Math.max(...defined)]) : undefined,
  };
}

/**
 * What a guarantee costs, in % of the rate without it: 100 * (1 - with / without), to 0.1;
 * undefined when either is missing. Negative when the run with it came out faster. For CPU per
 * order (`perOrder`), the rate the CPU alone would allow: 100 * (1 - without / with).
 * @param {number | undefined} withIt
 * @param {number | undefined} without
 * @param {boolean} [perOrder]
 */
export function costPct(withIt, without, perOrder = false) {
  if (withIt === undefined || without === undefined || !without || !withIt) return undefined;
  return Math.round((1 - (perOrder ? without / withIt : withIt / without)) * 1000) / 10;
}

/** The most a guarantee may cost, in % of the gateway's or the pipeline's rate (issue 16). */
export const GUARANTEE_GOAL_PCT = 10;

/**
 * One guarantee priced from priceVariants' rounds: within each round, the cost of the variant with
 * it against the one without (runs seconds apart), for the gateway's saturation rate and the
 * pipeline's drain rate; each cost's median and range over the rounds against the goal.
 * Next to it, the cost the CPU per order implies (gateway and servers; consumers and servers).
 * @param {Record<string, { gateway?: { rate?: number, cpuUsPerOrder?: { total?: number } }, pipeline?: { drainRate?: number, cpuUsPerOrder?: { total?: number } } } | undefined>[]} rounds
 * A guarantee whose switch leaves the gateway as it is (`gateway: false`) gets no gateway figures:
 * its gateways' difference would be two identical processes', noise.
 * @param {{ guarantee: string, with: string, without: string, gateway?: boolean }} pair  variant labels
 */
export function guaranteeCost(rounds, pair) {
  if (rounds.length === 0) throw new Error('guaranteeCost needs at least one round');
  const perRound = rounds.map((r) => {
    const on = r[pair.with];
    const off = pair.gateway === false ? undefined : r[pair.without];
    const offPipeline = r[pair.without];
    return {
      gatewayWith: on?.gateway?.rate,
      gatewayWithout: off?.gateway?.rate,
      gatewayCostPct: costPct(on?.gateway?.rate, off?.gateway?.rate),
      pipelineWith: on?.pipeline?.drainRate,
      pipelineWithout: offPipeline?.pipeline?.drainRate,
      pipelineCostPct: costPct(on?.pipeline?.drainRate, offPipeline?.pipeline?.drainRate),
      // CPU-bound, the rate goes as 1 / CPU per order: the cost the CPU alone implies.
      gatewayCpuCostPct: costPct(on?.gateway?.cpuUsPerOrder?.total, off?.gateway?.cpuUsPerOrder?.total, true),
      pipelineCpuCostPct: costPct(on?.pipeline?.cpuUsPerOrder?.total, offPipeline?.pipeline?.cpuUsPerOrder?.total, true),
    };
  });
  const gateway = medianAndRange(perRound.map((p) => p.gatewayCostPct));
  const pipeline = medianAndRange(perRound.map((p) => p.pipelineCostPct));
  const gatewayCpu = medianAndRange(perRound.map((p) => p.gatewayCpuCostPct));
  const pipelineCpu = medianAndRange(perRound.map((p) => p.pipelineCpuCostPct));
  const pass = (/** @type {number | undefined} */ v) => (v === undefined ? undefined : v <= GUARANTEE_GOAL_PCT);
  return {
    ...pair,
    goalPct: GUARANTEE_GOAL_PCT,
    gatewayCostPct: gateway.median,
    gatewayCostRange: gateway.range,
    gatewayPass: pass(gateway.median),
    pipelineCostPct: pipeline.median,
    pipelineCostRange: pipeline.range,
    pipelinePass: pass(pipeline.median),
    gatewayCpuCostPct: gatewayCpu.median,
    gatewayCpuCostRange: gatewayCpu.range,
    pipelineCpuCostPct: pipelineCpu.median,
    pipelineCpuCostRange: pipelineCpu.range,
    rounds: perRound,
  };
}

/**
 * One goal: a ratio's median (or single value) and range against its bound.
 * @typedef {{ goal: string, value?: number, range?: [number, number], op: '>=' | '<=', bound: number, pass?: boolean, note?: string }} Goal
 */

/**
 * @param {string} goal
 * @param {{ median?: number, range?: [number, number] }} m
 * @param {'>=' | '<='} op
 * @param {number} bound
 * @param {string} [note]
 * @returns {Goal}
 */
export function goalOf(goal, m, op, bound, note) {
  const v = m.median;
  const pass = v === undefined ? undefined : op === '>=' ? v >= bound : v <= bound;
  return { goal, value: v, range: m.range, op, bound, pass, ...(note ? { note } : {}) };
}

/**
 * The pipeline against the least pipeline, reduced to the goals' figures: the sustained ratio
 * with the range its two bisections leave (each sustained rate lies in [sustained, not sustained)),
 * and, per latency round at the same rate, the end-to-end p99 ratio and the CPU per order ratio,
 * with their medians and ranges over the rounds.
 * @param {{ pipeline: { sustainedRate: number, notSustainedRate: number }, least: { sustainedRate: number, notSustainedRate: number } }} sustained
 * @param {{ pipeline?: LatencyStep, least?: LatencyStep }[]} latency  one record per round
 */
export function pipelineRatios(sustained, latency) {
  const p = sustained.pipeline;
  const l = sustained.least;
  const lo = ratio(p.sustainedRate, l.notSustainedRate);
  const hi = ratio(p.notSustainedRate, l.sustainedRate);
  const perRound = latency.map((r) => ({
    e2eP99ToLeast: ratio(r.pipeline?.e2eMs?.p99, r.least?.e2eMs?.p99),
    e2eP50ToLeast: ratio(r.pipeline?.e2eMs?.p50, r.least?.e2eMs?.p50),
    cpuPerOrderToLeast: ratio(r.pipeline?.cpuUsPerOrder?.total, r.least?.cpuUsPerOrder?.total),
  }));
  return {
    sustainedToLeast: {
      median: ratio(p.sustainedRate, l.sustainedRate),
      range: lo !== undefined && hi !== undefined ? /** @type {[number, number]} */ ([lo, hi]) : undefined,
    },
    e2eP99ToLeast: medianAndRange(perRound.map((x) => x.e2eP99ToLeast)),
    e2eP50ToLeast: medianAndRange(perRound.map((x) => x.e2eP50ToLeast)),
    cpuPerOrderToLeast: medianAndRange(perRound.map((x) => x.cpuPerOrderToLeast)),
    rounds: perRound,
  };
}

/**
 * The four goals of issue 16 from one setup's figures (single node, quorum queues).
 * @param {{ ratioRanges?: Record<string, [number, number] | undefined>, ratios?: Record<string, number | undefined> }} saturation
 * @param {ReturnType<typeof pipelineRatios>} pr
 * @returns {Goal[]}
 */
export function goals(saturation, pr) {
  return [
    goalOf(
      'gateway / least gateway with idempotency',
      { median: saturation.ratios?.gatewayToLeastIdempotent, range: saturation.ratioRanges?.gatewayToLeastIdempotent },
      '>=',
      0.8,
    ),
    goalOf('pipeline sustained / least pipeline sustained', pr.sustainedToLeast, '>=', 0.8, 'range: what the two bisections leave'),
    goalOf('pipeline end-to-end p99 / least pipeline, same rate', pr.e2eP99ToLeast, '<=', 1.5),
    goalOf('pipeline CPU per order / least pipeline', pr.cpuPerOrderToLeast, '<=', 1.5),
  ];
}

/** @param {unknown} v */
function cell(v) {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
  return String(v);
}

/**
 * A plain-text table: first row is the header.
 * @param {unknown[][]} rows
 */
export function formatTable(rows) {
  const text = rows.map((row) => row.map(cell));
  const widths = text[0]?.map((_, i) => Math.max(...text.map((row) => (row[i] ?? '').length))) ?? [];
  const line = (/** @type {string[]} */ row) =>
    row.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const [head, ...body] = text;
  if (!head) return '';
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/**
 * One saturation run as bench.mjs records it.
 * @typedef {{ rate?: number, p50?: number, p99?: number, cpuUsPerRequest?: number, rssMaxMiB?: number }} Run
 */
/**
 * One latency step of a pipeline as pipelines.mjs records it.
 * @typedef {{ rate?: number, e2eMs?: { p50?: number, p99?: number }, cpuUsPerOrder?: Record<string, number | undefined> }} LatencyStep
 */
/**
 * One setup's results as bench.mjs records them; any figure may be missing (a part skipped or failed).
 * @typedef {{
 *   brokerCeiling?: { rate?: number },
 *   redisSetNx?: { rate?: number },
 *   leastGateway?: Run,
 *   leastGatewayIdempotent?: Run,
 *   gateway?: Run,
 *   pipeline?: { sustainedRate?: number, latency?: LatencyStep },
 *   leastPipeline?: { sustainedRate?: number, latency?: LatencyStep },
 *   rounds?: unknown[],
 *   ratios?: Record<string, number | undefined>,
 *   ratioRanges?: Record<string, [number, number] | undefined>,
 *   goals?: Goal[],
 * }} Phase
 */
/**
 * A guarantee's price as guaranteeCost gives it.
 * @typedef {ReturnType<typeof guaranteeCost>} Price
 */

/**
 * The rows of the summary table, one column per setup (single node, cluster).
 * @param {Record<string, Phase>} phases  by setup name
 */
export function tableRows(phases) {
  /** @type {unknown[][]} */
  const rows = [['figure', ...Object.keys(phases)]];
  const add = (/** @type {string} */ label, /** @type {(p: Phase) => unknown} */ get) =>
    rows.push([label, ...Object.values(phases).map((p) => get(p))]);
  add('broker confirmed publishes/s', (p) => p.brokerCeiling?.rate);
  add('Redis SET NX/s', (p) => p.redisSetNx?.rate);
  add('least gateway req/s', (p) => p.leastGateway?.rate);
  add('least gateway with idempotency req/s', (p) => p.leastGatewayIdempotent?.rate);
  add('gateway accepted orders/s', (p) => p.gateway?.rate);
  add('gateway p50/p99 ms', (p) => latencyPair(p.gateway));
  add('gateway RSS under load MiB', (p) => p.gateway?.rssMaxMiB);
  // CPU per request of the process itself: steadier than rates when other work shares the machine.
  add('least gateway CPU µs/request', (p) => p.leastGateway?.cpuUsPerRequest);
  add('least gateway with idempotency CPU µs/request', (p) => p.leastGatewayIdempotent?.cpuUsPerRequest);
  add('gateway CPU µs/request', (p) => p.gateway?.cpuUsPerRequest);
  add('saturation rounds', (p) => p.rounds?.length);
  add('gateway / least gateway with idempotency', (p) =>
    withRange(p.ratios?.gatewayToLeastIdempotent, p.ratioRanges?.gatewayToLeastIdempotent),
  );
  add('least with idempotency / least gateway', (p) =>
    withRange(p.ratios?.leastIdempotentToLeastGateway, p.ratioRanges?.leastIdempotentToLeastGateway),
  );
  add('gateway / least gateway', (p) => withRange(p.ratios?.gatewayToLeastGateway, p.ratioRanges?.gatewayToLeastGateway));
  add('least pipeline sustained orders/s', (p) => p.leastPipeline?.sustainedRate);
  add('pipeline sustained orders/s', (p) => p.pipeline?.sustainedRate);
  add('pipeline / least pipeline sustained', (p) => withRange(p.ratios?.sustainedToLeast, p.ratioRanges?.sustainedToLeast));
  add('latency rate orders/s', (p) => p.pipeline?.latency?.rate);
  add('least pipeline end-to-end p50/p99 ms', (p) => latencyPair(p.leastPipeline?.latency?.e2eMs));
  add('pipeline end-to-end p50/p99 ms', (p) => latencyPair(p.pipeline?.latency?.e2eMs));
  add('pipeline / least pipeline e2e p99', (p) => withRange(p.ratios?.e2eP99ToLeast, p.ratioRanges?.e2eP99ToLeast));
  add('least pipeline CPU µs/order (all)', (p) => p.leastPipeline?.latency?.cpuUsPerOrder?.total);
  add('pipeline CPU µs/order (all)', (p) => p.pipeline?.latency?.cpuUsPerOrder?.total);
  add('pipeline / least pipeline CPU/order', (p) => withRange(p.ratios?.cpuPerOrderToLeast, p.ratioRanges?.cpuPerOrderToLeast));
  return rows;
}

/**
 * The goals table: each ratio, its range, its goal and pass/fail.
 * @param {Goal[]} list
 */
export function goalRows(list) {
  /** @type {unknown[][]} */
  const rows = [['goal (median of the rounds)', 'ratio', 'range', 'goal', 'result']];
  for (const g of list) rows.push([g.goal, g.value, range(g.range), `${g.op} ${g.bound}`, passText(g.pass)]);
  return rows;
}

/**
 * The guarantees table: each guarantee's cost in % of the gateway's and the pipeline's rate.
 * @param {Price[]} prices
 */
export function priceRows(prices) {
  /** @type {unknown[][]} */
  const rows = [
    [
      'guarantee (with / without)',
      'gateway cost %',
      'range',
      'pipeline cost %',
      'range',
      'goal',
      'result',
      'by CPU: gateway %',
      'pipeline %',
    ],
  ];
  for (const p of prices) {
    rows.push([
      `${p.guarantee} (${p.with} / ${p.without})`,
      pct(p.gatewayCostPct),
      range(p.gatewayCostRange, 1),
      pct(p.pipelineCostPct),
      range(p.pipelineCostRange, 1),
      `<= ${p.goalPct} %`,
      passText(overallPass(p)),
      pct(p.gatewayCpuCostPct),
      pct(p.pipelineCpuCostPct),
    ]);
  }
  return rows;
}

/**
 * Within the goal for the gateway and the pipeline, or for the pipeline alone when the
 * guarantee's switch leaves the gateway as it is; undefined without a figure.
 * @param {Price} p
 */
function overallPass(p) {
  if (p.gateway === false) return p.pipelinePass;
  return p.gatewayPass === undefined || p.pipelinePass === undefined ? undefined : p.gatewayPass && p.pipelinePass;
}

/** A cost in %, to 0.1. @param {number | undefined} v */
function pct(v) {
  return v === undefined ? '-' : v.toFixed(1);
}

/** @param {boolean | undefined} pass */
function passText(pass) {
  return pass === undefined ? '-' : pass ? 'pass' : 'FAIL';
}

/** @param {number | undefined} v @param {[number, number] | undefined} r */
function withRange(v, r) {
  if (v === undefined) return undefined;
  return r ? `${v.toFixed(2)} (${range(r)})` : v.toFixed(2);
}

/** @param {[number, number] | undefined} r @param {number} [digits] */
function range(r, digits = 2) {
  return r ? `${r[0].toFixed(digits)} to ${r[1].toFixed(digits)}` : undefined;
}

/** @param {{p50?: number, p99?: number} | undefined} l */
function latencyPair(l) {
  if (!l || l.p50 === undefined || l.p99 === undefined) return undefined;
  return `${round1(l.p50)} / ${round1(l.p99)}`;
}

/** @param {number} v */
function round1(v) {
  return Math.round(v * 10) / 10;
}

/** @param {string} s */
function esc(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * A self-contained SVG: per setup, horizontal bars of the throughput figures and its ratios; then
 * the goals with pass/fail and what each guarantee costs.
 * @param {{ title: string, subtitle: string, phases: Record<string, Phase>, prices?: Price[] }} input
 */
export function chartSvg({ title, subtitle, phases, prices = [] }) {
  const bars = [
    { key: 'broker ceiling (confirmed publishes/s)', get: (/** @type {Phase} */ p) => p.brokerCeiling?.rate, colour: '#9aa5b1' },
    { key: 'least gateway (req/s)', get: (/** @type {Phase} */ p) => p.leastGateway?.rate, colour: '#c9a227' },
    { key: 'least gateway + idempotency (req/s)', get: (/** @type {Phase} */ p) => p.leastGatewayIdempotent?.rate, colour: '#e0b84c' },
    { key: 'gateway (accepted orders/s)', get: (/** @type {Phase} */ p) => p.gateway?.rate, colour: '#2b7bb9' },
    { key: 'least pipeline sustained (orders/s)', get: (/** @type {Phase} */ p) => p.leastPipeline?.sustainedRate, colour: '#8fd19e' },
    { key: 'pipeline sustained (orders/s)', get: (/** @type {Phase} */ p) => p.pipeline?.sustainedRate, colour: '#2f9e44' },
  ];
  const setups = Object.entries(phases);
  const max = Math.max(1, ...setups.flatMap(([, p]) => bars.map((b) => Number(b.get(p) ?? 0))));
  const width = 760;
  const labelW = 250;
  const barMax = width - labelW - 90;
  const barH = 18;
  const parts = [];
  let y = 30;
  const text = (/** @type {string} */ line, /** @type {string} */ colour = '#333') => {
    y += 16;
    parts.push(`<text x="12" y="${y}" font-size="11" fill="${colour}">${esc(line)}</text>`);
  };
  parts.push(`<text x="12" y="${y}" font-size="16" font-weight="bold">${esc(title)}</text>`);
  y += 18;
  parts.push(`<text x="12" y="${y}" font-size="11" fill="#555">${esc(subtitle)}</text>`);
  y += 14;
  for (const [name, p] of setups) {
    y += 22;
    parts.push(`<text x="12" y="${y}" font-size="13" font-weight="bold">${esc(name)}</text>`);
    y += 6;
    for (const b of bars) {
      const v = Number(b.get(p) ?? 0);
      const w = Math.max(1, Math.round((v / max) * barMax));
      parts.push(`<text x="12" y="${y + 13}" font-size="11">${esc(b.key)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y}" width="${w}" height="${barH - 4}" fill="${b.colour}"/>`);
      parts.push(`<text x="${labelW + w + 6}" y="${y + 12}" font-size="11">${v ? Math.round(v) : '-'}</text>`);
      y += barH;
    }
    const pl = p.pipeline?.latency;
    const ll = p.leastPipeline?.latency;
    text(
      `at ${cell(pl?.rate)} orders/s: end-to-end p50/p99 ${cell(latencyPair(pl?.e2eMs))} ms (least pipeline ${cell(latencyPair(ll?.e2eMs))}) · CPU µs/order, all processes ${cell(pl?.cpuUsPerOrder?.total)} (least ${cell(ll?.cpuUsPerOrder?.total)})`,
    );
    for (const g of p.goals ?? []) {
      text(
        `${g.pass === undefined ? '–' : g.pass ? '✓' : '✗'} ${g.goal} ${cell(g.value)} (${cell(range(g.range))}), goal ${g.op} ${g.bound}`,
        g.pass === false ? '#c92a2a' : '#2b8a3e',
      );
    }
  }
  if (prices.length > 0) {
    y += 22;
    parts.push(
      `<text x="12" y="${y}" font-size="13" font-weight="bold">${esc('every guarantee priced (cost in % of the rate without it, goal <= 10 %)')}</text>`,
    );
    for (const pr of prices) {
      const pass = overallPass(pr);
      text(
        `${pr.guarantee}: gateway ${pr.gateway === false ? 'not covered' : `${pct(pr.gatewayCostPct)} % (${cell(range(pr.gatewayCostRange, 1))})`} · pipeline ${pct(pr.pipelineCostPct)} % (${cell(range(pr.pipelineCostRange, 1))}) · by CPU per order ${pct(pr.gatewayCpuCostPct)} %, ${pct(pr.pipelineCpuCostPct)} %`,
        pass === false ? '#c92a2a' : '#2b8a3e',
      );
    }
  }
  y += 16;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
