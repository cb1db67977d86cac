// The benchmark's pure parts (scripts/bench/report.mjs): the figures it prints and charts must be
// computed right even though the benchmark itself is not part of the test run.
import { describe, expect, it } from 'vitest';
import {
  chartSvg,
  costPct,
  formatTable,
  goalRows,
  goals,
  guaranteeCost,
  medianRound,
  percentile,
  pipelineRatios,
  priceRows,
  ratio,
  summarize,
  tableRows,
} from '../scripts/bench/report.mjs';

describe('benchmark report', () => {
  it('takes percentiles by nearest rank', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([], 50)).toBeUndefined();
    expect(summarize([3, 1, 2])).toEqual({ count: 3, min: 1, p50: 2, p90: 3, p99: 3, max: 3 });
  });

  it('gives ratios only when both figures exist', () => {
    expect(ratio(800, 1000)).toBe(0.8);
    expect(ratio(1, 3)).toBe(0.33);
    expect(ratio(5, 0)).toBeUndefined();
    expect(ratio(undefined, 5)).toBeUndefined();
  });

  it('prints one column per setup and charts every setup', () => {
    const phases = {
      'single node': {
        gateway: { rate: 800, p50: 5, p99: 20 },
        leastGateway: { rate: 1000 },
        brokerCeiling: { rate: 4000 },
        pipeline: { sustainedRate: 400 },
        ratios: { gatewayToLeastIdempotent: 0.8 },
      },
      '3-node cluster': { gateway: { rate: 500 } },
    };
    const table = formatTable(tableRows(phases));
    expect(table.split('\n')[0]).toMatch(/figure\s+single node\s+3-node cluster/);
    expect(table).toMatch(/gateway accepted orders\/s\s+800\s+500/);
    expect(table).toMatch(/gateway \/ least gateway with idempotency\s+0\.80\s+-/);
    const svg = chartSvg({ title: 't <1>', subtitle: 's', phases });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('3-node cluster');
    expect(svg).toContain('t &lt;1&gt;');
  });

  it('reduces interleaved rounds to per-round ratios, their medians and ranges, and the median round', () => {
    const round = (least: number, idem: number, gateway: number) => ({
      leastGateway: { rate: least },
      leastGatewayIdempotent: { rate: idem },
      gateway: { rate: gateway },
    });
    // The machine slows down over the rounds: rates fall, ratios within a round hold.
    const rounds = [round(1000, 900, 450), round(600, 500, 240), round(800, 700, 440)];
    const r = medianRound(rounds);
    expect(r.rounds.map((x) => x.gatewayToLeastGateway)).toEqual([0.45, 0.4, 0.55]);
    expect(r.ratios).toEqual({ gatewayToLeastGateway: 0.45, leastIdempotentToLeastGateway: 0.88, gatewayToLeastIdempotent: 0.5 });
    expect(r.ranges.gatewayToLeastGateway).toEqual([0.4, 0.55]);
    // The median round is the one of the goal's ratio, gateway / least gateway with idempotency (0.5).
    expect(r.median).toBe(rounds[0]);
    // An even count takes the lower middle; one round is its own median.
    expect(medianRound(rounds.slice(0, 2)).median).toBe(rounds[1]);
    expect(medianRound(rounds.slice(2)).ratios.gatewayToLeastGateway).toBe(0.55);
    expect(() => medianRound([])).toThrow(/at least one round/);
    const table = formatTable(tableRows({ 'single node': { ...r.median, rounds: r.rounds, ratios: r.ratios, ratioRanges: r.ranges } }));
    expect(table).toMatch(/saturation rounds\s+3/);
    expect(table).toMatch(/gateway \/ least gateway\s+0\.45 \(0\.40 to 0\.55\)/);
  });

  it('prices a guarantee within each round, with its median and range against the 10 % goal', () => {
    // The machine slows down over the rounds: rates fall, the costs within a round hold.
    const run = (gateway: number, drainRate?: number) => ({ gateway: { rate: gateway }, pipeline: { drainRate } });
    const rounds = [
      { on: run(900, 600), off: run(1000, 800) },
      { on: run(400, 300), off: run(500, 500) },
      { on: run(950, 700), off: run(1000, 1000) },
    ];
    const p = guaranteeCost(rounds, { guarantee: 'WAIT', with: 'on', without: 'off' });
    expect(p.rounds.map((r) => r.gatewayCostPct)).toEqual([10, 20, 5]);
    expect(p.rounds.map((r) => r.pipelineCostPct)).toEqual([25, 40, 30]);
    expect(p).toMatchObject({ gatewayCostPct: 10, gatewayCostRange: [5, 20], gatewayPass: true });
    expect(p).toMatchObject({ pipelineCostPct: 30, pipelineCostRange: [25, 40], pipelinePass: false });
    // A run with no figure (e.g. a failed drain) leaves its round out of that cost only.
    const partial = guaranteeCost([{ on: run(500), off: run(1000, 800) }, rounds[1] ?? {}], { guarantee: 'x', with: 'on', without: 'off' });
    expect(partial).toMatchObject({ gatewayCostPct: 20, pipelineCostPct: 40, pipelineCostRange: [40, 40] });
    expect(costPct(1100, 1000)).toBe(-10);
    // By CPU per order: 250 µs with it against 200 without allows a fifth less rate.
    expect(costPct(250, 200, true)).toBe(20);
    const cpu = (gateway: number, pipeline: number) => ({
      gateway: { rate: 1, cpuUsPerOrder: { total: gateway } },
      pipeline: { drainRate: 1, cpuUsPerOrder: { total: pipeline } },
    });
    const byCpu = guaranteeCost([{ on: cpu(250, 500), off: cpu(200, 400) }], { guarantee: 'x', with: 'on', without: 'off' });
    expect(byCpu).toMatchObject({ gatewayCostPct: 0, gatewayCpuCostPct: 20, pipelineCpuCostPct: 20, pipelineCpuCostRange: [20, 20] });
    // A switch that leaves the gateway as it is prices the pipeline only.
    const pipelineOnly = guaranteeCost(rounds, { guarantee: 'history', with: 'on', without: 'off', gateway: false });
    expect(pipelineOnly).toMatchObject({ gatewayCostPct: undefined, gatewayPass: undefined, pipelineCostPct: 30, pipelinePass: false });
    expect(chartSvg({ title: 't', subtitle: 's', phases: {}, prices: [pipelineOnly] })).toContain(
      'history: gateway not covered · pipeline 30.0 %',
    );
    expect(formatTable(priceRows([pipelineOnly]))).toMatch(/history \(on \/ off\)\s+-\s+-\s+30\.0\s+25\.0 to 40\.0\s+<= 10 %\s+FAIL/);
    expect(costPct(5, undefined)).toBeUndefined();
    expect(() => guaranteeCost([], { guarantee: 'x', with: 'on', without: 'off' })).toThrow(/at least one round/);
    const table = formatTable(priceRows([p]));
    expect(table).toMatch(/WAIT \(on \/ off\)\s+10\.0\s+5\.0 to 20\.0\s+30\.0\s+25\.0 to 40\.0\s+<= 10 %\s+FAIL\s+-\s+-/);
    const svg = chartSvg({ title: 't', subtitle: 's', phases: {}, prices: [p] });
    expect(svg).toContain('WAIT: gateway 10.0 % (5.0 to 20.0) · pipeline 30.0 % (25.0 to 40.0)');
    expect(chartSvg({ title: 't', subtitle: 's', phases: {} })).not.toContain('guarantee');
  });

  it('holds the pipeline to the least pipeline: sustained with the bisections’ range, p99 and CPU per round', () => {
    const step = (p50: number, p99: number, total: number) => ({ e2eMs: { p50, p99 }, cpuUsPerOrder: { total } });
    const pr = pipelineRatios(
      { pipeline: { sustainedRate: 1000, notSustainedRate: 1100 }, least: { sustainedRate: 2000, notSustainedRate: 2200 } },
      [
        { pipeline: step(20, 60, 900), least: step(10, 30, 400) },
        { pipeline: step(20, 40, 800), least: step(10, 40, 400) },
        { pipeline: step(20, 90, 1000), least: step(10, 50, 400) },
      ],
    );
    expect(pr.sustainedToLeast).toEqual({ median: 0.5, range: [0.45, 0.55] });
    expect(pr.e2eP99ToLeast).toEqual({ median: 1.8, range: [1, 2] });
    expect(pr.cpuPerOrderToLeast).toEqual({ median: 2.25, range: [2, 2.5] });
    const g = goals({ ratios: { gatewayToLeastIdempotent: 0.85 }, ratioRanges: { gatewayToLeastIdempotent: [0.8, 0.9] } }, pr);
    expect(g.map((x) => [x.value, x.op, x.bound, x.pass])).toEqual([
      [0.85, '>=', 0.8, true],
      [0.5, '>=', 0.8, false],
      [1.8, '<=', 1.5, false],
      [2.25, '<=', 1.5, false],
    ]);
    const table = formatTable(goalRows(g));
    expect(table).toMatch(/gateway \/ least gateway with idempotency\s+0\.85\s+0\.80 to 0\.90\s+>= 0\.8\s+pass/);
    expect(table).toMatch(/pipeline CPU per order \/ least pipeline\s+2\.25\s+2\.00 to 2\.50\s+<= 1\.5\s+FAIL/);
    // A missing figure gives no verdict rather than a failure.
    const none = pipelineRatios(
      { pipeline: { sustainedRate: 0, notSustainedRate: 10 }, least: { sustainedRate: 0, notSustainedRate: 10 } },
      [],
    );
    expect(goals({}, none).map((x) => x.pass)).toEqual([undefined, undefined, undefined, undefined]);
  });
});
