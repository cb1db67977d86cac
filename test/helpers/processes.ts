import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort as localFreePort } from '../../scripts/local-servers.mjs';

// Starts the real, built services as child processes, as `npm start` does.

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SERVICES = ['api-gateway', 'order-processor', 'notifier', 'dashboard'] as const;
export type Service = (typeof SERVICES)[number];

export interface ServiceProcess {
  name: Service;
  proc: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A free port on 127.0.0.1 outside the ephemeral range (see scripts/local-servers.mjs). */
export const freePort: () => Promise<number> = localFreePort;

export function startService(name: Service, env: Record<string, string>): ServiceProcess {
  const proc = spawn(process.execPath, [`${name}/dist/main.js`], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    name,
    proc,
    output: () => out,
    exited,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** Waits until GET url/readyz answers 200. */
export function waitReady(baseUrl: string, timeoutMs = 30_000): Promise<true> {
  return waitFor(`${baseUrl}/readyz`, async () => ((await fetch(`${baseUrl}/readyz`)).status === 200 ? true : undefined), timeoutMs, 200);
}
