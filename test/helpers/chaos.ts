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
