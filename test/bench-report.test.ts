// The benchmark's pure parts (scripts/bench/report.mjs): the figures it prints and charts must be
// computed right even though the benchmark itself is not part of the test run.
import { describe, expect, it } from 'vitest';
import { chartSvg, formatTable, medianRound, percentile, ratio, summarize, tableRows, waitRounds } from '../scripts/bench/report.mjs';

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
        ratios: { gatewayToLeastGateway: 0.8 },
      },
      '3-node cluster': { gateway: { rate: 500 } },
    };
    const table = formatTable(tableRows(phases));
    expect(table.split('\n')[0]).toMatch(/figure\s+single node\s+3-node cluster/);
    expect(table).toMatch(/gateway accepted orders\/s\s+800\s+500/);
    expect(table).toMatch(/gateway \/ least gateway\s+0\.80\s+-/);
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
    expect(r.median).toBe(rounds[0]);
    // An even count takes the lower middle; one round is its own median.
    expect(medianRound(rounds.slice(0, 2)).median).toBe(rounds[1]);
    expect(medianRound(rounds.slice(2)).ratios.gatewayToLeastGateway).toBe(0.55);
    expect(() => medianRound([])).toThrow(/at least one round/);
    const table = formatTable(tableRows({ 'single node': { ...r.median, rounds: r.rounds, ratios: r.ratios, ratioRanges: r.ranges } }));
    expect(table).toMatch(/saturation rounds\s+3/);
    expect(table).toMatch(/range over the rounds\s+0\.40-0\.55/);
  });

  it('reduces the WAIT rounds to per-round on / off ratios, their medians and ranges, and the median rates', () => {
    // The machine slows down over the rounds: rates fall, the on / off ratios within a round hold.
    const rounds = [
      { gatewayOn: 900, gatewayOff: 1000, pipelineOn: 600, pipelineOff: 800 },
      { gatewayOn: 400, gatewayOff: 500, pipelineOn: 300, pipelineOff: 500 },
      { gatewayOn: 700, gatewayOff: 1000, pipelineOn: 700, pipelineOff: 1000 },
    ];
    const w = waitRounds(rounds);
    expect(w.rounds.map((r) => r.gatewayOnToOff)).toEqual([0.9, 0.8, 0.7]);
    expect(w.rounds.map((r) => r.pipelineOnToOff)).toEqual([0.75, 0.6, 0.7]);
    expect(w.ratios).toEqual({ gatewayOnToOff: 0.8, pipelineOnToOff: 0.7 });
    expect(w.ranges).toEqual({ gatewayOnToOff: [0.7, 0.9], pipelineOnToOff: [0.6, 0.75] });
    expect(w.rates).toEqual({ gatewayOn: 700, gatewayOff: 1000, pipelineOn: 600, pipelineOff: 800 });
    // A run with no figure (e.g. a backlog used up before the window) leaves its round out of that ratio only.
    const partial = waitRounds([{ gatewayOn: 500, gatewayOff: 1000, pipelineOff: 800 }, rounds[1] ?? {}]);
    expect(partial.ratios).toEqual({ gatewayOnToOff: 0.5, pipelineOnToOff: 0.6 });
    expect(partial.ranges.pipelineOnToOff).toEqual([0.6, 0.6]);
    expect(() => waitRounds([])).toThrow(/at least one round/);

    // The rows show in the setup that carries the phase, and '-' in the others.
    const phases = {
      'single node': { gateway: { rate: 800 }, wait: { rounds: w.rounds, rates: w.rates, ratios: w.ratios, ratioRanges: w.ranges } },
      '3-node cluster': { gateway: { rate: 500 } },
    };
    const table = formatTable(tableRows(phases));
    expect(table).toMatch(/WAIT rounds \(Sentinel group\)\s+3\s+-/);
    expect(table).toMatch(/gateway orders\/s, WAIT on \/ off\s+700 \/ 1000\s+-/);
    expect(table).toMatch(/gateway WAIT on \/ off\s+0\.80\s+-\n\s+range over the WAIT rounds\s+0\.70-0\.90\s+-/);
    expect(table).toMatch(/pipeline drain orders\/s, WAIT on \/ off\s+600 \/ 800\s+-/);
    expect(table).toMatch(/pipeline WAIT on \/ off\s+0\.70\s+-\n\s+range over the WAIT rounds\s+0\.60-0\.75\s+-/);
    const svg = chartSvg({ title: 't', subtitle: 's', phases });
    expect(svg).toContain('WAIT on / off (Sentinel group, 3 rounds): gateway 0.80 (0.70-0.90) · pipeline drain 0.70 (0.60-0.75)');
    // Without the phase (BENCH_WAIT=0) the rows stay empty and the chart has no WAIT line.
    expect(formatTable(tableRows({ 'single node': { gateway: { rate: 800 } } }))).toMatch(/gateway WAIT on \/ off\s+-/);
    expect(chartSvg({ title: 't', subtitle: 's', phases: { 'single node': { gateway: { rate: 800 } } } })).not.toContain('WAIT');
  });
});
