// The dead-letter tools (`npm run dlq -- list|replay|purge`) against a real broker: listing
// changes nothing (neither count nor order), replay sends each message back to where it came
// from without the dead-letter headers, purge removes all or the oldest n, and bad arguments
// get a clear message and a non-zero exit.
import { execFile } from 'node:child_process';
import type { Channel, ChannelModel, ConfirmChannel, GetMessage } from 'amqplib';
import { connect } from 'amqplib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DEAD_LETTER_HEADERS,
  DEAD_LETTER_QUEUES,
  RETRY_COUNT_HEADER,
  applyTopology,
  describeDeadLetter,
  encodeEvent,
  exchanges,
  listDeadLetters,
  makeEvent,
  purgeDeadLetters,
  queues,
  replayDeadLetters,
  routingKeys,
  topologyFor,
  type QueueType,
} from '@order-pipeline/shared';
import { parseDlqArgs } from '../scripts/dlq/command.mjs';
import { drainQueue } from './helpers/broker.js';
import { ROOT } from './helpers/processes.js';
import { resetAll, testServers } from './helpers/servers.js';

const { redisUrl, rabbitmqUrls } = testServers();
const queueType: QueueType = (process.env.QUEUE_TYPE as QueueType | undefined) ?? 'quorum';

let amqp: ChannelModel;
let ch: ConfirmChannel;
let plain: Channel;

/** Dead-letters a message as the consume helper does: to orders.dlx, keyed by its source queue. */
async function deadLetter(source: string, orderId: string, reason: string, extra: Record<string, unknown> = {}): Promise<void> {
  const type = source === queues.orders ? routingKeys.placed : routingKeys.created;
  const { content, options } = encodeEvent(makeEvent(type, { id: orderId, sku: 'dlq-sku', qty: 1 }));
  const headers = {
    ...options.headers,
    [RETRY_COUNT_HEADER]: 4,
    [DEAD_LETTER_HEADERS.reason]: reason,
    [DEAD_LETTER_HEADERS.error]: `failed: ${reason}`,
    [DEAD_LETTER_HEADERS.queue]: source,
    [DEAD_LETTER_HEADERS.at]: '2026-01-01T00:00:00.000Z',
    ...extra,
  };
  ch.publish(exchanges.dlx, source, content, { ...options, headers });
  await ch.waitForConfirms();
}

async function depth(queue: string): Promise<number> {
  return (await plain.checkQueue(queue)).messageCount;
}

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['scripts/dlq.mjs', ...args],
      { cwd: ROOT, env: { ...process.env, RABBITMQ_URLS: rabbitmqUrls.join(','), QUEUE_TYPE: queueType }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  await resetAll(redisUrl, rabbitmqUrls);
  amqp = await connect(rabbitmqUrls[0] as string);
  ch = await amqp.createConfirmChannel();
  plain = await amqp.createChannel();
  await applyTopology(ch, queueType);
});

afterAll(async () => {
  await amqp?.close().catch(() => undefined);
});

beforeEach(async () => {
  for (const q of Object.values(queues)) await plain.purgeQueue(q);
});

