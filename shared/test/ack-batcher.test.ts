// The consumer's batched acks on a real broker: a handled delivery is acked, one still in hand is
// not (not even by a multiple ack covering deliveries after it), and a flush acks what is handled.
// What the broker still holds after the channel closes is exactly what was not acked.
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AckBatcher } from '../src/index.js';
import { waitFor } from '../../test/helpers/processes.js';

const url = inject('rabbitmqUrls')[0] as string;
let conn: ChannelModel;

beforeAll(async () => {
  conn = await amqp.connect(url);
});
afterAll(() => conn?.close().catch(() => undefined));

/** Puts `n` messages in a fresh queue and takes them all with manual acks. */
async function deliveries(queue: string, n: number): Promise<{ ch: Channel; msgs: ConsumeMessage[] }> {
  const setup = await conn.createChannel();
  await setup.assertQueue(queue, { durable: false, autoDelete: false });
  await setup.purgeQueue(queue);
  for (let i = 1; i <= n; i++) setup.sendToQueue(queue, Buffer.from(String(i)));
  await setup.close();
  const ch = await conn.createChannel();
  await ch.prefetch(n);
  const msgs: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => m && msgs.push(m), { noAck: false });
  await waitFor(`${n} deliveries`, () => (msgs.length === n ? true : undefined), 10_000);
  return { ch, msgs };
}

async function leftIn(queue: string): Promise<string[]> {
  const ch = await conn.createChannel();
  const left: string[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (!m) break;
    left.push(m.content.toString());
  }
  await ch.deleteQueue(queue);
  await ch.close();
  return left.sort();
}

describe('AckBatcher', () => {
  it('acks the handled deliveries and never one still in hand', async () => {
    const queue = `ack-batch-${Date.now()}-1`;
    const { ch, msgs } = await deliveries(queue, 6);
    const acks = new AckBatcher(ch);
    for (const m of msgs) acks.delivered(m.fields.deliveryTag);
    // 1, 2 handled (one multiple ack); 3 in hand; 4, 6 handled after it (one by one); 5 in hand.
    for (const i of [0, 1, 3, 5]) acks.done((msgs[i] as ConsumeMessage).fields.deliveryTag);
    acks.flush();
    await ch.close();
    expect(await leftIn(queue)).toEqual(['3', '5']);
  });

  it('acks on the next turn of the event loop by itself', async () => {
    const queue = `ack-batch-${Date.now()}-2`;
    const { ch, msgs } = await deliveries(queue, 4);
    const acks = new AckBatcher(ch);
    for (const m of msgs) acks.delivered(m.fields.deliveryTag);
    for (const m of [...msgs].reverse()) acks.done(m.fields.deliveryTag);
    await new Promise((resolve) => setImmediate(resolve));
    // A second flush has nothing left to ack (acking a tag twice would close the channel).
    acks.flush();
    await ch.close();
    expect(await leftIn(queue)).toEqual([]);
  });
});
