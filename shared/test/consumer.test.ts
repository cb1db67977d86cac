// The consumer against a fake amqplib channel and a fake of amqp-connection-manager's setup
// callback, for what a real broker cannot produce on demand: a reconnect at a chosen moment (the
// setup running again, on a fresh channel), a channel that closes while a handler is still busy.
// Everything else about the consumer is tested against the real broker (the services' tests).
import { EventEmitter } from 'node:events';
import type { Channel, ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import {
  DEAD_LETTER_HEADERS,
  NotEnoughReplicasError,
  PoisonMessageError,
  PublishError,
  RETRY_COUNT_HEADER,
  createLogger,
  exchanges,
  trace,
} from '@order-pipeline/shared';
import { waitFor } from '../../test/helpers/processes.js';
import { startConsumer, type ConsumerParts } from '../src/broker/consumer.js';

/** A channel that records what the consumer does with it; deliveries are pushed by the test. */
class FakeChannel extends EventEmitter {
  readonly acks: { tag: number; multiple: boolean }[] = [];
  readonly nacks: number[] = [];
  readonly cancelled: string[] = [];
  /** The consume() calls: each one's delivery callback. */
  readonly consumers: ((msg: ConsumeMessage | null) => void)[] = [];
  /** When set, consume() answers only once this resolves (a slow consume-ok). */
  consumeOk: Promise<void> | undefined;
  closed = false;
  private nextTag = 1;

  prefetch = async () => undefined;
  consume = async (_queue: string, onMessage: (msg: ConsumeMessage | null) => void) => {
    this.consumers.push(onMessage);
    await this.consumeOk;
    return { consumerTag: `ctag-${this.consumers.length}` };
  };
  cancel = async (tag: string) => {
    this.cancelled.push(tag);
    return { consumerTag: tag };
  };
  ack = (msg: ConsumeMessage, multiple = false) => {
    if (this.closed) throw new Error('Channel closed');
    this.acks.push({ tag: msg.fields.deliveryTag, multiple });
  };
  nack = (msg: ConsumeMessage) => {
    this.nacks.push(msg.fields.deliveryTag);
  };
  close = async () => {
    this.closed = true;
    this.emit('close');
  };

  /** The broker delivers a message to the latest consumer; returns its delivery tag. */
  deliver(body: string): number {
    const onMessage = this.consumers.at(-1);
    if (!onMessage) throw new Error('nobody consumes on this channel');
    const deliveryTag = this.nextTag++;
    onMessage({
      content: Buffer.from(body),
      fields: { deliveryTag, redelivered: false, exchange: '', routingKey: 'q', consumerTag: '' },
      properties: { headers: {}, messageId: body },
    } as unknown as ConsumeMessage);
    return deliveryTag;
  }

  /** The connection drops: amqplib closes every channel. */
  lose(): void {
    this.closed = true;
    this.emit('close');
  }

  get asChannel(): Channel {
    return this as unknown as Channel;
  }
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

interface Published {
  exchange: string;
  routingKey: string;
  headers: Record<string, unknown>;
}

/**
 * A consumer whose handler waits for the test to finish or fail each delivery (by message body);
 * its retry copies and dead letters go to `publish`.
 */
function fakeConsumer(publish: (p: Published) => Promise<void> = async () => undefined) {
  let setup: ((ch: Channel) => Promise<void>) | undefined;
  const wrapper = { closed: false };
  const handled: string[] = [];
  const attempts: number[] = [];
  // Handlers in hand, by message body, oldest first.
  const inHand = new Map<string, Deferred[]>();
  const parts: ConsumerParts = {
    createChannel: (o) => {
      setup = o.setup;
      return {
        on: () => undefined,
        close: async () => {
          wrapper.closed = true;
        },
      } as unknown as ReturnType<ConsumerParts['createChannel']>;
    },
    isConnected: () => true,
    isClosing: () => false,
    reconnect: () => undefined,
    watch: () => undefined,
    prepare: async () => undefined,
    publish: (exchange, routingKey, _content, options) => publish({ exchange, routingKey, headers: { ...options.headers } }),
    log: createLogger('consumer-test', 'silent'),
    tracer: trace.getTracer('consumer-test'),
    name: 'test',
  };
  const consumer = startConsumer(parts, {
    queue: 'q',
    prefetch: 10,
    backoffMs: () => 1,
    handler: (msg, ctx) => {
      const body = msg.content.toString();
      handled.push(body);
      attempts.push(ctx.attempt);
      const d = deferred();
      inHand.set(body, [...(inHand.get(body) ?? []), d]);
      return d.promise;
    },
  });
  return {
    consumer,
    wrapper,
    handled,
    /** The attempt each handler run was told it is. */
    attempts,
    /** amqp-connection-manager (re)connected: it runs the consumer's setup on a fresh channel. */
    connect: async (ch: FakeChannel) => {
      if (!setup) throw new Error('no setup registered');
      await setup(ch.asChannel);
    },
    /** The oldest handler in hand of this message finishes. */
    finish: (body: string) => inHand.get(body)?.shift()?.resolve(),
    /** The oldest handler in hand of this message throws `err`. */
    fail: (body: string, err: Error) => inHand.get(body)?.shift()?.reject(err),
  };
}

describe('consumer settling (fake channel)', () => {
  it('acks a delivery only after its handler finished, the handled ones in one multiple ack', async () => {
    const f = fakeConsumer();
    const ch = new FakeChannel();
    await f.connect(ch);
    for (const body of ['a', 'b', 'c']) ch.deliver(body);
    await turn();
    expect(f.handled).toEqual(['a', 'b', 'c']);
    expect(ch.acks).toEqual([]);

    // b finishes while a is still in hand: b alone (a multiple ack would take a with it).
    f.finish('b');
    await turn();
    await turn();
    expect(ch.acks).toEqual([{ tag: 2, multiple: false }]);

    // a and c finish in the same turn: one multiple ack up to c.
    f.finish('c');
    f.finish('a');
    await turn();
    await turn();
    expect(ch.acks).toEqual([
      { tag: 2, multiple: false },
      { tag: 3, multiple: true },
    ]);
  });

  it('never acks on the new channel a delivery whose channel closed while its handler ran', async () => {
    const f = fakeConsumer();
    const first = new FakeChannel();
    await f.connect(first);
    first.deliver('a');
    await turn();

    first.lose();
    const second = new FakeChannel();
    await f.connect(second);
    // The broker redelivers a on the new channel, under delivery tag 1 again; still in hand.
    expect(second.deliver('a')).toBe(1);
    await turn();
    f.finish('a');
    await turn();
    await turn();

    // Acking tag 1 on the second channel would ack the redelivery before its handler finished.
    expect(second.acks).toEqual([]);
    expect(first.acks).toEqual([]);
    expect(f.consumer.isConsuming()).toBe(true);
  });
});

describe('carrying out the failure policy (fake channel)', () => {
  it('acks a poison message once its dead letter, with the reason, is confirmed', async () => {
    const published: Published[] = [];
    const confirm = deferred();
    const f = fakeConsumer(async (p) => {
      published.push(p);
      await confirm.promise;
    });
    const ch = new FakeChannel();
    await f.connect(ch);
    ch.deliver('a');
    await turn();
    f.fail('a', new PoisonMessageError('no such field', 'invalid'));
    await turn();
    expect(published).toMatchObject([{ exchange: exchanges.dlx, routingKey: 'q', headers: { [DEAD_LETTER_HEADERS.reason]: 'invalid' } }]);
    await turn();
    expect(ch.acks).toEqual([]);
    confirm.resolve();
    await waitFor('the ack', () => (ch.acks.length > 0 ? true : undefined), 2_000);
    expect(ch.acks).toEqual([{ tag: 1, multiple: true }]);
  });

  it('hands a failed delivery back (nack, requeue) when its retry copy cannot be published', async () => {
    const published: Published[] = [];
    const f = fakeConsumer(async (p) => {
      published.push(p);
      throw new PublishError('no broker node is connected', 'disconnected');
    });
    const ch = new FakeChannel();
    await f.connect(ch);
    ch.deliver('a');
    await turn();
    f.fail('a', new Error('redis down'));
    await waitFor('the nack', () => (ch.nacks.length > 0 ? true : undefined), 2_000);
    // The copy would have counted this first attempt.
    expect(published).toMatchObject([{ exchange: '', routingKey: 'q', headers: { [RETRY_COUNT_HEADER]: 1 } }]);
    expect(ch.nacks).toEqual([1]);
    await turn();
    expect(ch.acks).toEqual([]);
  });
});

describe('holding a delivery through an outage (fake channel)', () => {
  const outage = () => new NotEnoughReplicasError('reserve', 0, 1);

  it('runs the handler again in hand, publishes no copy, counts no attempt, and acks once it succeeds', async () => {
    const published: Published[] = [];
    const f = fakeConsumer(async (p) => {
      published.push(p);
    });
    const ch = new FakeChannel();
    await f.connect(ch);
    ch.deliver('a');
    await turn();
    f.fail('a', outage());
    // Held 250 ms, then handed to the handler again: the same delivery, not a copy.
    await waitFor('the second run', () => (f.handled.length === 2 ? true : undefined), 2_000, 10);
    f.fail('a', outage());
    await waitFor('the third run', () => (f.handled.length === 3 ? true : undefined), 3_000, 10);
    expect(f.attempts).toEqual([1, 1, 1]);
    f.finish('a');
    await waitFor('the ack', () => (ch.acks.length > 0 ? true : undefined), 2_000);
    expect(published).toEqual([]);
    expect(ch.nacks).toEqual([]);
  });

  it('hands a held delivery back at once when the consumer stops', async () => {
    const f = fakeConsumer();
    const ch = new FakeChannel();
    await f.connect(ch);
    ch.deliver('a');
    await turn();
    f.fail('a', outage());
    await turn();
    const started = Date.now();
    await f.consumer.stop(5_000);
    // Not after the hold's pause, nor the stop timeout.
    expect(Date.now() - started).toBeLessThan(200);
    expect(ch.nacks).toEqual([1]);
    expect(ch.acks).toEqual([]);
    expect(f.handled).toEqual(['a']);
  });
});

describe('stopping a consumer (fake channel)', () => {
  it('does not consume again when a reconnect runs the setup while stop() waits for handlers', async () => {
    const f = fakeConsumer();
    const first = new FakeChannel();
    await f.connect(first);
    first.deliver('a');
    await turn();

    let stopped = false;
    const stopping = f.consumer.stop(5_000).then(() => (stopped = true));
    await turn();
    expect(first.cancelled).toEqual(['ctag-1']);

    // The connection drops while a is in hand; amqp-connection-manager reconnects and runs the
    // setup again. Consuming there would take deliveries nobody acks (stop() acks only on the
    // first channel), and they would be processed again elsewhere.
    first.lose();
    const second = new FakeChannel();
    await f.connect(second);
    expect(second.consumers).toHaveLength(0);
    expect(f.consumer.isConsuming()).toBe(false);

    // stop() still waits for a, then closes the channel.
    await turn();
    expect(stopped).toBe(false);
    f.finish('a');
    await stopping;
    expect(f.wrapper.closed).toBe(true);
    expect(f.handled).toEqual(['a']);
  });

  it('cancels a consume whose consume-ok arrives after stop() began', async () => {
    const f = fakeConsumer();
    const ch = new FakeChannel();
    const consumeOk = deferred();
    ch.consumeOk = consumeOk.promise;
    const setup = f.connect(ch);
    await turn();
    expect(ch.consumers).toHaveLength(1);

    // No consumer tag yet: stop() has nothing to cancel until the consume-ok arrives.
    const stopping = f.consumer.stop(5_000);
    await turn();
    consumeOk.resolve();
    await setup;
    await stopping;
    expect(ch.cancelled).toEqual(['ctag-1']);
    expect(f.wrapper.closed).toBe(true);
    expect(f.consumer.isConsuming()).toBe(false);
  });

  it('does not consume when the setup runs after stop() finished', async () => {
    // amqp-connection-manager finishes a connect that was under way when the wrapper closed.
    const f = fakeConsumer();
    await f.consumer.stop(1_000);
    const late = new FakeChannel();
    await f.connect(late);
    expect(late.consumers).toHaveLength(0);
    expect(late.closed).toBe(true);
  });

  it('does not hand a delivery that arrives once stop() began to the handler', async () => {
    // Between stop() and the broker's cancel-ok a delivery can still arrive; it goes back to the
    // queue when the channel closes, instead of being processed while the consumer shuts down.
    const f = fakeConsumer();
    const ch = new FakeChannel();
    await f.connect(ch);
    ch.deliver('a');
    await turn();
    const stopping = f.consumer.stop(5_000);
    ch.deliver('b');
    await turn();
    f.finish('a');
    await stopping;
    expect(f.handled).toEqual(['a']);
    expect(ch.acks).toEqual([{ tag: 1, multiple: true }]);
  });
});
