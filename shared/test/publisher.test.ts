// Publishing on the real broker: every publish is `mandatory`, and a message the broker returns
// as unroutable fails that publish, and only that one, even when copies of one event (same
// messageId, e.g. a redelivery's follow-on racing the original's) are published at once.
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PublishError, createBroker, createLogger, waitForBroker, type Broker } from '@order-pipeline/shared';

const urls = inject('rabbitmqUrls');
const exchange = `publisher-test-${Date.now()}`;
const queue = `${exchange}.here`;
let conn: ChannelModel;
let ch: Channel;
let broker: Broker;

beforeAll(async () => {
  conn = await amqp.connect(urls[0] as string);
  ch = await conn.createChannel();
  // Routing key 'here' reaches a queue; 'nowhere' reaches none.
  await ch.assertExchange(exchange, 'direct', { durable: false, autoDelete: false });
  await ch.assertQueue(queue, { durable: false, autoDelete: false });
  await ch.bindQueue(queue, exchange, 'here');
  // Quorum, as the services declare the topology on the same broker.
  const log = createLogger('publisher-test', 'silent');
  broker = createBroker({ urls, queueType: 'quorum', log, publishTimeoutMs: 5_000, name: 'publisher-test' });
  await waitForBroker(broker, 15_000);
});

afterAll(async () => {
  await broker?.close();
  await ch?.deleteQueue(queue).catch(() => undefined);
  await ch?.deleteExchange(exchange).catch(() => undefined);
  await conn?.close().catch(() => undefined);
});

const send = (routingKey: string, messageId: string) => broker.publish(exchange, routingKey, Buffer.from(routingKey), { messageId });

/** What became of each publish: 'ok', or the PublishError's reason. */
async function outcomes(publishes: Promise<void>[]): Promise<string[]> {
  const settled = await Promise.allSettled(publishes);
  return settled.map((s) => (s.status === 'fulfilled' ? 'ok' : s.reason instanceof PublishError ? s.reason.reason : String(s.reason)));
}

describe('publish returns', () => {
  it('rejects both of two copies with one messageId published at once to where no queue is bound', async () => {
    for (let i = 0; i < 5; i++) {
      const id = `both-unroutable-${i}`;
      expect(await outcomes([send('nowhere', id), send('nowhere', id)])).toEqual(['unroutable', 'unroutable']);
    }
  });

  it('resolves the routable copies and rejects the unroutable ones when they race with one messageId', async () => {
    const before = (await ch.checkQueue(queue)).messageCount;
    // Several in flight at once, so that returns and confirms (often one ack for several
    // publishes) arrive interleaved.
    const keys = Array.from({ length: 20 }, (_, i) => (i % 3 === 0 ? 'here' : 'nowhere'));
    for (let round = 0; round < 5; round++) {
      const id = `racing-${round}`;
      expect(await outcomes(keys.map((key) => send(key, id)))).toEqual(keys.map((key) => (key === 'here' ? 'ok' : 'unroutable')));
    }
    // And each routable copy reached the queue.
    const routable = keys.filter((key) => key === 'here').length;
    expect((await ch.checkQueue(queue)).messageCount - before).toBe(5 * routable);
  });

  it('does not fail a publish with the late return of an earlier one', async () => {
    await expect(send('nowhere', 'late')).rejects.toMatchObject({ reason: 'unroutable' });
    await expect(send('here', 'late')).resolves.toBeUndefined();
  });
});
