import type { RabbitNode } from '../../scripts/local-servers.mjs';

// Support for fault tests that kill things at random moments: a seeded random source (the seed
// is printed so a failing schedule can be replayed) and the broker's own view of its queues.

/** mulberry32: a small, seeded source of floats in [0, 1); the same seed gives the same sequence. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One kill of a fault test as seen from the process handles. */
export interface ObservedKill {
  target: string;
  /** The process that was to be killed. */
  pid: number | undefined;
  /** How it ended, read from its handle once it had exited. */
  signal: NodeJS.Signals | null;
  code: number | null;
  /** The process started in its place. */
  restartedPid: number | undefined;
}

/**
 * What does not hold in a run's kills, empty when every planned kill happened: each target was
 * killed as often as planned, every killed process ended by SIGKILL (not on its own, not by
 * another signal), each was replaced by a new process, that new one is the process the next kill
 * of the target found (so it ran until then), and the last one is the process running now.
 */
export function killProblems(
  plan: Record<string, number>,
  kills: readonly ObservedKill[],
  runningNow: Record<string, number | undefined>,
): string[] {
  const problems: string[] = [];
  for (const [target, planned] of Object.entries(plan)) {
    const mine = kills.filter((k) => k.target === target);
    if (mine.length !== planned) problems.push(`${target}: ${mine.length} kills observed, ${planned} planned`);
    mine.forEach((k, i) => {
      const which = `${target} kill ${i + 1} (pid ${k.pid})`;
      if (k.signal !== 'SIGKILL') problems.push(`${which} ended by ${k.signal ?? `exit code ${k.code}`}, not SIGKILL`);
      if (k.restartedPid === undefined || k.restartedPid === k.pid) problems.push(`${which} was not replaced by a new process`);
      const next = mine[i + 1];
      if (next && next.pid !== k.restartedPid)
        problems.push(`${which}: its replacement ${k.restartedPid} is not the process the next kill found (${next.pid})`);
    });
    const last = mine[mine.length - 1];
    if (last && runningNow[target] !== last.restartedPid)
      problems.push(`${target}: the last replacement ${last.restartedPid} is not running now (${runningNow[target] ?? 'none'} is)`);
  }
  return problems;
}

export interface QueueDepth {
  /** Ready plus unacknowledged, as the broker counts `messages`. */
  messages: number;
  unacked: number;
}

/**
 * Every queue's depth and unacknowledged count as the node reports them (`rabbitmqctl
 * list_queues`), which, unlike a passive declare, also shows messages held by consumers.
 */
export async function queueDepths(node: Pick<RabbitNode, 'ctl'>): Promise<Record<string, QueueDepth>> {
  const out = await node.ctl('list_queues', 'name', 'messages', 'messages_unacknowledged', '--formatter', 'json', '--quiet');
  const rows = JSON.parse(out) as { name: string; messages: number; messages_unacknowledged: number }[];
  return Object.fromEntries(rows.map((r) => [r.name, { messages: Number(r.messages), unacked: Number(r.messages_unacknowledged) }]));
}

/**
 * The warnings and errors in the services' JSON log lines, counted by service, message and error
 * (order ids and numbers blanked), most frequent first: what a fault test's figures came from.
 */
export function warningSummary(output: string, limit = 12): string[] {
  const counts = new Map<string, number>();
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: { level?: number | string; service?: string; msg?: string; err?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    // pino writes the level as a number or, with a formatter, as its label.
    const level =
      typeof entry.level === 'string'
        ? (({ warn: 40, error: 50, fatal: 60 } as Record<string, number>)[entry.level] ?? 0)
        : (entry.level ?? 0);
    if (level < 40) continue;
    const err = typeof entry.err === 'string' ? entry.err : entry.err ? JSON.stringify(entry.err) : '';
    const key = `${entry.service ?? '?'}: ${entry.msg ?? ''}${err ? ` (${err})` : ''}`.replace(/\d+/g, 'N').slice(0, 200);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([k, n]) => `${n} x ${k}`);
}
