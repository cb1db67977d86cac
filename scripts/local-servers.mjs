// Throwaway Redis and RabbitMQ servers started from locally installed binaries
// (Debian packages redis-server and rabbitmq-server), as plain child processes on
// free ports, with their data under a fresh directory in os.tmpdir().
//
// Used by the test global setup and by the `npm start` launcher. Plain ESM with JSDoc types
// (checked by tsconfig.scripts.json, read by the tests) so it runs without a build step.

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  constants as fsConstants,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

/**
 * @typedef {(message: string) => void} LogFn
 *
 * @typedef {object} RedisServer
 * @property {string} url      redis://127.0.0.1:PORT
 * @property {number} port
 * @property {string} dir      working directory (AOF files, log)
 * @property {() => Promise<void>} stop   SIGTERM, wait for exit; removes `dir` when this module created it
 * @property {() => Promise<void>} kill   SIGKILL, wait for exit; keeps `dir`
 * @property {() => Promise<void>} start  start again on the same port and dir (e.g. after kill)
 * @property {() => import('node:child_process').ChildProcess | undefined} process  the latest redis-server process (replaced by start): how it ended, for fault tests
 * @property {() => void} pause   SIGSTOP: the process stays, answers nothing (a stalled node, e.g. lagging replication)
 * @property {() => void} resume  SIGCONT after pause
 *
 * @typedef {object} RabbitNode
 * @property {string} name     Erlang node name, e.g. op-1a2b3c-r1@localhost
 * @property {number} port     AMQP port
 * @property {number} distPort Erlang distribution port
 * @property {string} url      amqp://guest:guest@127.0.0.1:PORT
 * @property {() => boolean} isRunning  whether this module believes the node's process is alive
 * @property {() => Promise<void>} kill   SIGKILL of the node's beam.smp (a crash), waits until the AMQP port is closed
 * @property {() => Promise<void>} start  start again with its data; waits until AMQP answers and the node is back in the cluster
 * @property {() => Promise<void>} stop   rabbitmqctl stop, SIGKILL fallback
 * @property {(...args: string[]) => Promise<string>} ctl  run `rabbitmqctl -n <name> ...args` with the cluster's HOME (cookie); resolves stdout
 * @property {() => Promise<string[]>} runningNodes  running nodes as this node sees them (cluster_status)
 *
 * @typedef {object} RabbitCluster
 * @property {string[]} urls
 * @property {RabbitNode[]} nodes
 * @property {string} dir
 * @property {() => Promise<void>} stop  stops all nodes and removes `dir`
 *
 * @typedef {object} LocalServers
 * @property {string} redisUrl
 * @property {string[]} rabbitmqUrls
 * @property {RedisServer} redis
 * @property {RabbitCluster} rabbit
 * @property {() => Promise<void>} stop
 */

const RABBIT_READY_DEADLINE_MS = 60_000;
const REDIS_READY_DEADLINE_MS = 20_000;
const STOP_GRACE_MS = 15_000;

// ---------------------------------------------------------------------------
// Cleanup of still-running children when the process exits (e.g. aborted tests)

/** @type {Set<() => void>} */
const exitHooks = new Set();
let exitHandlerInstalled = false;

/** @param {() => void} hook */
function onProcessExit(hook) {
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true;
    process.on('exit', () => {
      for (const h of exitHooks) {
        try {
          h();
        } catch {
          // best effort only
        }
      }
    });
  }
  exitHooks.add(hook);
  return () => exitHooks.delete(hook);
}

/**
 * SIGKILL a process group (children are spawned detached, so their pid is the group id),
 * falling back to the pid itself.
 * @param {number | undefined} pid
 */
function killGroupSync(pid) {
  if (!pid) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** @param {number} pid */
function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return /** @type {NodeJS.ErrnoException} */ (err).code === 'EPERM';
  }
}

