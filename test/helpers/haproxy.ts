import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from './processes.js';

// A real HAProxy (Debian's `haproxy`) in front of gateway instances, as a test starts it: on a
// free port, health-checking each backend's /readyz, in the foreground so the test owns it.

export const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));

export interface Haproxy {
  /** http://127.0.0.1:<port> */
  url: string;
  /** The backends' states as HAProxy sees them ("UP", "DOWN", ...), from its stats socket. */
  states(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

/** HAProxy's own 503 (no gateway ready), shaped like the gateway's `service-unavailable` problem. */
export const NO_GATEWAY_PROBLEM = JSON.stringify({
  type: '/problems/service-unavailable',
  title: 'Service Unavailable',
  status: 503,
  detail: 'no api-gateway instance is ready',
});

/**
 * The configuration: round robin over `backends`, each checked with GET /readyz every 500 ms (two
 * failures take it out, two passes bring it back). A request whose connection fails or that gets
 * no answer is sent again to another instance: safe for POST /orders, whose retries are
 * idempotent by order id, and needed for the requests in flight when an instance dies.
 */
export function haproxyConfig(opts: { port: number; statsSocket: string; backends: readonly { name: string; port: number }[] }): string {
  return [
    'global',
    `  stats socket ${opts.statsSocket} mode 600 level admin`,
    'defaults',
    '  mode http',
    '  timeout connect 1s',
    '  timeout client 30s',
    '  timeout server 15s',
    '  retries 3',
    '  option redispatch',
    '  retry-on conn-failure empty-response',
    // A retried request needs its body: buffer it before choosing a server.
    '  option http-buffer-request',
    // No gateway ready (all dead, or all failing over to another broker node at once): answer as a
    // gateway would, a 503 problem with Retry-After, so that clients back off and retry the same id.
    `  http-error status 503 content-type application/problem+json string '${NO_GATEWAY_PROBLEM}' hdr Retry-After 1`,
    'frontend gateway',
    `  bind 127.0.0.1:${opts.port}`,
    '  default_backend gateways',
    'backend gateways',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    '  default-server inter 500 fall 2 rise 2',
    ...opts.backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} check`),
    '',
  ].join('\n');
}

export async function startHaproxy(backends: readonly { name: string; port: number }[]): Promise<Haproxy> {
  if (!HAPROXY) throw new Error('haproxy is not installed');
  const dir = await mkdtemp(path.join(tmpdir(), 'haproxy-'));
  const port = await freePort();
  const statsSocket = path.join(dir, 'stats.sock');
  const cfg = path.join(dir, 'haproxy.cfg');
  await writeFile(cfg, haproxyConfig({ port, statsSocket, backends }));
  const check = spawnSync(HAPROXY, ['-c', '-f', cfg], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy rejects its configuration: ${check.stdout}${check.stderr}`);
  // -db: foreground, no daemon; the test's process handle is HAProxy itself.
  const proc: ChildProcess = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;

  const states = async (): Promise<Record<string, string>> => {
    const { createConnection } = await import('node:net');
    const csv = await new Promise<string>((resolve, reject) => {
      let data = '';
      const sock = createConnection(statsSocket, () => sock.write('show stat\n'));
      sock.on('data', (d) => (data += d.toString()));
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
    });
    const rows = csv.split('\n').filter((l) => l.startsWith('gateways,'));
    return Object.fromEntries(rows.map((l) => l.split(',')).map((f) => [f[1] ?? '?', f[17] ?? '?']));
  };

  try {
    await waitFor(
      'haproxy to answer',
      async () => ((await fetch(`${url}/healthz`).catch(() => undefined))?.status === 200 ? true : undefined),
      15_000,
      200,
    );
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${out}`);
  }
  return {
    url,
    states,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
