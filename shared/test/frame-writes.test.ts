// coalesceFrameWrites on a real broker connection: it says whether it could patch this amqplib,
// and once patched, the frames one pass of amqplib's multiplexer collects reach the socket in one
// write, not one write per frame. Fails as soon as amqplib's internals no longer fit the patch.
import amqp, { type ChannelModel } from 'amqplib';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { pino } from 'pino';
import { coalesceFrameWrites, createBroker, waitForBroker } from '@order-pipeline/shared';

const url = inject('rabbitmqUrls')[0] as string;
let conn: ChannelModel | undefined;

afterEach(async () => {
  await conn?.close().catch(() => undefined);
  conn = undefined;
});

interface Writable {
  _write: (...args: unknown[]) => unknown;
  _writev?: (...args: unknown[]) => unknown;
}

/** Counts the writes that reach the socket's own write functions (one system call each). */
function countWrites(model: ChannelModel): { writes: () => number } {
  const stream = (model as unknown as { connection: { stream: Writable } }).connection.stream;
  let n = 0;
  const write = stream._write;
  const writev = stream._writev;
  stream._write = function (this: unknown, ...args: unknown[]) {
    n++;
    return write.apply(this, args);
  };
  if (writev)
    stream._writev = function (this: unknown, ...args: unknown[]) {
      n++;
      return writev.apply(this, args);
    };
  return { writes: () => n };
}

/** Publishes `n` small messages in one go and returns how many socket writes carried them. */
async function writesFor(model: ChannelModel, n: number): Promise<number> {
  const ch = await model.createChannel();
  const queue = `frame-writes-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  await ch.assertQueue(queue, { durable: false, autoDelete: false });
  const counter = countWrites(model);
  for (let i = 0; i < n; i++) ch.sendToQueue(queue, Buffer.from(String(i)));
  // The multiplexer runs its pass on the next turn; the socket writes during it.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  const writes = counter.writes();
  // Everything arrived, whole.
  await expect(ch.checkQueue(queue)).resolves.toMatchObject({ messageCount: n });
  await ch.deleteQueue(queue);
  await ch.close();
  return writes;
}

describe('coalesceFrameWrites', () => {
  it('patches the connection of the amqplib in use, and says so', async () => {
    conn = await amqp.connect(url);
    expect(coalesceFrameWrites(conn)).toBe(true);
  });

  it('sends what one pass of the multiplexer collected in one write', async () => {
    conn = await amqp.connect(url);
    expect(coalesceFrameWrites(conn)).toBe(true);
    // Without the patch: one write per publish (50).
    expect(await writesFor(conn, 50)).toBeLessThanOrEqual(2);
  });

  it("is applied to a broker client's connection, without a warning", async () => {
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const broker = createBroker({ urls: [url], queueType: 'quorum', log, publishTimeoutMs: 5_000, name: 'frame-writes-test' });
    try {
      await waitForBroker(broker, 15_000);
      // The connection amqp-connection-manager made: its multiplexer's pass is our corked one.
      const model = broker.connection.connection as unknown as { connection: { muxer: object } };
      expect(Object.hasOwn(model.connection.muxer, '_readIncoming')).toBe(true);
      expect(warnings.filter((w) => w.includes('coalesce'))).toEqual([]);
    } finally {
      await broker.close();
    }
  });

  it('says false and changes nothing on something that is not an amqplib connection', () => {
    const notAmqplib = { connection: { muxer: {}, stream: {} } };
    expect(coalesceFrameWrites(notAmqplib)).toBe(false);
    expect(notAmqplib).toEqual({ connection: { muxer: {}, stream: {} } });
    expect(coalesceFrameWrites(undefined)).toBe(false);
  });
});
