import net from 'node:net';
import { redactUrl } from '@order-pipeline/shared';

// Whether each broker node of RABBITMQ_URLS answers, for the live page. The dashboard's own
// connection only says something about the one node it is on; the others are probed here.

export interface NodeState {
  /** host:port of the node, credentials removed. */
  node: string;
  up: boolean;
  /** Time of the last probe (ISO), absent before the first one. */
  checkedAt?: string;
  /** Why the last probe failed. */
  error?: string;
}

/**
 * A TCP connect to the node's AMQP port, closed at once. A node whose broker app is stopped closes
 * its listener, so this tells a serving node from a stopped or dead one. Deliberately not the AMQP
 * protocol header: RabbitMQ logs a warning for every connection dropped mid-handshake, and a bare
 * connect that sends nothing is not logged. Resolves, never rejects.
 */
export function probeNode(url: string, timeoutMs: number): Promise<{ up: boolean; error?: string }> {
  return new Promise((resolve) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      resolve({ up: false, error: 'invalid url' });
      return;
    }
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(u.port) || (u.protocol === 'amqps:' ? 5671 : 5672);
    const socket = net.connect({ host, port });
    let done = false;
    const finish = (result: { up: boolean; error?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ up: false, error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    socket.once('connect', () => finish({ up: true }));
    socket.once('error', (err) => finish({ up: false, error: err.message }));
  });
}

/**
 * Probes every node every `everyMs` while started; `states()` gives the latest result per node,
 * in the order of `urls`. Probes run only between start() and stop() (while someone watches).
 */
export function nodeProber(urls: readonly string[], opts: { everyMs: number; timeoutMs: number }) {
  const states: NodeState[] = urls.map((url) => ({ node: redactUrl(url), up: false }));
  let timer: NodeJS.Timeout | undefined;
  let running = false;

  async function probeAll(): Promise<void> {
    const results = await Promise.all(urls.map((url) => probeNode(url, opts.timeoutMs)));
    const at = new Date().toISOString();
    results.forEach((r, i) => {
      states[i] = { node: (states[i] as NodeState).node, up: r.up, checkedAt: at, ...(r.error ? { error: r.error } : {}) };
    });
  }

  async function loop(): Promise<void> {
    await probeAll();
    // Scheduled after the probes end, so a slow network never piles them up.
    if (running) timer = setTimeout(() => void loop(), opts.everyMs);
  }

  return {
    start(): void {
      if (running) return;
      running = true;
      void loop();
    },
    stop(): void {
      running = false;
      clearTimeout(timer);
    },
    states: (): NodeState[] => states.map((s) => ({ ...s })),
  };
}

export type NodeProber = ReturnType<typeof nodeProber>;
