// Types of report.mjs, generated from its JSDoc so the unit test gets them without allowJs.
// Regenerate after changing the JSDoc:
//   npx tsc --allowJs --declaration --emitDeclarationOnly --module nodenext --target es2022 --types node --skipLibCheck --outDir scripts/bench scripts/bench/report.mjs
/**
 * The q-th percentile (0..100) of `values` by nearest rank; undefined for no values.
 * @param {number[]} values
 * @param {number} q
 * @returns {number | undefined}
 */
export function percentile(values: number[], q: number): number | undefined;
/**
 * count, min, p50, p90, p99, max of `values`, rounded to 0.1.
 * @param {number[]} values
 */
export function summarize(values: number[]): {
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
};
/**
 * a / b rounded to 0.01, or undefined when either is missing or b is 0.
 * @param {number | undefined} a
 * @param {number | undefined} b
 */
export function ratio(a: number | undefined, b: number | undefined): number;
/**
 * Interleaved rounds of the three saturation runs reduced to what is reported: within each round
 * the ratios between the gateways (runs seconds apart, so slow drifts of the machine cancel); each
 * ratio's median (nearest rank) and range over the rounds; and the round whose gateway / least
 * gateway ratio is the median, whose runs stand for the rates.
 * @template {{ leastGateway?: { rate?: number }, leastGatewayIdempotent?: { rate?: number }, gateway?: { rate?: number } }} R
 * @param {R[]} rounds
 */
export function medianRound<
  R extends {
    leastGateway?: {
      rate?: number;
    };
    leastGatewayIdempotent?: {
      rate?: number;
    };
    gateway?: {
      rate?: number;
    };
  },
>(
  rounds: R[],
): {
  median: R;
  ratios: Record<string, number>;
  ranges: Record<string, [number, number]>;
  rounds: {
    gatewayToLeastGateway: number;
    leastIdempotentToLeastGateway: number;
    gatewayToLeastIdempotent: number;
    leastGateway: number;
    leastGatewayIdempotent: number;
    gateway: number;
  }[];
};
/**
 * A plain-text table: first row is the header.
 * @param {unknown[][]} rows
 */
export function formatTable(rows: unknown[][]): string;
/**
 * The rows of the summary table, one per setup (single node, cluster).
 * @param {Record<string, object>} phases  by setup name
 */
export function tableRows(phases: Record<string, object>): unknown[][];
/**
 * A self-contained SVG: per setup, horizontal bars of the throughput figures, then the ratios and
 * latencies as text.
 * @param {{ title: string, subtitle: string, phases: Record<string, object> }} input
 */
export function chartSvg({ title, subtitle, phases }: { title: string; subtitle: string; phases: Record<string, object> }): string;
