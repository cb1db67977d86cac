import { readFileSync } from 'node:fs';
import amqp, { type AmqpConnectionManager } from 'amqp-connection-manager';
import type { Channel } from 'amqplib';
import type { Logger } from '../logger.js';
import { coalesceFrameWrites } from './frame-writes.js';
import type { BrokerObserver } from './types.js';

// One AMQP connection per service over RABBITMQ_URLS: amqp-connection-manager moves to the next
// node when it loses one. This module keeps the connection and what is known about it (the node
// it is on, whether the broker blocks its publishes, whether it is closing) and watches channels
// for closes the manager would not mend.

export interface BrokerConnection {
  readonly manager: AmqpConnectionManager;
  isConnected(): boolean;
  /**
   * True while the broker blocks this connection's publishes (a memory or disk alarm:
   * connection.blocked), until it says unblocked or the connection is replaced.
   */
  isBlocked(): boolean;
  /** The node connected now (credentials removed), or undefined. */
  currentNode(): string | undefined;
  /** True once close() began: nothing reconnects any more. */
  isClosing(): boolean;
  /**
   * Listens to a channel's errors (without a listener amqplib tears the whole connection down)
   * and reconnects when the broker closed the channel while the connection stays up.
   */
  watch(ch: Channel, name: string, closedOnPurpose?: () => boolean): void;
  /** A fresh connection (every channel's setup runs again), unless closing. */
  reconnect(): void;
  /** Marks the connection closing; `closeChannels` runs before the connection itself closes. */
  close(closeChannels: () => Promise<void>): Promise<void>;
}

/**
 * In which order a connection tries the nodes: `random` (each connection its own shuffle of the
 * list, so many instances spread over the cluster and the clients of a lost node spread over the
 * rest) or `listed` (the list's order: every client on the first node that answers).
 */
export type NodeOrder = 'random' | 'listed';

/**
 * The node list in the order one connection walks it. amqp-connection-manager tries its list
 * round robin from the start and continues with the next entry after each lost connection, so the
 * order fixes both the first node and where a failover goes; the whole list is always tried.
 */
export function nodeOrder(urls: readonly string[], order: NodeOrder, random: () => number = Math.random): string[] {
  const list = [...urls];
  if (order === 'listed') return list;
  // Fisher-Yates: every order equally likely.
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j] as string, list[i] as string];
  }
  return list;
}

export interface ConnectionOptions {
  urls: readonly string[];
  /** `random` unless given; see NodeOrder. */
  nodeOrder?: NodeOrder;
  /** Shown in the broker's connection list. */
  name: string;
  log: Logger;
  observer?: BrokerObserver;
  /** RABBITMQ_TLS_CA: a CA file (PEM) trusted for amqps:// nodes. */
  tlsCa?: string;
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    u.username = '';
    return `${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

export function openConnection(opts: ConnectionOptions): BrokerConnection {
  const { log, observer } = opts;
  const manager = amqp.connect(nodeOrder(opts.urls, opts.nodeOrder ?? 'random'), {
    // A dead node is noticed by TCP reset at once, a silent one by missed heartbeats.
    heartbeatIntervalInSeconds: 5,
    reconnectTimeInSeconds: 1,
    connectionOptions: {
      timeout: 3000,
      clientProperties: { connection_name: opts.name },
      // amqps:// nodes: amqplib passes these to tls.connect (server name and certificate checks stay on).
      ...(opts.tlsCa ? { ca: [readFileSync(opts.tlsCa)] } : {}),
    },
  });
  let node: string | undefined;
  let downSince: number | undefined = Date.now();
  let connects = 0;
  let closing = false;
  let warnedUncoalesced = false;
  let blocked = false;

  manager.on('connect', ({ connection: model, url }) => {
    if (!coalesceFrameWrites(model) && !warnedUncoalesced) {
      // Still correct, only a system call per frame: amqplib's internals have changed.
      warnedUncoalesced = true;
      log.warn('cannot coalesce frame writes with this amqplib; every frame is its own write');
    }
    node = redactUrl(typeof url === 'string' ? url : String((url as { url?: string }).url ?? ''));
    log.info({ node, downMs: downSince ? Date.now() - downSince : 0 }, 'broker connected');
    downSince = undefined;
    observer?.connected(node, ++connects === 1);
  });
  manager.on('disconnect', ({ err }) => {
    log.warn({ node, err: err?.message }, 'broker connection lost; moving to the next node');
    node = undefined;
    // A new connection starts unblocked; the broker blocks it again if the alarm still holds.
    blocked = false;
    downSince ??= Date.now();
    observer?.disconnected();
  });
  manager.on('connectFailed', ({ err, url }) => {
    log.debug({ node: redactUrl(String(url)), err: err?.message }, 'broker connect failed');
  });
  manager.on('blocked', ({ reason }) => {
    blocked = true;
    log.warn({ node, reason }, 'broker blocked publishing');
  });
  manager.on('unblocked', () => {
    blocked = false;
    log.info({ node }, 'broker unblocked publishing');
  });

  // Connections a forced reconnect was already asked for (several channels may close at once).
  const reconnecting = new WeakSet<object>();
  // A channel error (404 on a passive check, 406 on a mismatched declaration, an unknown delivery
  // tag) must not go unheard: without a listener amqplib tears the whole connection down. And a
  // channel the broker closed while the connection stays up is not reopened by
  // amqp-connection-manager, so reconnect: every channel's setup runs again and consumers resume.
  // When a node dies, amqplib closes every channel *before* the connection reports its close, so
  // the channel's close alone does not tell the two apart: only a channel whose own connection is
  // still the current one a moment later was closed by the broker. Forcing a reconnect for the
  // others would log a false alarm, and could tear down the fresh connection to the next node.
  const watch = (ch: Channel, name: string, closedOnPurpose: () => boolean = () => false) => {
    const owner = manager.connection;
    ch.on('error', (err: Error) => log.warn({ channel: name, err: err.message }, 'channel error'));
    ch.on('close', () => {
      if (closing || closedOnPurpose()) return;
      setTimeout(() => {
        if (closing || owner === undefined || manager.connection !== owner || reconnecting.has(owner)) return;
        reconnecting.add(owner);
        log.warn({ channel: name }, 'channel closed by the broker; reconnecting');
        manager.reconnect();
      }, 250).unref();
    });
  };

  return {
    manager,
    isConnected: () => manager.isConnected(),
    isBlocked: () => blocked && manager.isConnected(),
    currentNode: () => node,
    isClosing: () => closing,
    watch,
    reconnect: () => {
      if (!closing) manager.reconnect();
    },
    async close(closeChannels) {
      closing = true;
      await closeChannels();
      await manager.close().catch(() => undefined);
    },
  };
}