// ---------------------------------------------------------------------------
// Small utilities

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every port this process handed out: never handed out again, in use or not (a killed server waits for its restart on it). */
const handedOut = new Set();
/** One file per port some live process on this machine handed out, named by the port, holding its pid. */
const PORT_CLAIMS = path.join(os.tmpdir(), 'order-pipeline-ports');
/** @type {Set<number>} */
const claimed = new Set();
let claimsReady = false;

/**
 * A free TCP port on 127.0.0.1 for a server we start (or restart) a moment later.
 *
 * Chosen below the kernel's ephemeral range on purpose: a port from that range (what listening on
 * port 0 gives) can be taken by any outgoing connection between the check and the server's bind,
 * or while a killed server is down before its restart on the same port. That happened under load
 * ("eaddrinuse" at a RabbitMQ node's start).
 *
 * Probing by binding says only that the port is free now, not that nobody else picked it a moment
 * ago without binding yet. So a pick is reserved: within this process, in a set taken before the
 * probe (concurrent picks skip it), for good; across processes (test files, a benchmark beside
 * them), by a claim file created exclusively, removed when this process exits and taken over when
 * its process is dead. Falls back to port 0 if no random pick is free.
 * @returns {Promise<number>}
 */
export async function freePort() {
  const [low] = ephemeralRange();
  const top = Math.max(low, 12_000);
  const bottom = Math.max(10_000, top - 12_000);
  for (let i = 0; i < 100; i++) {
    const candidate = bottom + Math.floor(Math.random() * (top - bottom));
    if (handedOut.has(candidate)) continue;
    handedOut.add(candidate);
    if (!claimPort(candidate)) continue;
    if (await canListen(candidate)) return candidate;
    releasePort(candidate);
  }
  const port = await listenOnce(0);
  handedOut.add(port);
  return port;
}

/**
 * Creates the claim file of `port` for this process; false when a live process holds it.
 * @param {number} port
 */
function claimPort(port) {
  const file = path.join(PORT_CLAIMS, String(port));
  if (!claimsReady) {
    claimsReady = true;
    mkdirSync(PORT_CLAIMS, { recursive: true });
    // A process stopped by a signal leaves its claims behind: sweep those of dead processes.
    for (const name of readdirSync(PORT_CLAIMS)) {
      if (!ownerAlive(path.join(PORT_CLAIMS, name))) rmSync(path.join(PORT_CLAIMS, name), { force: true });
    }
    process.once('exit', () => {
      for (const p of claimed) rmSync(path.join(PORT_CLAIMS, String(p)), { force: true });
    });
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      claimed.add(port);
      return true;
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'EEXIST') throw err;
      if (ownerAlive(file)) return false;
      rmSync(file, { force: true }); // its process is gone
    }
  }
  return false;
}

/** @param {number} port */
function releasePort(port) {
  if (claimed.delete(port)) rmSync(path.join(PORT_CLAIMS, String(port)), { force: true });
}

/**
 * Whether the process named in a claim file is alive (a file being written counts as alive).
 * @param {string} file
 */
function ownerAlive(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  const owner = Number(text);
  return text === '' || (Number.isInteger(owner) && owner > 0 && isAlive(owner));
}

/**
 * The kernel's range for outgoing connections' local ports (Linux), or the usual default.
 * @returns {[number, number]}
 */
function ephemeralRange() {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high)) return [low, high];
  } catch {
    // not Linux: fall through
  }
  return [32768, 60999];
}

/** @param {number} port */
async function canListen(port) {
  try {
    await listenOnce(port);
    return true;
  } catch {
    return false;
  }
}

/**
 * Listens on 127.0.0.1:port, closes, and resolves with the port that was bound.
 * @param {number} port
 * @returns {Promise<number>}
 */
function listenOnce(port) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address();
      const bound = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (bound ? resolve(bound) : reject(new Error('could not get a free port'))));
    });
  });
}

/**
 * Full path of an executable found on PATH, or undefined.
 * @param {string} name
 */
