// The command line of `npm run dlq`: its arguments, its usage text and what it prints. What each
// command does to the queues is in shared (listDeadLetters, replayDeadLetters, purgeDeadLetters),
// where the tests use it too; scripts/dlq.mjs connects and sets the exit code.

import { DEAD_LETTER_QUEUES, listDeadLetters, purgeDeadLetters, replayDeadLetters } from '@order-pipeline/shared';

/** @typedef {import('@order-pipeline/shared').DeadLetter} DeadLetter */
/** @typedef {'list' | 'replay' | 'purge'} DlqCommand */
/** @typedef {{ command: DlqCommand, queues: string[], limit?: number }} DlqArgs */

/** Bad arguments: the command line prints the message and the usage, and exits 2. */
export class DlqUsageError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'DlqUsageError';
  }
}

export const DLQ_USAGE = `usage: npm run dlq -- list|replay|purge [--queue <name>] [--limit <n>]
  list     show each dead letter (order id, type, reason, error, original queue, when); changes nothing
  replay   republish to the queue each came from, without the dead-letter headers, then remove it
  purge    remove dead letters for good
  --queue  one of ${DEAD_LETTER_QUEUES.join(', ')} (default: both)
  --limit  at most n messages per queue, oldest first (default: all)`;

/**
 * Parses the command line's arguments; throws DlqUsageError with a message that says what is wrong.
 * @param {readonly string[]} argv
 * @returns {DlqArgs}
 */
export function parseDlqArgs(argv) {
  const [command, ...rest] = argv;
  if (command === undefined) throw new DlqUsageError('no command given');
  if (command !== 'list' && command !== 'replay' && command !== 'purge') throw new DlqUsageError(`unknown command "${command}"`);
  /** @type {DlqArgs} */
  const args = { command, queues: [...DEAD_LETTER_QUEUES] };
  /** @type {readonly string[]} */
  const known = DEAD_LETTER_QUEUES;
  let queueGiven = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = /** @type {string} */ (rest[i]);
    const [flag, inline] =
      arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (flag !== '--queue' && flag !== '--limit') throw new DlqUsageError(`unknown argument "${arg}"`);
    const value = inline ?? rest[++i];
    if (value === undefined || value === '') throw new DlqUsageError(`${flag} needs a value`);
    if (flag === '--queue') {
      if (!known.includes(value)) {
        throw new DlqUsageError(`--queue must be one of ${DEAD_LETTER_QUEUES.join(', ')}, got "${value}"`);
      }
      args.queues = queueGiven ? [...args.queues, value] : [value];
      queueGiven = true;
    } else {
      if (!/^\d+$/.test(value) || Number(value) < 1)
        throw new DlqUsageError(`--limit must be a whole number of at least 1, got "${value}"`);
      args.limit = Number(value);
    }
  }
  return args;
}

/**
 * One line per dead letter, for the terminal.
 * @param {DeadLetter} d
 */
export function formatDeadLetter(d) {
  const fields = [
    `order ${d.orderId ?? '?'}`,
    `type ${d.type ?? '?'}`,
    `reason ${d.reason ?? '?'}`,
    `from ${d.originalQueue ?? '?'}`,
    `at ${d.at ?? '?'}`,
    ...(d.retries !== undefined ? [`retries ${d.retries}`] : []),
    ...(d.error ? [`error ${JSON.stringify(d.error)}`] : []),
  ];
  return `${d.queue}  ${fields.join('  ')}`;
}

/**
 * Runs one parsed command on the channel; resolves with the lines to print.
 * @param {import('amqplib').ConfirmChannel} ch
 * @param {DlqArgs} args
 * @returns {Promise<string[]>}
 */
export async function runDlqCommand(ch, args) {
  /** @type {string[]} */
  const lines = [];
  for (const queue of args.queues) {
    if (args.command === 'list') {
      const dead = await listDeadLetters(ch, queue);
      const shown = dead.slice(0, args.limit);
      lines.push(
        `${queue}: ${dead.length} dead letter${dead.length === 1 ? '' : 's'}${shown.length < dead.length ? `, the oldest ${shown.length} shown` : ''}`,
      );
      lines.push(...shown.map(formatDeadLetter));
    } else if (args.command === 'replay') {
      const { replayed, skipped } = await replayDeadLetters(ch, queue, args.limit);
      lines.push(
        `${queue}: replayed ${replayed.length}${skipped.length ? `, left ${skipped.length} whose original queue is unknown` : ''}`,
      );
      lines.push(...replayed.map((d) => `  -> ${d.originalQueue}  order ${d.orderId ?? '?'}  type ${d.type ?? '?'}`));
      lines.push(...skipped.map((d) => `  kept ${formatDeadLetter(d)}`));
    } else {
      const n = await purgeDeadLetters(ch, queue, args.limit);
      lines.push(`${queue}: purged ${n}`);
    }
  }
  return lines;
}
