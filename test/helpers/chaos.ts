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