function which(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The Debian package puts the non-user-switching scripts here. */
const DEBIAN_RABBIT_BIN = '/usr/lib/rabbitmq/bin';

/** @returns {{ server: string, ctl: string } | undefined} */
function rabbitBinaries() {
  const debian = path.join(DEBIAN_RABBIT_BIN, 'rabbitmq-server');
  if (existsSync(debian)) {
    return { server: debian, ctl: path.join(DEBIAN_RABBIT_BIN, 'rabbitmqctl') };
  }
  const server = which('rabbitmq-server');
  if (!server) return undefined;
  const sibling = path.join(path.dirname(server), 'rabbitmqctl');
  return { server, ctl: existsSync(sibling) ? sibling : (which('rabbitmqctl') ?? sibling) };
}

/**
 * Which server binaries are installed locally.
 * @returns {{ redis: boolean, rabbitmq: boolean }}
 */
export function haveBinaries() {
  return { redis: which('redis-server') !== undefined, rabbitmq: rabbitBinaries() !== undefined };
}

/**
 * Last `bytes` of a file, or '' when missing.
 * @param {string} file
 * @param {number} [bytes]
 */
async function tail(file, bytes = 3000) {
  try {
    const buf = await readFile(file);
    return buf.subarray(Math.max(0, buf.length - bytes)).toString('utf8');
  } catch {
    return '';
  }
}

/**
 * Open a TCP (or TLS) connection, write `payload`, resolve with the first bytes received
 * (at least `minBytes`), or undefined when the connection fails, closes or times out.
 * @param {{ host: string, port: number, tls?: boolean, ca?: Buffer }} target
 * @param {string | Buffer} payload
 * @param {{ timeoutMs?: number, until?: (data: Buffer) => boolean }} [opts]
 * @returns {Promise<Buffer | undefined>}
 */
function probe(target, payload, { timeoutMs = 1000, until = (d) => d.length > 0 } = {}) {
  return new Promise((resolve) => {
    /** @type {Buffer} */
    let received = Buffer.alloc(0);
    let done = false;
    const socket = target.tls
      ? tls.connect({
          host: target.host,
          port: target.port,
          servername: net.isIP(target.host) ? undefined : target.host,
          ...(target.ca ? { ca: target.ca } : {}),
        })
      : net.connect({ host: target.host, port: target.port });
    /** @param {Buffer | undefined} result */
    const finish = (result) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(received.length ? received : undefined), timeoutMs);
    socket.once(target.tls ? 'secureConnect' : 'connect', () => socket.write(payload));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (until(received)) finish(received);
    });
    socket.once('error', () => finish(received.length ? received : undefined));
    socket.once('close', () => finish(received.length ? received : undefined));
  });
}

/**
 * @param {string} url
 * @param {number} defaultPort
 */
function hostPort(url, defaultPort) {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  return { host, port: u.port ? Number(u.port) : defaultPort, secure: u.protocol === 'rediss:' || u.protocol === 'amqps:' };
}

/**
 * Send PING over a raw socket (no client library, no AUTH) and return the first reply
 * line, e.g. "+PONG", "-NOAUTH Authentication required.", "-LOADING ...", or undefined
 * when nothing answers.
 * @param {string} url  redis://host:port (rediss:// uses TLS)
 * @param {number} [timeoutMs]
 * @returns {Promise<string | undefined>}
 */
export async function pingRedis(url, timeoutMs = 1000) {
  const { host, port, secure } = hostPort(url, 6379);
  const reply = await probe({ host, port, tls: secure }, 'PING\r\n', {
    timeoutMs,
    until: (d) => d.includes('\r\n'),
  });
  if (!reply) return undefined;
  const line = reply.toString('utf8').split('\r\n')[0] ?? '';
  return /^[+-]/.test(line) ? line : undefined;
}

