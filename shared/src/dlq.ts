import type { ConfirmChannel, GetMessage, MessagePropertyHeaders } from 'amqplib';
import { DEAD_LETTER_HEADERS, RETRY_COUNT_HEADER } from './broker/index.js';
import { orderIdOfMessageId } from './messages.js';
import { WEBHOOK_ATTEMPT_HEADER } from './topology.js';

// What the operator's dead-letter tools do: list, replay, purge. Each takes a confirm channel, so
// the command line (scripts/dlq.mjs, `npm run dlq -- <command>`) and the tests share them; the
// command line's own part (arguments, usage, printing, exit codes) lives with the tools.
//
// Listing must not lose or reorder anything. A dead-letter queue has no delivery limit (see
// topology.ts), so taking messages with basic.get and handing them back unacked cannot drop one.
// A quorum queue puts a handed-back message at the back, so listing takes every message and
// hands them all back in one go, in the order taken: the whole queue turns round once and keeps
// its order (`--limit` only shortens what is shown). A dead letter that arrives during those
// milliseconds ends up ahead of the listed ones; nothing here depends on that order, since every
// message is about one order and every handler is idempotent. Each listing raises the messages'
// x-delivery-count, which nothing reads on a dead-letter queue (replay removes it).

/** What an operator sees of one dead letter. */
export interface DeadLetter {
  queue: string;
  messageId?: string;
  orderId?: string;
  type?: string;
  /** x-dead-letter-reason, or the broker's own reason (e.g. delivery_limit) from x-death. */
  reason?: string;
  error?: string;
  /** The queue it came from and is replayed to. */
  originalQueue?: string;
  /** When it was dead-lettered (ISO time). */
  at?: string;
  retries?: number;
}

/** Headers a replayed message leaves behind: it starts again with a fresh count of attempts. */
const REMOVED_ON_REPLAY = [
  ...Object.values(DEAD_LETTER_HEADERS),
  RETRY_COUNT_HEADER,
  WEBHOOK_ATTEMPT_HEADER,
  'x-delivery-count',
  'x-death',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-first-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-last-death-exchange',
] as const;

function str(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
}

/** The first x-death entry: set when the broker itself dead-lettered (delivery limit). */
function firstDeath(headers: MessagePropertyHeaders): { queue?: string; reason?: string; time?: unknown } | undefined {
  const deaths = headers['x-death'] as unknown;
  return Array.isArray(deaths) ? (deaths[0] as { queue?: string; reason?: string; time?: unknown }) : undefined;
}

function deathTime(t: unknown): string | undefined {
  // amqplib decodes an AMQP timestamp as {'!': 'timestamp', value: seconds}.
  const secs = typeof t === 'object' && t !== null && 'value' in t ? Number((t as { value: unknown }).value) : undefined;
  return secs !== undefined && Number.isFinite(secs) ? new Date(secs * 1000).toISOString() : undefined;
}

export function describeDeadLetter(queue: string, msg: GetMessage): DeadLetter {
  const headers = msg.properties.headers ?? {};
  const death = firstDeath(headers);
  let body: { type?: unknown; order?: { id?: unknown } } | undefined;
  try {
    body = JSON.parse(msg.content.toString('utf8')) as typeof body;
  } catch {
    // A poison message may not be JSON at all; the messageId still names it.
  }
  const messageId = str(msg.properties.messageId);
  // messageId is {orderId}:{type} (messageIdOf): what is left after the order id is the type.
  const idOfMessage = orderIdOfMessageId(messageId);
  const orderId = str(body?.order?.id) ?? idOfMessage;
  const type =
    str(msg.properties.type) ?? str(body?.type) ?? (idOfMessage !== undefined ? messageId?.slice(idOfMessage.length + 1) : undefined);
  const retries = Number(headers[RETRY_COUNT_HEADER]);
  const out: DeadLetter = {
    queue,
    messageId,
    orderId,
    type,
    reason: str(headers[DEAD_LETTER_HEADERS.reason]) ?? str(headers['x-first-death-reason']) ?? death?.reason,
    error: str(headers[DEAD_LETTER_HEADERS.error]),
    originalQueue: originalQueueOf(msg),
    at: str(headers[DEAD_LETTER_HEADERS.at]) ?? deathTime(death?.time),
    retries: Number.isFinite(retries) ? retries : undefined,
  };
  for (const k of Object.keys(out) as (keyof DeadLetter)[]) if (out[k] === undefined) delete out[k];
  return out;
}

