// Types of local-servers.mjs, generated from its JSDoc so TypeScript callers (tests) get
// them without allowJs. Regenerate after changing the JSDoc:
//   npx tsc --allowJs --declaration --emitDeclarationOnly --module nodenext --target es2022 --types node --skipLibCheck --outDir scripts scripts/local-servers.mjs
/**
 * A free TCP port on 127.0.0.1 (listen on port 0, read it, close).
 * @returns {Promise<number>}
 */
export function freePort(): Promise<number>;
/**
 * Which server binaries are installed locally.
 * @returns {{ redis: boolean, rabbitmq: boolean }}
 */
export function haveBinaries(): {
  redis: boolean;
  rabbitmq: boolean;
};
/**
 * Send PING over a raw socket (no client library, no AUTH) and return the first reply
 * line, e.g. "+PONG", "-NOAUTH Authentication required.", "-LOADING ...", or undefined
 * when nothing answers.
 * @param {string} url  redis://host:port (rediss:// uses TLS)
 * @param {number} [timeoutMs]
 * @returns {Promise<string | undefined>}
 */
export function pingRedis(url: string, timeoutMs?: number): Promise<string | undefined>;
/**
 * Whether a Redis server answers at `url`: +PONG, -NOAUTH (a server that wants a password)
 * or -LOADING (a server still loading its data).
 * @param {string} url
 * @param {number} [timeoutMs]
 */
export function redisAnswers(url: string, timeoutMs?: number): Promise<boolean>;
/**
 * Whether an AMQP 0-9-1 broker answers at `url`: send the protocol header and expect bytes
 * back (a live broker replies with a Connection.Start frame).
 * @param {string} url  amqp://user:pass@host:port (amqps:// uses TLS)
 * @param {number} [timeoutMs]
 */
export function amqpAnswers(url: string, timeoutMs?: number): Promise<boolean>;
/**
 * Start a throwaway redis-server in the foreground as a child process.
 * @param {{ port?: number, appendonly?: boolean, dir?: string, log?: LogFn }} [options]
 * @returns {Promise<RedisServer>}
 */
export function startRedis({
  port,
  appendonly,
  dir,
  log,
}?: {
  port?: number;
  appendonly?: boolean;
  dir?: string;
  log?: LogFn;
}): Promise<RedisServer>;
/**
 * Start a throwaway RabbitMQ cluster of `nodes` nodes (1 = a single node) from the local
 * binaries. Nodes start in parallel; nodes 2..n are then joined to node 1.
 * @param {{ nodes?: number, log?: LogFn }} [options]
 * @returns {Promise<RabbitCluster>}
 */
export function startRabbitCluster({ nodes: count, log }?: { nodes?: number; log?: LogFn }): Promise<RabbitCluster>;
/**
 * Start a throwaway Redis and a RabbitMQ cluster (default one node) in parallel.
 * @param {{ rabbitNodes?: number, log?: LogFn }} [options]
 * @returns {Promise<LocalServers>}
 */
export function startLocalServers({ rabbitNodes, log }?: { rabbitNodes?: number; log?: LogFn }): Promise<LocalServers>;
export type LogFn = (message: string) => void;
export type RedisServer = {
  /**
   * redis://127.0.0.1:PORT
   */
  url: string;
  port: number;
  /**
   * working directory (AOF files, log)
   */
  dir: string;
  /**
   * SIGTERM, wait for exit; removes `dir` when this module created it
   */
  stop: () => Promise<void>;
  /**
   * SIGKILL, wait for exit; keeps `dir`
   */
  kill: () => Promise<void>;
  /**
   * start again on the same port and dir (e.g. after kill)
   */
  start: () => Promise<void>;
};
export type RabbitNode = {
  /**
   * Erlang node name, e.g. op-1a2b3c-r1@localhost
   */
  name: string;
  /**
   * AMQP port
   */
  port: number;
  /**
   * Erlang distribution port
   */
  distPort: number;
  /**
   * amqp://guest:guest@127.0.0.1:PORT
   */
  url: string;
  /**
   * whether this module believes the node's process is alive
   */
  isRunning: () => boolean;
  /**
   * SIGKILL of the node's beam.smp (a crash), waits until the AMQP port is closed
   */
  kill: () => Promise<void>;
  /**
   * start again with its data; waits until AMQP answers and the node is back in the cluster
   */
  start: () => Promise<void>;
  /**
   * rabbitmqctl stop, SIGKILL fallback
   */
  stop: () => Promise<void>;
  /**
   * run `rabbitmqctl -n <name> ...args` with the cluster's HOME (cookie); resolves stdout
   */
  ctl: (...args: string[]) => Promise<string>;
  /**
   * running nodes as this node sees them (cluster_status)
   */
  runningNodes: () => Promise<string[]>;
};
export type RabbitCluster = {
  urls: string[];
  nodes: RabbitNode[];
  dir: string;
  /**
   * stops all nodes and removes `dir`
   */
  stop: () => Promise<void>;
};
export type LocalServers = {
  redisUrl: string;
  rabbitmqUrls: string[];
  redis: RedisServer;
  rabbit: RabbitCluster;
  stop: () => Promise<void>;
};
