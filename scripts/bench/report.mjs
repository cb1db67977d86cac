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
 * gateway ratio is the median, whose runs stand for the rates.
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
    .sort((a, b) => (perRound[a]?.gatewayToLeastGateway ?? 0) - (perRound[b]?.gatewayToLeastGateway ?? 0));
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
function medianAndRange(values) {
  const defined = /** @type {number[]} */ (values.filter((v) => v !== undefined));
  return {
    median: percentile(defined, 50),
    range: defined.length > 0 ? /** @type {[number, number]} */ ([Math.min(...defined), Math.max(...defined)]) : undefined,
  };
}

/**
 * The WAIT phase's interleaved rounds (gateway and pipeline against a Sentinel group, with
 * REDIS_MIN_REPLICAS=1 and =0) reduced to what is reported: within each round the ratios WAIT on /
 * WAIT off (runs seconds apart), each ratio's median and range over the rounds, and each rate's
 * median.
 * @param {{ gatewayOn?: number, gatewayOff?: number, pipelineOn?: number, pipelineOff?: number }[]} rounds  rates per round
 */
export function waitRounds(rounds) {
  if (rounds.length === 0) throw new Error('waitRounds needs at least one round');
  const perRound = rounds.map((r) => ({
    ...r,
    gatewayOnToOff: ratio(r.gatewayOn, r.gatewayOff),
    pipelineOnToOff: ratio(r.pipelineOn, r.pipelineOff),
  }));
  /** @type {Record<string, number | undefined>} */
  const ratios = {};
  /** @type {Record<string, [number, number] | undefined>} */
  const ranges = {};
  for (const key of /** @type {const} */ (['gatewayOnToOff', 'pipelineOnToOff'])) {
    const m = medianAndRange(perRound.map((p) => p[key]));
    ratios[key] = m.median;
    ranges[key] = m.range;
  }
  /** @type {Record<string, number | undefined>} */
  const rates = {};
  for (const key of /** @type {const} */ (['gatewayOn', 'gatewayOff', 'pipelineOn', 'pipelineOff'])) {
    rates[key] = medianAndRange(perRound.map((p) => p[key])).median;
  }
  return { rounds: perRound, ratios, ranges, rates };
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
 * One setup's results as bench.mjs records them; any figure may be missing (a part skipped or failed).
 * @typedef {{
 *   brokerCeiling?: { rate?: number },
 *   redisSetNx?: { rate?: number },
 *   leastGateway?: Run,
 *   leastGatewayIdempotent?: Run,
 *   gateway?: Run,
 *   pipeline?: { sustainedRate?: number, latency?: { e2eMs?: { p50?: number, p99?: number } } },
 *   rounds?: unknown[],
 *   ratios?: Record<string, number | undefined>,
 *   ratioRanges?: Record<string, [number, number] | undefined>,
 *   wait?: WaitPhase,
 * }} Phase
 */
/**
 * The WAIT phase as bench.mjs records it (on the single-node setup): `waitRounds` of its rounds.
 * @typedef {{
 *   rounds?: unknown[],
 *   rates?: Record<string, number | undefined>,
 *   ratios?: Record<string, number | undefined>,
 *   ratioRanges?: Record<string, [number, number] | undefined>,
 * }} WaitPhase
 */

/**
 * The rows of the summary table, one per setup (single node, cluster).
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
  add('least gateway p50/p99 ms', (p) => latencyPair(p.leastGateway));
  add('least gateway with idempotency req/s', (p) => p.leastGatewayIdempotent?.rate);
  add('gateway accepted orders/s', (p) => p.gateway?.rate);
  add('gateway p50/p99 ms', (p) => latencyPair(p.gateway));
  add('gateway RSS under load MiB', (p) => p.gateway?.rssMaxMiB);
  // CPU per request of the process itself: steadier than rates when other work shares the machine.
  add('least gateway CPU µs/request', (p) => p.leastGateway?.cpuUsPerRequest);
  add('least gateway with idempotency CPU µs/request', (p) => p.leastGatewayIdempotent?.cpuUsPerRequest);
  add('gateway CPU µs/request', (p) => p.gateway?.cpuUsPerRequest);
  add('pipeline sustained orders/s', (p) => p.pipeline?.sustainedRate);
  add('end-to-end p50/p99 ms at half', (p) => latencyPair(p.pipeline?.latency?.e2eMs));
  add('saturation rounds', (p) => p.rounds?.length);
  add('gateway / least gateway', (p) => p.ratios?.gatewayToLeastGateway);
  add('  range over the rounds', (p) => range(p.ratioRanges?.gatewayToLeastGateway));
  add('least with idempotency / least gateway', (p) => p.ratios?.leastIdempotentToLeastGateway);
  add('gateway / least with idempotency', (p) => p.ratios?.gatewayToLeastIdempotent);
  add('gateway / broker ceiling', (p) => p.ratios?.gatewayToBrokerCeiling);
  add('pipeline / gateway', (p) => p.ratios?.pipelineToGateway);
  // Against a Sentinel group (primary, replicas, Sentinels), REDIS_MIN_REPLICAS=1 against =0.
  add('WAIT rounds (Sentinel group)', (p) => p.wait?.rounds?.length);
  add('gateway orders/s, WAIT on / off', (p) => ratePair(p.wait?.rates?.gatewayOn, p.wait?.rates?.gatewayOff));
  add('gateway WAIT on / off', (p) => p.wait?.ratios?.gatewayOnToOff);
  add('  range over the WAIT rounds', (p) => range(p.wait?.ratioRanges?.gatewayOnToOff));
  add('pipeline drain orders/s, WAIT on / off', (p) => ratePair(p.wait?.rates?.pipelineOn, p.wait?.rates?.pipelineOff));
  add('pipeline WAIT on / off', (p) => p.wait?.ratios?.pipelineOnToOff);
  add('  range over the WAIT rounds', (p) => range(p.wait?.ratioRanges?.pipelineOnToOff));
  return rows;
}

/** @param {[number, number] | undefined} r */
function range(r) {
  return r ? `${r[0].toFixed(2)}-${r[1].toFixed(2)}` : undefined;
}

/** @param {number | undefined} a @param {number | undefined} b */
function ratePair(a, b) {
  return a === undefined || b === undefined ? undefined : `${Math.round(a)} / ${Math.round(b)}`;
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
 * A self-contained SVG: per setup, horizontal bars of the throughput figures, then the ratios and
 * latencies as text.
 * @param {{ title: string, subtitle: string, phases: Record<string, Phase> }} input
 */
export function chartSvg({ title, subtitle, phases }) {
  const bars = [
    { key: 'broker ceiling (confirmed publishes/s)', get: (/** @type {Phase} */ p) => p.brokerCeiling?.rate, colour: '#9aa5b1' },
    { key: 'least gateway (req/s)', get: (/** @type {Phase} */ p) => p.leastGateway?.rate, colour: '#c9a227' },
    { key: 'least gateway + idempotency (req/s)', get: (/** @type {Phase} */ p) => p.leastGatewayIdempotent?.rate, colour: '#e0b84c' },
    { key: 'gateway (accepted orders/s)', get: (/** @type {Phase} */ p) => p.gateway?.rate, colour: '#2b7bb9' },
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
    const r = p.ratios ?? {};
    const e2e = p.pipeline?.latency?.e2eMs;
    const gw = p.gateway;
    const lines = [
      `gateway / least gateway ${cell(r.gatewayToLeastGateway)} · gateway / broker ceiling ${cell(r.gatewayToBrokerCeiling)} · pipeline / gateway ${cell(r.pipelineToGateway)}`,
      `least gateway with idempotency / least gateway ${cell(r.leastIdempotentToLeastGateway)} · gateway / least gateway with idempotency ${cell(r.gatewayToLeastIdempotent)}`,
      `gateway p50/p99 ${cell(latencyPair(gw))} ms at saturation · end-to-end p50/p99 ${cell(latencyPair(e2e))} ms at half the sustained rate`,
    ];
    const w = p.wait;
    if (w?.ratios) {
      lines.push(
        `WAIT on / off (Sentinel group, ${w.rounds?.length ?? 0} rounds): gateway ${cell(w.ratios.gatewayOnToOff)} (${cell(range(w.ratioRanges?.gatewayOnToOff))}) · pipeline drain ${cell(w.ratios.pipelineOnToOff)} (${cell(range(w.ratioRanges?.pipelineOnToOff))})`,
      );
    }
    for (const line of lines) {
      y += 16;
      parts.push(`<text x="12" y="${y}" font-size="11" fill="#333">${esc(line)}</text>`);
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
