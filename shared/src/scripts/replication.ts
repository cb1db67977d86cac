import { keys } from '../keys.js';
import type { RedisClient } from '../redis.js';

// WAIT after a script whose result someone is told about (a 202, a publish, an ack): Sentinel
// replicates asynchronously, so a primary that acknowledged a write and died before sending it
// on takes the write with it. WAIT on the same connection blocks until `minReplicas` replicas
// acknowledged every write of that connection so far, or the timeout passes. It is not
// consensus: see docs/high-availability.md for what it does and does not guarantee.

export interface ReplicationPolicy {
  /** Replicas that must hold a write before its result is used; 0: no WAIT. */
  minReplicas: number;
  /** WAIT's timeout (never 0: WAIT 0 blocks without bound). */
  timeoutMs: number;
}

interface State extends ReplicationPolicy {
  /** Counts the client's connections: a write and its WAIT must run on the same one. */
  connection: number;
  /** The WAIT that the confirmations asked for in this tick will share, until it is sent. */
  next?: Promise<number>;
}

const states = new WeakMap<RedisClient, State>();

/** Called by createRedis: every confirmed write of this client waits for `policy`. */
export function setReplicationPolicy(redis: RedisClient, policy: ReplicationPolicy): void {
  if (policy.minReplicas > 0 && !(policy.timeoutMs > 0)) throw new Error('a WAIT timeout must be positive');
  const state: State = { ...policy, connection: 0 };
  states.set(redis, state);
  redis.on('ready', () => state.connection++);
}

/** The policy of a client (none for a client not made by createRedis). */
export function replicationPolicyOf(redis: RedisClient): ReplicationPolicy | undefined {
  const s = states.get(redis);
  return s && { minReplicas: s.minReplicas, timeoutMs: s.timeoutMs };
}

/**
 * Fewer replicas than asked for acknowledged the write in time, or the client reconnected
 * between the write and its WAIT (a WAIT on a new connection has no write of its own to wait for,
 * and would answer at once). The write happened, or may have: it can still be lost in a failover,
 * so its result must not be announced. Like an outage, it is retried later, not counted.
 */
export class NotEnoughReplicasError extends Error {
  constructor(
    readonly script: string,
    readonly acknowledged: number,
    readonly wanted: number,
    readonly reconnected = false,
  ) {
    super(
      reconnected
        ? `the ${script} script's write is unconfirmed: the Redis connection changed before its WAIT`
        : `the ${script} script's write reached ${acknowledged} of ${wanted} replicas in time`,
    );
    this.name = 'NotEnoughReplicasError';
  }
}

/**
 * One WAIT for every confirmation asked for in the same tick. A WAIT blocks its connection until
 * the replicas answer, so one WAIT per script would put a replication round trip between every two
 * scripts of the client (measured 2026-12-02: the pipeline drained at 0.38 of its rate without
 * WAIT). A WAIT covers every write its connection made before it, so it may be shared by every
 * write whose reply had arrived when it is sent: those were executed first. It is sent on the
 * next tick, once the replies that arrived together have all asked; a confirmation asked for once
 * it is sent gets the next WAIT, never this one (its write may have come after it).
 */
function sharedWait(redis: RedisClient, state: State): Promise<number> {
  if (state.next) return state.next;
  const next = new Promise<number>((resolve, reject) => {
    process.nextTick(() => {
      state.next = undefined;
      // WAIT waits for this connection's last write. A script that found its work done writes
      // nothing (a decision made before, perhaps by another process whose WAIT failed), and its
      // result is announced all the same: one write here, after the scripts, makes the WAIT
      // cover everything they read. Sent together, so it costs no round trip.
      Promise.all([redis.incr(keys.replicationMark), redis.wait(state.minReplicas, state.timeoutMs)]).then(([, n]) => resolve(n), reject);
    });
  });
  state.next = next;
  return next;
}

/**
 * Runs `write` (one script call on `redis`) and, when the client's policy asks for it, WAITs on
 * the same connection; resolves with the script's reply once enough replicas hold the write.
 * ioredis keeps one connection per client and sends commands in order, so the WAIT follows the
 * write on the connection that made it (auto-pipelining only batches them, never reorders).
 */
export async function confirmed<T>(redis: RedisClient, script: string, write: () => Promise<T>): Promise<T> {
  const state = states.get(redis);
  if (!state || state.minReplicas === 0) return write();
  const connection = state.connection;
  const reply = await write();
  const acknowledged = await sharedWait(redis, state);
  if (state.connection !== connection) throw new NotEnoughReplicasError(script, acknowledged, state.minReplicas, true);
  if (acknowledged < state.minReplicas) throw new NotEnoughReplicasError(script, acknowledged, state.minReplicas);
  return reply;
}
