#!/usr/bin/env node
// Lists the functions with the most self time in a V8 .cpuprofile (from `node --cpu-prof`, or a
// bench run with BENCH_CPU_PROF=<folder>): node scripts/bench/top-profile.mjs <file> [count]

import { readFileSync } from 'node:fs';
import path from 'node:path';

const [file, countArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: top-profile.mjs <file.cpuprofile> [count]\n');
  process.exit(1);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
/** @type {Map<number, any>} */
const nodes = new Map(profile.nodes.map((/** @type {any} */ n) => [n.id, n]));
/** @type {Map<number, number>} */
const hits = new Map();
const deltas = profile.timeDeltas ?? [];
profile.samples.forEach((/** @type {number} */ id, /** @type {number} */ i) => hits.set(id, (hits.get(id) ?? 0) + (deltas[i] ?? 0)));
const total = [...hits.values()].reduce((a, b) => a + b, 0) || 1;
/** @type {Map<string, number>} */
const byFunction = new Map();
/** @type {Map<string, number>} */
const byPackage = new Map();
for (const [id, us] of hits) {
  const cf = nodes.get(id)?.callFrame ?? {};
  const where = cf.url
    ? `${cf.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/([^/]+\/(src|dist)\/)/, '$1')}:${cf.lineNumber + 1}`
    : '';
  const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  const pkg = !cf.url
    ? cf.functionName || '(native)'
    : cf.url.includes('node_modules/')
      ? cf.url.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1')
      : cf.url.startsWith('node:')
        ? 'node:' + cf.url.slice(5).split('/')[0]
        : 'project';
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
}
const pct = (/** @type {number} */ us) => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
const count = Number(countArg ?? 25);
process.stdout.write(`${path.basename(file)}: ${(total / 1e6).toFixed(1)} s sampled\n\nself time by function:\n`);
for (const [k, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, count)) process.stdout.write(`${pct(us)}  ${k}\n`);
process.stdout.write('\nself time by package:\n');
for (const [k, us] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 15)) process.stdout.write(`${pct(us)}  ${k}\n`);
