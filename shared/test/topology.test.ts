// The messaging topology as data (the spec's table) and as declared on a real broker. Every
// service declares it in each channel's setup, so a declaration must be repeatable, and one
// with other arguments is refused (406) and closes the channel: these tests show both.
import { connect, type Channel, type ChannelModel, type Options } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  delayQueueDecl,
  delayQueueOf,
  DEAD_LETTER_QUEUES,
  DELIVERY_LIMIT,
  WORK_QUEUES,
  applyTopology,
  dlqOf,
  exchanges,
  queueArguments,
  queues,
  routingKeys,
  topologyFor,
  type QueueType,
} from '@order-pipeline/shared';
import { waitFor } from '../../test/helpers/processes.js';
import { TOPOLOGY_NAMES, resetAll, resetBroker, testServers } from '../../test/helpers/servers.js';

const QUORUM_ONLY = ['x-delivery-limit', 'x-dead-letter-strategy', 'x-overflow'];
const TYPES: QueueType[] = ['quorum', 'classic'];

const queueDecl = (type: QueueType, name: string) => {
  const q = topologyFor(type).queues.find((x) => x.name === name);
  if (!q) throw new Error(`no queue ${name} in the topology`);
  return q;
};

describe('the topology as data', () => {
  it('has the spec table: exchanges, their types, queues and bindings', () => {
    for (const type of TYPES) {
      const t = topologyFor(type);
      expect(t.exchanges).toEqual([
        { name: 'orders.direct', type: 'direct' },
        { name: 'orders.topic', type: 'topic' },
        { name: 'orders.dlx', type: 'topic' },
        { name: 'notifier.retry', type: 'direct' },
      ]);
      const bindings = t.queues.flatMap((q) => q.bindings.map((b) => `${b.exchange} --${b.routingKey}--> ${q.name}`)).sort();
      expect(bindings).toEqual(
        [
          'orders.direct --order.placed--> orders.queue',
          'orders.direct --order.cancel_requested--> orders.queue',
          'orders.topic --order.created--> notifier.queue',
          'orders.topic --order.rejected--> notifier.queue',
          'orders.topic --order.cancelled--> notifier.queue',
          'orders.dlx --orders.queue--> orders.queue.dlq',
          'orders.dlx --notifier.queue--> notifier.queue.dlq',
          'notifier.retry --notifier.queue--> notifier.queue',
        ].sort(),
      );
      expect(t.queues.map((q) => q.name).sort()).toEqual(['notifier.queue', 'notifier.queue.dlq', 'orders.queue', 'orders.queue.dlq']);
    }
    expect(exchanges).toEqual({ direct: 'orders.direct', topic: 'orders.topic', dlx: 'orders.dlx', notifierRetry: 'notifier.retry' });
    expect(routingKeys).toEqual({
      placed: 'order.placed',
      created: 'order.created',
      rejected: 'order.rejected',
      cancelRequested: 'order.cancel_requested',
      cancelled: 'order.cancelled',
    });
    expect([...WORK_QUEUES]).toEqual([queues.orders, queues.notifier]);
    expect([...DEAD_LETTER_QUEUES]).toEqual(WORK_QUEUES.map(dlqOf));
  });

  it.each(TYPES)('declares every queue durable and of the configured type (%s)', (type) => {
    for (const q of topologyFor(type).queues) {
      expect(q.options.durable, q.name).toBe(true);
      expect(q.options.arguments?.['x-queue-type'], q.name).toBe(type);
    }
  });

  it.each(TYPES)('dead-letters each work queue to orders.dlx under its own name (%s)', (type) => {
    for (const name of WORK_QUEUES) {
      const args = queueDecl(type, name).options.arguments ?? {};
      expect(args['x-dead-letter-exchange']).toBe('orders.dlx');
      expect(args['x-dead-letter-routing-key']).toBe(name);
    }
  });

  it('bounds redeliveries and dead-letters at least once on quorum work queues', () => {
    for (const name of WORK_QUEUES) {
      const args = queueDecl('quorum', name).options.arguments ?? {};
      expect(args['x-delivery-limit']).toBe(DELIVERY_LIMIT);
      expect(DELIVERY_LIMIT).toBeGreaterThan(0);
      // at-least-once dead-lettering only works together with reject-publish overflow.
      expect(args['x-dead-letter-strategy']).toBe('at-least-once');
      expect(args['x-overflow']).toBe('reject-publish');
    }
  });

  it('gives classic queues none of the quorum-only arguments', () => {
    for (const q of topologyFor('classic').queues) {
      for (const arg of QUORUM_ONLY) expect(q.options.arguments ?? {}, `${q.name} ${arg}`).not.toHaveProperty(arg);
    }
  });

  it.each(TYPES)('binds each DLQ to orders.dlx with its source queue name and dead-letters it nowhere (%s)', (type) => {
    for (const source of WORK_QUEUES) {
      const dlq = queueDecl(type, dlqOf(source));
      expect(dlq.bindings).toEqual([{ exchange: 'orders.dlx', routingKey: source }]);
      // A DLQ that dead-lettered would need a DLQ of its own, or loop.
      expect(Object.keys(dlq.options.arguments ?? {})).toEqual(['x-queue-type']);
    }
  });

  it('builds the same arguments as queueArguments, so every declaration is identical', () => {
    for (const type of TYPES) {
      for (const q of topologyFor(type).queues) {
        expect(q.options.arguments).toEqual(queueArguments(q.name, type, (WORK_QUEUES as readonly string[]).includes(q.name)));
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** Resolves with the error that closed the channel, or undefined if `op` succeeded. */
async function refusal(conn: ChannelModel, op: (ch: Channel) => Promise<unknown>): Promise<{ code?: number } | undefined> {
  const ch = await conn.createChannel();
  // The broker closes the channel on a refused declaration; amqplib emits that as 'error'.
  ch.on('error', () => {});
  try {
    await op(ch);
  } catch (err) {
    return err as { code?: number };
  }
  await ch.close();
  return undefined;
}

/** The next message's body on `queue`, polled with a deadline. */
function getWithin(ch: Channel, queue: string, ms: number): Promise<string> {
  return waitFor(
    `a message on ${queue}`,
    async () => {
      const msg = await ch.get(queue, { noAck: true });
      return msg ? msg.content.toString('utf8') : undefined;
    },
    ms,
    50,
  );
}

describe('the topology on a real broker', () => {
  const { redisUrl, rabbitmqUrls } = testServers();
  let conn: ChannelModel;

  beforeAll(async () => {
    await resetAll(redisUrl, rabbitmqUrls);
    conn = await connect(rabbitmqUrls[0] as string);
  });

  afterAll(async () => {
    await conn?.close().catch(() => {});
    await resetBroker(rabbitmqUrls, TOPOLOGY_NAMES);
  });

  it('is declared twice on one channel and again on another without error, as every service does', async () => {
    const ch = await conn.createChannel();
    await applyTopology(ch, 'quorum');
    await applyTopology(ch, 'quorum');
    await ch.close();

    // A second service (another connection) declares the same topology: accepted too.
    const other = await connect(rabbitmqUrls.at(-1) as string);
    try {
      expect(await refusal(other, (c) => applyTopology(c, 'quorum'))).toBeUndefined();
    } finally {
      await other.close();
    }

    const check = await conn.createChannel();
    for (const name of Object.values(queues)) {
      const { queue, messageCount } = await check.checkQueue(name);
      expect(queue).toBe(name);
      expect(messageCount).toBe(0);
    }
    for (const name of Object.values(exchanges)) await check.checkExchange(name);
    await check.close();
  });

  it('routes each routing key of the spec table to its queue', async () => {
    const ch = await conn.createConfirmChannel();
    const routes: [string, string, string][] = [
      [exchanges.direct, routingKeys.placed, queues.orders],
      [exchanges.topic, routingKeys.created, queues.notifier],
      [exchanges.topic, routingKeys.rejected, queues.notifier],
      [exchanges.dlx, queues.orders, queues.ordersDlq],
      [exchanges.dlx, queues.notifier, queues.notifierDlq],
    ];
    for (const [exchange, key, queue] of routes) {
      const body = `topology-test:${exchange}:${key}`;
      ch.publish(exchange, key, Buffer.from(body), { persistent: true, mandatory: true });
      await ch.waitForConfirms();
      expect(await getWithin(ch, queue, 5000), `${exchange} ${key} -> ${queue}`).toBe(body);
    }
    await ch.close();
  });

  // The trap the identical declarations avoid: each of these differs from what is declared in
  // one property, and the broker refuses it with 406 PRECONDITION_FAILED, closing the channel.
  const mismatches: [string, (ch: Channel) => Promise<unknown>][] = [
    ['the topology declared with QUEUE_TYPE=classic', (ch) => applyTopology(ch, 'classic')],
    [
      'a non-durable orders.queue',
      (ch) => ch.assertQueue(queues.orders, { ...queueDecl('quorum', queues.orders).options, durable: false }),
    ],
    [
      'orders.queue dead-lettering under another routing key',
      (ch) => {
        const { options } = queueDecl('quorum', queues.orders);
        const changed: Options.AssertQueue = { ...options, arguments: { ...options.arguments, 'x-dead-letter-routing-key': 'elsewhere' } };
        return ch.assertQueue(queues.orders, changed);
      },
    ],
    ['orders.direct as a topic exchange', (ch) => ch.assertExchange(exchanges.direct, 'topic', { durable: true })],
  ];

  it.each(mismatches)('refuses %s with 406, while the identical declaration is accepted', async (_name, declare) => {
    const err = await refusal(conn, declare);
    expect(err?.code).toBe(406);

    // The connection survives the closed channel, and the identical declaration still passes.
    expect(await refusal(conn, (ch) => applyTopology(ch, 'quorum'))).toBeUndefined();
  });
});

describe("the notifier's delay queues", () => {
  it('are one per distinct delay, named by it, with a TTL ceiling and dead-lettering back through notifier.retry', () => {
    expect([200, 5000, 300_000, 7_200_000, 1500].map(delayQueueOf)).toEqual([
      'notifier.retry.200ms',
      'notifier.retry.5s',
      'notifier.retry.5m',
      'notifier.retry.2h',
      'notifier.retry.1500ms',
    ]);
    expect(delayQueueDecl(5000, 'quorum')).toEqual({
      name: 'notifier.retry.5s',
      options: {
        durable: true,
        arguments: {
          'x-queue-type': 'quorum',
          'x-message-ttl': 5500,
          'x-dead-letter-exchange': 'notifier.retry',
          'x-dead-letter-routing-key': 'notifier.queue',
          'x-dead-letter-strategy': 'at-least-once',
          'x-overflow': 'reject-publish',
        },
      },
      bindings: [],
    });
    expect(delayQueueDecl(300, 'classic').options.arguments).toEqual({
      'x-queue-type': 'classic',
      'x-message-ttl': 330,
      'x-dead-letter-exchange': 'notifier.retry',
      'x-dead-letter-routing-key': 'notifier.queue',
    });
  });
});