/** The queue a dead letter came from: our header, else the broker's x-death record. */
export function originalQueueOf(msg: GetMessage): string | undefined {
  const headers = msg.properties.headers ?? {};
  return str(headers[DEAD_LETTER_HEADERS.queue]) ?? str(headers['x-first-death-queue']) ?? firstDeath(headers)?.queue;
}

/** Takes up to `limit` messages of `queue` without acking them (they stay held by this channel). */
async function take(ch: ConfirmChannel, queue: string, limit = Infinity): Promise<GetMessage[]> {
  const got: GetMessage[] = [];
  while (got.length < limit) {
    const m = await ch.get(queue, { noAck: false });
    if (m === false) break;
    got.push(m);
  }
  return got;
}

/** Every dead letter of `queue` (the oldest `limit` of them), oldest first; the queue is left as it was. */
export async function listDeadLetters(ch: ConfirmChannel, queue: string, limit?: number): Promise<DeadLetter[]> {
  // All of them even with a limit: handing back only the first few would move them behind the rest.
  const held = await take(ch, queue);
  if (held.length > 0) ch.nackAll(true);
  return held.slice(0, limit).map((m) => describeDeadLetter(queue, m));
}

export interface ReplayResult {
  replayed: DeadLetter[];
  /** Dead letters left in place because it is unknown where they came from. */
  skipped: DeadLetter[];
}

/**
 * Republishes up to `limit` dead letters of `queue` to the queue each came from (default exchange,
 * routing key = queue), without the dead-letter and retry headers, waits for the broker's confirm,
 * then acks the dead letter. A crash between the two leaves a copy in both places: every handler
 * is idempotent, so the second one changes nothing.
 */
export async function replayDeadLetters(ch: ConfirmChannel, queue: string, limit?: number): Promise<ReplayResult> {
  const result: ReplayResult = { replayed: [], skipped: [] };
  let returned: string | undefined;
  const onReturn = (m: { fields: { routingKey: string } }) => (returned = m.fields.routingKey);
  ch.on('return', onReturn);
  try {
    const held = await take(ch, queue, limit);
    for (const msg of held) {
      const described = describeDeadLetter(queue, msg);
      const target = originalQueueOf(msg);
      if (!target) {
        result.skipped.push(described);
        continue;
      }
      const headers: MessagePropertyHeaders = { ...msg.properties.headers };
      for (const h of REMOVED_ON_REPLAY) delete headers[h];
      returned = undefined;
      await new Promise<void>((resolve, reject) =>
        ch.publish('', target, msg.content, { ...msg.properties, headers, mandatory: true }, (err) => (err ? reject(err) : resolve())),
      );
      // basic.return precedes the confirm: an unroutable copy (its queue is gone) is not replayed.
      if (returned !== undefined)
        throw new Error(`queue ${target} does not exist; ${described.messageId ?? 'the message'} stays in ${queue}`);
      ch.ack(msg);
      result.replayed.push(described);
    }
    // Handed back, so they move behind the queue's other dead letters.
    if (result.skipped.length > 0) ch.nackAll(true);
  } finally {
    ch.off('return', onReturn);
  }
  return result;
}

/** Removes every dead letter of `queue`, or the oldest `limit`; resolves with how many. */
export async function purgeDeadLetters(ch: ConfirmChannel, queue: string, limit?: number): Promise<number> {
  if (limit === undefined) return (await ch.purgeQueue(queue)).messageCount;
  const held = await take(ch, queue, limit);
  for (const m of held) ch.ack(m);
  // An ack has no reply; a round trip makes sure the broker has them before we report.
  await ch.checkQueue(queue);
  return held.length;
}
