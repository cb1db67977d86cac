// Problem types are URLs that resolve: every problem the code can emit has a page at its type,
// served by every service (the consumers' ops server here; the gateway and dashboard in theirs).
import { readFileSync, readdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBLEM_TYPES, closeServer, createLogger, createMetrics, slug, startOpsServer } from '@order-pipeline/shared';
import { expectDocumented } from '../../test/helpers/openapi.js';

const SOURCE_DIRS = ['shared', 'api-gateway', 'order-processor', 'notifier', 'dashboard'].map(
  (d) => new URL(`../../${d}/src/`, import.meta.url),
);

/** The slug of every `new HttpProblem(status, 'Title', ...)` in the services' sources. */
function emittedSlugs(): Set<string> {
  const slugs = new Set<string>();
  for (const dir of SOURCE_DIRS) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(new URL(file, dir), 'utf8');
      const calls = text.match(/new HttpProblem\(/g)?.length ?? 0;
      const literal = [...text.matchAll(/new HttpProblem\(\s*\d{3},\s*'([^']+)'/g)].map((m) => slug(m[1] as string));
      // A title that is not a literal could emit a type nobody wrote a page for.
      expect(literal, `${file}: every HttpProblem has a literal title`).toHaveLength(calls);
      for (const s of literal) slugs.add(s);
    }
  }
  return slugs;
}

let server: Server;
let base: string;

beforeAll(async () => {
  const ops = await startOpsServer({
    log: createLogger('ops', 'silent'),
    metrics: createMetrics('ops'),
    checks: [],
    port: 0,
    host: '127.0.0.1',
  });
  server = ops.server;
  base = ops.address;
});

afterAll(async () => {
  if (server) await closeServer(server);
});

describe('problem types', () => {
  it('are documented for exactly the problems the code emits', () => {
    const emitted = emittedSlugs();
    expect(emitted.size).toBeGreaterThanOrEqual(14);
    expect([...PROBLEM_TYPES.keys()].sort()).toEqual([...emitted].sort());
  });

  it('resolve: each is a page on the ops server, saying what it means and what to do', async () => {
    for (const s of emittedSlugs()) {
      const res = await fetch(`${base}/problems/${s}`);
      const text = await res.text();
      expectDocumented({ method: 'GET', path: `/problems/${s}`, status: res.status, headers: res.headers, body: text });
      expect(res.status, s).toBe(200);
      expect(res.headers.get('content-type'), s).toBe('text/html; charset=utf-8');
      expect(text, s).toContain(`<h1>${PROBLEM_TYPES.get(s)?.title}</h1>`);
      expect(text, s).toContain('What to do:');
    }
  });

  it('an unknown slug is a 404 problem whose own type resolves', async () => {
    const res = await fetch(`${base}/problems/no-such-problem`);
    const text = await res.text();
    expectDocumented({ method: 'GET', path: '/problems/no-such-problem', status: res.status, headers: res.headers, body: text });
    const body = JSON.parse(text) as { type: string };
    expect(res.status).toBe(404);
    expect(body.type).toBe('/problems/not-found');
    expect((await fetch(new URL(body.type, res.url))).status).toBe(200);
  });

  it('the ops server answers an unknown route with a documented 404 problem', async () => {
    const res = await fetch(`${base}/nope`);
    expectDocumented({ method: 'GET', path: '/nope', status: res.status, headers: res.headers, body: await res.text() });
  });
});