/**
 * Whether a Redis server answers at `url`: +PONG, -NOAUTH (a server that wants a password)
 * or -LOADING (a server still loading its data).
 * @param {string} url
 * @param {number} [timeoutMs]
 */
export async function redisAnswers(url, timeoutMs = 1000) {
  const line = await pingRedis(url, timeoutMs);
  return line !== undefined && (line === '+PONG' || line.startsWith('-NOAUTH') || line.startsWith('-LOADING'));
}

/**
 * Whether an AMQP 0-9-1 broker answers at `url`: send the protocol header and expect bytes
 * back (a live broker replies with a Connection.Start frame).
 * @param {string} url  amqp://user:pass@host:port (amqps:// uses TLS)
 * @param {number} [timeoutMs]
 * @param {Buffer} [ca]  a CA to trust for amqps:// (a node with a test certificate)
 */
export async function amqpAnswers(url, timeoutMs = 1000, ca) {
  const { host, port, secure } = hostPort(url, url.startsWith('amqps:') ? 5671 : 5672);
  const reply = await probe({ host, port, tls: secure, ...(ca ? { ca } : {}) }, Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'), {
    timeoutMs,
    until: (d) => d.length >= 7,
  });
  return reply !== undefined && reply.length > 0;
}

/**
 * Whether something accepts TCP connections on 127.0.0.1:port.
 * @param {number} port
 */
function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(true); // no refusal within the time: treat as still open
    }, 1000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/**
 * Resolve when the child exits (or has exited), or after `ms`; returns whether it exited.
 * @param {import('node:child_process').ChildProcess} child
 * @param {number} ms
 * @returns {Promise<boolean>}
 */
function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** @param {import('node:child_process').ChildProcess} child */
const exited = (child) => child.exitCode !== null || child.signalCode !== null;

/**
 * Spawn a server in its own process group with stdout/stderr appended to `logFile`.
 * @param {string} command
 * @param {string[]} args
 * @param {{ cwd: string, env: NodeJS.ProcessEnv, logFile: string }} opts
 */
