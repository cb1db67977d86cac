import net from 'node:net';
import tls from 'node:tls';
import { redactUrl } from '@order-pipeline/shared';

// Whether each broker node of RABBITMQ_URLS answers, for the live page. The dashboard's own
// connection only says something about the one node it is on; the others are probed here.

/** AMQP 0-9-1 protocol header: a live broker answers it with a Connection.Start frame. */
const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);

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
 * Sends the AMQP protocol header and waits for the broker's first frame (type 1, a method), then
 * hangs up. Cheaper than a full handshake: no channel, no credentials sent. Resolves, never rejects.
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
    const secure = u.protocol === 'amqps:';
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(u.port) || (secure ? 5671 : 5672);
    const socket: net.Socket = secure ? tls.connect({ host, port, servername: host }) : net.connect({ host, port });
    let done = false;
    const finish = (result: { up: boolean; error?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ up: false, error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(AMQP_HEADER));
    // A broker that refuses the protocol version answers with its own header ("AMQP..."), still alive.
    socket.once('data', (chunk: Buffer) => finish(chunk[0] === 1 || chunk[0] === 0x41 ? { up: true } : { up: false, error: 'not an AMQP answer' }));
    socket.once('error', (err) => finish({ up: false, error: err.message }));
    socket.once('close', () => finish({ up: false, error: 'connection closed without an answer' }));
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
