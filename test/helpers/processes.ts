import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort as localFreePort } from '../../scripts/local-servers.mjs';
import { waitFor } from '../../scripts/poll.mjs';

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

/** A free port on 127.0.0.1 outside the ephemeral range, reserved: never handed out twice (see scripts/local-servers.mjs). */
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
export { waitFor };

/** Waits until GET url/readyz answers 200. */
export function waitReady(baseUrl: string, timeoutMs = 30_000): Promise<true> {
  return waitFor(`${baseUrl}/readyz`, async () => ((await fetch(`${baseUrl}/readyz`)).status === 200 ? true : undefined), timeoutMs, 200);
}
