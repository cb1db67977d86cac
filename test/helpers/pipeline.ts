import { SERVICES, freePort, startService, waitFor, type Service, type ServiceProcess } from './processes.js';

// The four real, built services as child processes on free ports, for fault tests that kill and
// restart them. Each service can be killed and started again on the same port and settings.

export const PORT_VARIABLES: Record<Service, string> = {
  'api-gateway': 'GATEWAY_PORT',
  'order-processor': 'PROCESSOR_PORT',
  notifier: 'NOTIFIER_PORT',
  dashboard: 'DASHBOARD_PORT',
};

export interface Readiness {
  service: Service;
  status: number;
  down: string[];
}

export interface Pipeline {
  /** The environment every service was started with (ports included). */
  env: Record<string, string>;
  /** http://127.0.0.1:<port> of each service. */
  base: Record<Service, string>;
  /** The running process of each service (replaced on start). */
  proc(name: Service): ServiceProcess;
  /** Signals the service (SIGKILL by default) and waits for it to exit. */
  kill(name: Service, signal?: NodeJS.Signals): Promise<number | null>;
  /** Starts the service again with the same settings (does not wait for readiness). */
  start(name: Service): ServiceProcess;
  readiness(): Promise<Readiness[]>;
  /** Waits until every running service answers /readyz with 200. */
  allReady(timeoutMs?: number): Promise<void>;
  /** Every process's output so far, earlier incarnations included, for a failing test's log. */
  output(): string;
  /** SIGTERM to every service; resolves with their exit codes. */
  stop(): Promise<Record<string, number | null>>;
}

export interface PipelineOptions {
  redisUrl: string;
  rabbitmqUrls: readonly string[];
  /** Extra environment for every service (e.g. NOTIFY_WEBHOOK_URL, PUBLISH_TIMEOUT_MS). */
  env?: Record<string, string>;
  services?: readonly Service[];
}

export async function startPipeline(opts: PipelineOptions): Promise<Pipeline> {
  const services = opts.services ?? SERVICES;
  const env: Record<string, string> = { REDIS_URL: opts.redisUrl, RABBITMQ_URLS: opts.rabbitmqUrls.join(','), ...opts.env };
  const base = {} as Record<Service, string>;
  for (const s of SERVICES) {
    const port = await freePort();
    env[PORT_VARIABLES[s]] = String(port);
    base[s] = `http://127.0.0.1:${port}`;
  }
  const procs = new Map<Service, ServiceProcess>();
  const earlier: string[] = [];
  const start = (name: Service) => {
    const old = procs.get(name);
    if (old) earlier.push(`--- ${name} (earlier run)\n${old.output()}`);
    const p = startService(name, env);
    procs.set(name, p);
    return p;
  };
  for (const s of services) start(s);

  const readiness = () =>
    Promise.all(
      [...procs.keys()].map(async (service): Promise<Readiness> => {
        try {
          const res = await fetch(`${base[service]}/readyz`, { signal: AbortSignal.timeout(2000) });
          const body = (await res.json()) as { down?: string[] };
          return { service, status: res.status, down: body.down ?? [] };
        } catch {
          return { service, status: 0, down: ['process'] };
        }
      }),
    );

  const pipeline: Pipeline = {
    env,
    base,
    proc: (name) => {
      const p = procs.get(name);
      if (!p) throw new Error(`${name} was not started`);
      return p;
    },
    kill: (name, signal = 'SIGKILL') => pipeline.proc(name).stop(signal),
    start,
    readiness,
    async allReady(timeoutMs = 60_000) {
      await waitFor(
        'every service ready',
        async () => ((await readiness()).every((r) => r.status === 200) ? true : undefined),
        timeoutMs,
        200,
      );
    },
    output: () => [...earlier, ...[...procs].map(([name, p]) => `--- ${name}\n${p.output()}`)].join('\n'),
    async stop() {
      const codes = await Promise.all([...procs].map(async ([name, p]) => [name, await p.stop()] as const));
      return Object.fromEntries(codes);
    },
  };
  try {
    await pipeline.allReady();
  } catch (err) {
    console.error(pipeline.output());
    await pipeline.stop();
    throw err;
  }
  return pipeline;
}