describe('dlq list', () => {
  it('is safe because dead-letter queues have no delivery limit: handing a message back can never drop it', () => {
    for (const type of ['quorum', 'classic'] as const) {
      for (const q of topologyFor(type).queues.filter((d) => (DEAD_LETTER_QUEUES as readonly string[]).includes(d.name))) {
        expect(q.options.arguments?.['x-delivery-limit'], `${type} ${q.name}`).toBeUndefined();
        expect(q.options.arguments?.['x-dead-letter-exchange'], `${type} ${q.name}`).toBeUndefined();
      }
    }
  });

  it('shows order id, type, reason, error, original queue and time, and leaves every message in its place', async () => {
    await deadLetter(queues.orders, 'dlq-1', 'unparseable');
    await deadLetter(queues.orders, 'dlq-2', 'attempts_exhausted');
    await deadLetter(queues.orders, 'dlq-3', 'expired');

    const first = await listDeadLetters(ch, queues.ordersDlq);
    expect(first.map((d) => d.orderId)).toEqual(['dlq-1', 'dlq-2', 'dlq-3']);
    expect(first[1]).toMatchObject({
      queue: queues.ordersDlq,
      orderId: 'dlq-2',
      type: 'order.placed',
      reason: 'attempts_exhausted',
      error: 'failed: attempts_exhausted',
      originalQueue: queues.orders,
      at: '2026-01-01T00:00:00.000Z',
      retries: 4,
    });
    // Listed again (and again): nothing lost, nothing reordered.
    for (let i = 0; i < 3; i++)
      expect((await listDeadLetters(ch, queues.ordersDlq)).map((d) => d.orderId)).toEqual(['dlq-1', 'dlq-2', 'dlq-3']);
    expect(await depth(queues.ordersDlq)).toBe(3);
    expect((await listDeadLetters(ch, queues.ordersDlq, 2)).map((d) => d.orderId)).toEqual(['dlq-1', 'dlq-2']);
    expect(await depth(queues.ordersDlq)).toBe(3);
    expect((await listDeadLetters(ch, queues.ordersDlq)).map((d) => d.orderId)).toEqual(['dlq-1', 'dlq-2', 'dlq-3']);
    const { stdout } = await cli('list', '--queue', queues.ordersDlq, '--limit', '2');
    expect(stdout).toContain('orders.queue.dlq: 3 dead letters, the oldest 2 shown');
    expect(stdout).toContain('order dlq-2');
    expect(stdout).not.toContain('order dlq-3');
    expect((await listDeadLetters(ch, queues.ordersDlq)).map((d) => d.orderId)).toEqual(['dlq-1', 'dlq-2', 'dlq-3']);
  });

  it('prints both queues by default from the command line', async () => {
    await deadLetter(queues.orders, 'dlq-cli-1', 'invalid');
    await deadLetter(queues.notifier, 'dlq-cli-2', 'attempts_exhausted');
    const { code, stdout, stderr } = await cli('list');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('orders.queue.dlq: 1 dead letter');
    expect(stdout).toContain('notifier.queue.dlq: 1 dead letter');
    expect((await cli('list', '--queue', queues.ordersDlq, '--limit', '1')).stdout).toContain('orders.queue.dlq: 1 dead letter\n');
    expect(stdout).toMatch(/order dlq-cli-1 {2}type order\.placed {2}reason invalid {2}from orders\.queue {2}at 2026-01-01T00:00:00\.000Z/);
    expect(stdout).toMatch(/order dlq-cli-2 {2}type order\.created {2}reason attempts_exhausted {2}from notifier\.queue/);
    expect(await depth(queues.ordersDlq)).toBe(1);
    expect(await depth(queues.notifierDlq)).toBe(1);
  });

  it("names the broker's own dead-lettering (delivery limit) from x-death", () => {
    const msg = {
      content: Buffer.from('not json'),
      fields: {},
      properties: {
        messageId: 'a:b:order.placed',
        headers: {
          'x-first-death-queue': 'orders.queue',
          'x-first-death-reason': 'delivery_limit',
          'x-death': [{ queue: 'orders.queue', reason: 'delivery_limit', time: { '!': 'timestamp', value: 1_767_225_600 } }],
        },
      },
    } as unknown as GetMessage;
    expect(describeDeadLetter(queues.ordersDlq, msg)).toEqual({
      queue: queues.ordersDlq,
      messageId: 'a:b:order.placed',
      orderId: 'a:b',
      type: 'order.placed',
      reason: 'delivery_limit',
      originalQueue: 'orders.queue',
      at: '2026-01-01T00:00:00.000Z',
    });
  });
});