function spawnServer(command, args, { cwd, env, logFile }) {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', fd, fd], detached: true });
    // Do not keep the event loop alive just for the server: the 'exit' hook kills it.
    child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// Redis

/**
 * Start a throwaway redis-server in the foreground as a child process. `extraArgs` are appended
 * (e.g. `--replicaof 127.0.0.1 <port>`). With `sentinel` (the lines of a Sentinel configuration,
 * without `port`) it runs as a Sentinel on its own writable file in `dir`: Sentinel rewrites it,
 * and a restart reads back what it learnt.
 * @param {{ port?: number, appendonly?: boolean, dir?: string, log?: LogFn, extraArgs?: string[], sentinel?: string[] }} [options]
 * @returns {Promise<RedisServer>}
 */
export async function startRedis({ port, appendonly = false, dir, log, extraArgs = [], sentinel } = {}) {
  const binary = which('redis-server');
  if (!binary) throw new Error('redis-server is not installed (Debian package redis-server)');
  const ownsDir = !dir;
  const workDir = dir ?? (await mkdtemp(path.join(os.tmpdir(), 'op-redis-')));
  const redisPort = port ?? (await freePort());
  const url = `redis://127.0.0.1:${redisPort}`;
  const logFile = path.join(workDir, 'redis.log');
  const sentinelConf = path.join(workDir, 'sentinel.conf');
  if (sentinel) {
    await writeFile(sentinelConf, [`port ${redisPort}`, 'bind 127.0.0.1', `dir ${workDir}`, ...sentinel, ''].join('\n'));
  }
  const serverArgs = [
    '--port',
    String(redisPort),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    appendonly ? 'yes' : 'no',
    // With the default (fsync every second) a SIGKILL loses the last second of writes; a server
    // started with its AOF on is one whose data must survive a crash.
    '--appendfsync',
    appendonly ? 'always' : 'everysec',
    '--dir',
    workDir,
    '--daemonize',
    'no',
    ...extraArgs,
  ];
  const args = sentinel ? [sentinelConf, '--sentinel', '--daemonize', 'no'] : serverArgs;

  /** @type {import('node:child_process').ChildProcess | undefined} */
  let child;
  /** @type {(() => void) | undefined} */
  let removeHook;

  const start = async () => {
    if (child && !exited(child)) throw new Error(`redis on port ${redisPort} is already running`);
    const t0 = Date.now();
    await mkdir(workDir, { recursive: true });
    const proc = spawnServer(binary, args, { cwd: workDir, env: process.env, logFile });
    child = proc;
    removeHook?.();
    removeHook = onProcessExit(() => {
      killGroupSync(proc.pid);
      if (ownsDir) rmSync(workDir, { recursive: true, force: true });
    });
    /** @type {Error | undefined} */
    let spawnError;
    proc.once('error', (err) => {
      spawnError = err;
    });
    const deadline = Date.now() + REDIS_READY_DEADLINE_MS;
    for (;;) {
      if (spawnError) throw spawnError;
      if (exited(proc)) {
        throw new Error(
          `redis-server on port ${redisPort} exited during startup (code ${proc.exitCode}, signal ${proc.signalCode}); log tail:\n${await tail(logFile)}`,
        );
      }
      if ((await pingRedis(url, 500)) === '+PONG') break;
      if (Date.now() > deadline) {
        killGroupSync(proc.pid);
        throw new Error(
          `redis-server on port ${redisPort} did not answer PING within ${REDIS_READY_DEADLINE_MS} ms; log tail:\n${await tail(logFile)}`,
        );
      }
      await sleep(50);
    }
    log?.(`redis ready at ${url} in ${Date.now() - t0} ms`);
  };

  /** @param {NodeJS.Signals} signal */
  const terminate = async (signal) => {
    const proc = child;
    if (!proc || exited(proc)) return;
    try {
      process.kill(/** @type {number} */ (proc.pid), signal);
    } catch {
      // gone already
    }
    if (!(await waitExit(proc, signal === 'SIGKILL' ? 5000 : STOP_GRACE_MS))) {
      killGroupSync(proc.pid);
      await waitExit(proc, 5000);
    }
  };

  /** @param {NodeJS.Signals} signal */
  const signalChild = (signal) => {
    if (!child || exited(child)) return;
    try {
      process.kill(/** @type {number} */ (child.pid), signal);
    } catch {
      // gone already
    }
  };

  await start();
  return {
    url,
    port: redisPort,
    dir: workDir,
    start,
    process: () => child,
    kill: () => terminate('SIGKILL'),
    pause: () => signalChild('SIGSTOP'),
    resume: () => signalChild('SIGCONT'),
    stop: async () => {
      // A paused server would never see the SIGTERM.
      signalChild('SIGCONT');
      await terminate('SIGTERM');
      removeHook?.();
      removeHook = undefined;
      if (ownsDir) await rm(workDir, { recursive: true, force: true, maxRetries: 3 });
      log?.(`redis at ${url} stopped`);
    },
  };
}

// ---------------------------------------------------------------------------
// RabbitMQ

/**
 * Run rabbitmqctl with the given env; resolves stdout, rejects with stderr/stdout on failure.
 * @param {string} ctl
 * @param {NodeJS.ProcessEnv} env
 * @param {string[]} args
 * @param {number} [timeoutMs]
 * @returns {Promise<string>}
 */
function runCtl(ctl, env, args, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    execFile(ctl, args, { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const detail = `${stderr}${stdout}`.trim().split('\n').slice(-15).join('\n');
        reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message.split('\n')[0]}\n${detail}`));
      } else {
        resolve(stdout);
      }
    });
  });
}

/**
 * Environment for server and CLI: the inherited one minus any RABBITMQ_* settings
 * (they would change what the node does), plus ours.
 * @param {Record<string, string>} extra
 */
function rabbitEnv(extra) {
  /** @type {NodeJS.ProcessEnv} */
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('RABBITMQ_') && k !== 'ERL_FLAGS' && k !== 'ERL_ZFLAGS') env[k] = v;
  }
  return { ...env, ...extra };
}

/**
 * Start a throwaway RabbitMQ cluster of `nodes` nodes (1 = a single node) from the local
 * binaries. Nodes start in parallel; nodes 2..n are then joined to node 1. With `tls` (PEM
 * files), each node listens for amqps:// only (no plain AMQP listener) and its URL is
 * amqps://guest:guest@localhost:<port>.
 * @param {{ nodes?: number, log?: LogFn, tls?: { certFile: string, keyFile: string, caFile: string } }} [options]
 * @returns {Promise<RabbitCluster>}
 */
export async function startRabbitCluster({ nodes: count = 1, log, tls: tlsFiles } = {}) {
  const bins = rabbitBinaries();
  if (!bins) throw new Error('rabbitmq-server is not installed (Debian package rabbitmq-server)');
  if (!Number.isInteger(count) || count < 1) throw new Error(`nodes must be a positive integer, got ${count}`);
  const t0 = Date.now();
  const root = await mkdtemp(path.join(os.tmpdir(), 'op-rabbit-'));
  const home = path.join(root, 'home');
  await mkdir(home, { recursive: true });
  const cookiePath = path.join(home, '.erlang.cookie');
  await writeFile(cookiePath, randomBytes(20).toString('hex').toUpperCase());
  await chmod(cookiePath, 0o400);
  // Our own (empty) env file so a system-wide rabbitmq-env.conf does not rename the node.
  const confEnvFile = path.join(root, 'rabbitmq-env.conf');
  await writeFile(confEnvFile, '');
  const prefix = `op-${randomBytes(3).toString('hex')}`;

  const cliEnv = rabbitEnv({
    HOME: home,
    RABBITMQ_CONF_ENV_FILE: confEnvFile,
    ERL_EPMD_ADDRESS: '127.0.0.1',
    // Each rabbitmqctl run listens on a port of this range; the default (35672-35682) runs
    // out when several test runs on one machine call the CLI at once.
    RABBITMQ_CTL_DIST_PORT_MIN: '35672',
    RABBITMQ_CTL_DIST_PORT_MAX: '35872',
  });
  let removeDirOnExit = true;
  const removeRootHook = onProcessExit(() => {
    if (removeDirOnExit) rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  });

  /** @type {RabbitNode[]} */
  const nodes = [];
  /** @type {Array<{ node: RabbitNode, launch: () => Promise<void> }>} */
  const internals = [];

  for (let i = 1; i <= count; i++) {
    const [port, distPort] = [await freePort(), await freePort()];
    const name = `${prefix}-r${i}@localhost`;
    const dir = path.join(root, `r${i}`);
    const files = {
      mnesia: path.join(dir, 'mnesia'),
      logs: path.join(dir, 'log'),
      config: path.join(dir, 'rabbitmq.conf'),
      advanced: path.join(dir, 'advanced.config'),
      plugins: path.join(dir, 'enabled_plugins'),
      pid: path.join(dir, 'rabbitmq.pid'),
      console: path.join(dir, 'console.log'),
    };
    await mkdir(files.mnesia, { recursive: true });
    await mkdir(files.logs, { recursive: true });
    const tlsConfig = tlsFiles
      ? [
          'listeners.tcp = none',
          `listeners.ssl.default = 127.0.0.1:${port}`,
          `ssl_options.cacertfile = ${tlsFiles.caFile}`,
          `ssl_options.certfile = ${tlsFiles.certFile}`,
          `ssl_options.keyfile = ${tlsFiles.keyFile}`,
          'ssl_options.verify = verify_none',
          'ssl_options.fail_if_no_peer_cert = false',
          '',
        ].join('\n')
      : '';
    await writeFile(files.config, `loopback_users = none\nlog.file.level = info\n${tlsConfig}`);
    await writeFile(files.plugins, '[].\n');
    const env = rabbitEnv({
      HOME: home,
      RABBITMQ_CONF_ENV_FILE: confEnvFile,
      RABBITMQ_NODENAME: name,
      // With TLS the listeners come from the config file only (these would add a plain one).
      ...(tlsFiles ? {} : { RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1', RABBITMQ_NODE_PORT: String(port) }),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: files.mnesia,
      RABBITMQ_LOG_BASE: files.logs,
      RABBITMQ_CONFIG_FILE: files.config,
      RABBITMQ_ADVANCED_CONFIG_FILE: files.advanced,
      RABBITMQ_ENABLED_PLUGINS_FILE: files.plugins,
      RABBITMQ_PID_FILE: files.pid,
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
      ERL_EPMD_ADDRESS: '127.0.0.1',
    });
    const url = tlsFiles ? `amqps://guest:guest@localhost:${port}` : `amqp://guest:guest@127.0.0.1:${port}`;
    const ca = tlsFiles ? readFileSync(tlsFiles.caFile) : undefined;
    /** @type {import('node:child_process').ChildProcess | undefined} */
    let child;
    /** @type {(() => void) | undefined} */
    let removeHook;

    const beamPid = () => {
      try {
        const pid = Number(readFileSync(files.pid, 'utf8').trim());
        return Number.isInteger(pid) && pid > 0 ? pid : undefined;
      } catch {
        return undefined;
      }
    };

    const logTail = async () =>
      `--- ${path.basename(files.console)}\n${await tail(files.console, 1500)}\n--- ${name}.log\n${await tail(path.join(files.logs, `${name}.log`), 2500)}`;

    /** Spawn the node and wait until it answers AMQP. */
    const launch = async () => {
      if (child && !exited(child)) throw new Error(`${name} is already running`);
      const started = Date.now();
      await rm(files.pid, { force: true });
      const proc = spawnServer(bins.server, [], { cwd: dir, env, logFile: files.console });
      child = proc;
      removeHook?.();
      removeHook = onProcessExit(() => {
        const pid = beamPid();
        if (pid) killGroupSync(pid);
        killGroupSync(proc.pid);
      });
      /** @type {Error | undefined} */
      let spawnError;
      proc.once('error', (err) => {
        spawnError = err;
      });
      const deadline = started + RABBIT_READY_DEADLINE_MS;
      for (;;) {
        if (spawnError) throw spawnError;
        if (exited(proc)) {
          throw new Error(
            `RabbitMQ node ${name} exited during startup (code ${proc.exitCode}, signal ${proc.signalCode})\n${await logTail()}`,
          );
        }
        if (await amqpAnswers(url, 1000, ca)) break;
        if (Date.now() > deadline) {
          throw new Error(
            `RabbitMQ node ${name} did not answer AMQP on port ${port} within ${RABBIT_READY_DEADLINE_MS} ms\n${await logTail()}`,
          );
        }
        await sleep(250);
      }
      log?.(`rabbitmq node ${name} answers AMQP on ${port} after ${Date.now() - started} ms`);
    };

    /** @param {string[]} args */
    const ctl = (...args) => runCtl(bins.ctl, cliEnv, ['-n', name, ...args]);

    const runningNodes = async () => {
      const out = await ctl('cluster_status', '--formatter', 'json');
      const parsed = JSON.parse(out.slice(out.indexOf('{')));
      return /** @type {string[]} */ (parsed.running_nodes ?? []);
    };

    const waitPortClosed = async () => {
      const deadline = Date.now() + 20_000;
      while (await portOpen(port)) {
        if (Date.now() > deadline) throw new Error(`${name}: AMQP port ${port} still open 20 s after kill`);
        await sleep(100);
      }
    };

    /** @type {RabbitNode} */
    const node = {
      name,
      port,
      distPort,
      url,
      isRunning: () => !!child && !exited(child),
      ctl,
      runningNodes,
      kill: async () => {
        const pid = beamPid();
        if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
        else if (child?.pid) killGroupSync(child.pid);
        await waitPortClosed();
        if (child && !(await waitExit(child, 10_000))) killGroupSync(child.pid);
        log?.(`rabbitmq node ${name} killed`);
      },
      start: async () => {
        await launch();
        // Back in the cluster: it lists itself and every other node we believe is up.
        const expected = nodes.filter((n) => n.isRunning()).map((n) => n.name);
        const deadline = Date.now() + RABBIT_READY_DEADLINE_MS;
        for (;;) {
          const running = await runningNodes().catch(() => /** @type {string[]} */ ([]));
          if (expected.every((n) => running.includes(n))) break;
          if (Date.now() > deadline) {
            throw new Error(
              `${name} is not back in the cluster: running nodes ${JSON.stringify(running)}, expected ${JSON.stringify(expected)}`,
            );
          }
          await sleep(500);
        }
      },
      stop: async () => {
        const proc = child;
        if (!proc || exited(proc)) return;
        await ctl('stop').catch(() => undefined);
        if (!(await waitExit(proc, STOP_GRACE_MS))) {
          const pid = beamPid();
          if (pid) killGroupSync(pid);
          killGroupSync(proc.pid);
          await waitExit(proc, 5000);
        }
        removeHook?.();
        removeHook = undefined;
      },
    };
    nodes.push(node);
    internals.push({ node, launch });
  }

  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    removeDirOnExit = false;
    removeRootHook();
    log?.(`rabbitmq cluster ${prefix} stopped`);
  };

  try {
    await Promise.all(internals.map((n) => n.launch()));
    const [first, ...rest] = nodes;
    for (const node of rest) {
      const t = Date.now();
      await node.ctl('stop_app');
      await node.ctl('join_cluster', /** @type {RabbitNode} */ (first).name);
      await node.ctl('start_app');
      log?.(`rabbitmq node ${node.name} joined ${first?.name} in ${Date.now() - t} ms`);
    }
    if (rest.length) {
      const running = await /** @type {RabbitNode} */ (first).runningNodes();
      const missing = nodes.filter((n) => !running.includes(n.name)).map((n) => n.name);
      if (missing.length) throw new Error(`nodes not running in the cluster after join: ${missing.join(', ')}`);
    }
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  log?.(`rabbitmq ${count === 1 ? 'node' : `${count}-node cluster`} ready in ${Date.now() - t0} ms`);

  return { urls: nodes.map((n) => n.url), nodes, dir: root, stop };
}

// ---------------------------------------------------------------------------
// Both

/**
 * Start a throwaway Redis and a RabbitMQ cluster (default one node) in parallel.
 * @param {{ rabbitNodes?: number, log?: LogFn }} [options]
 * @returns {Promise<LocalServers>}
 */
export async function startLocalServers({ rabbitNodes = 1, log } = {}) {
  const [redisResult, rabbitResult] = await Promise.allSettled([startRedis({ log }), startRabbitCluster({ nodes: rabbitNodes, log })]);
  if (redisResult.status === 'rejected' || rabbitResult.status === 'rejected') {
    if (redisResult.status === 'fulfilled') await redisResult.value.stop().catch(() => undefined);
    if (rabbitResult.status === 'fulfilled') await rabbitResult.value.stop().catch(() => undefined);
    throw redisResult.status === 'rejected' ? redisResult.reason : /** @type {PromiseRejectedResult} */ (rabbitResult).reason;
  }
  const redis = redisResult.value;
  const rabbit = rabbitResult.value;
  return {
    redisUrl: redis.url,
    rabbitmqUrls: rabbit.urls,
    redis,
    rabbit,
    stop: async () => {
      await Promise.all([redis.stop(), rabbit.stop()]);
    },
  };
}