describe('dlq replay', () => {
  it('republishes to the original queue without the dead-letter and retry headers, then removes the dead letter', async () => {
    await deadLetter(queues.orders, 'dlq-r1', 'attempts_exhausted');
    await deadLetter(queues.notifier, 'dlq-r2', 'attempts_exhausted');

    const { replayed, skipped } = await replayDeadLetters(ch, queues.ordersDlq);
    expect(replayed.map((d) => d.orderId)).toEqual(['dlq-r1']);
    expect(skipped).toEqual([]);
    expect(await depth(queues.ordersDlq)).toBe(0);
    const [back] = (await drainQueue(plain, queues.orders)) as [GetMessage];
    expect(back.properties.messageId).toBe('dlq-r1:order.placed');
    expect(back.properties.contentType).toBe('application/json');
    expect(back.properties.deliveryMode).toBe(2);
    const headers = back.properties.headers ?? {};
    for (const h of [...Object.values(DEAD_LETTER_HEADERS), RETRY_COUNT_HEADER]) expect(headers[h], h).toBeUndefined();
    expect(headers['x-event-version']).toBe(1);
    expect(JSON.parse(back.content.toString()).order.id).toBe('dlq-r1');
    // The other queue's dead letter was not touched.
    expect(await depth(queues.notifierDlq)).toBe(1);
  });

  it('replays only the oldest n with --limit, from the command line', async () => {
    for (const id of ['dlq-l1', 'dlq-l2', 'dlq-l3']) await deadLetter(queues.notifier, id, 'attempts_exhausted');
    const { code, stdout } = await cli('replay', '--queue', queues.notifierDlq, '--limit', '2');
    expect(code).toBe(0);
    expect(stdout).toContain('notifier.queue.dlq: replayed 2');
    expect((await drainQueue(plain, queues.notifier)).map((m) => m.properties.messageId)).toEqual([
      'dlq-l1:order.created',
      'dlq-l2:order.created',
    ]);
    expect((await listDeadLetters(ch, queues.notifierDlq)).map((d) => d.orderId)).toEqual(['dlq-l3']);
  });

  it('keeps a dead letter whose original queue is unknown', async () => {
    ch.publish(exchanges.dlx, queues.orders, Buffer.from('{}'), { messageId: 'nowhere:order.placed', persistent: true });
    await ch.waitForConfirms();
    const { replayed, skipped } = await replayDeadLetters(ch, queues.ordersDlq);
    expect(replayed).toEqual([]);
    expect(skipped.map((d) => d.messageId)).toEqual(['nowhere:order.placed']);
    expect(await depth(queues.ordersDlq)).toBe(1);
  });
});

describe('dlq purge', () => {
  it('removes the oldest n with --limit, then all', async () => {
    for (const id of ['dlq-p1', 'dlq-p2', 'dlq-p3']) await deadLetter(queues.orders, id, 'invalid');
    expect(await purgeDeadLetters(ch, queues.ordersDlq, 1)).toBe(1);
    expect((await listDeadLetters(ch, queues.ordersDlq)).map((d) => d.orderId)).toEqual(['dlq-p2', 'dlq-p3']);
    const { code, stdout } = await cli('purge', '--queue', queues.ordersDlq);
    expect(code).toBe(0);
    expect(stdout).toContain('orders.queue.dlq: purged 2');
    expect(await depth(queues.ordersDlq)).toBe(0);
    expect(await depth(queues.orders)).toBe(0);
  });
});

describe('dlq arguments', () => {
  it.each([
    [[], /no command given/],
    [['show'], /unknown command "show"/],
    [['list', '--queue', 'orders.queue'], /--queue must be one of orders\.queue\.dlq, notifier\.queue\.dlq, got "orders\.queue"/],
    [['purge', '--limit', '0'], /--limit must be a whole number of at least 1, got "0"/],
    [['replay', '--limit'], /--limit needs a value/],
    [['list', '--force'], /unknown argument "--force"/],
  ])('refuses %j with a clear message', (argv, says) => {
    expect(() => parseDlqArgs(argv)).toThrow(says);
  });

  it('accepts --name=value and a repeated --queue', () => {
    expect(parseDlqArgs(['purge', `--queue=${queues.notifierDlq}`, '--limit=5'])).toEqual({
      command: 'purge',
      queues: [queues.notifierDlq],
      limit: 5,
    });
    expect(parseDlqArgs(['list', '--queue', queues.ordersDlq, '--queue', queues.notifierDlq]).queues).toEqual([
      queues.ordersDlq,
      queues.notifierDlq,
    ]);
    expect(parseDlqArgs(['list'])).toEqual({ command: 'list', queues: [queues.ordersDlq, queues.notifierDlq] });
  });

  it('exits 2 with the message and the usage on the command line, touching nothing', async () => {
    await deadLetter(queues.orders, 'dlq-a1', 'invalid');
    const { code, stdout, stderr } = await cli('purge', '--queue', 'orders.queue');
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^dlq: --queue must be one of/);
    expect(stderr).toContain('usage: npm run dlq --');
    expect(await depth(queues.ordersDlq)).toBe(1);
  });

  it('exits 1 naming the node when no broker answers', async () => {
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        ['scripts/dlq.mjs', 'list'],
        { cwd: ROOT, env: { ...process.env, RABBITMQ_URLS: 'amqp://guest:guest@127.0.0.1:1' } },
        (err, _out, stderr) => resolve({ code: Number((err as { code?: number } | null)?.code ?? 0), stderr }),
      ),
    );
    expect(code).toBe(1);
    expect(stderr).toContain('dlq: no broker node answered (127.0.0.1:1');
  });
});
