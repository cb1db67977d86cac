import type { Channel, Message } from 'amqplib';

/**
 * Acks a channel's handled deliveries in batches. Handlers run concurrently and finish in any
 * order; once per turn of the event loop, the handled deliveries before the oldest one still in
 * hand are acked with one `multiple` ack, and any handled after it one by one (a multiple ack
 * would take the one in hand with them). For quorum queues every ack is a log entry on the
 * broker, so one ack for many deliveries saves the broker most of that work. Nothing is acked
 * before its handler has finished.
 */
export class AckBatcher {
  /** Delivery tags in delivery (= increasing) order, true once handled. */
  private readonly tags = new Map<number, boolean>();
  private scheduled = false;

  constructor(
    private readonly ch: Pick<Channel, 'ack'>,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  delivered(tag: number): void {
    this.tags.set(tag, false);
  }

  /** The delivery's effect is stored: ack it (soon, with others). */
  done(tag: number): void {
    if (!this.tags.has(tag)) return;
    this.tags.set(tag, true);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** The delivery is settled otherwise (nack): never part of a multiple ack. */
  forget(tag: number): void {
    this.tags.delete(tag);
  }

  /** Sends the acks of every handled delivery now. */
  flush(): void {
    this.scheduled = false;
    let upTo: number | undefined;
    const single: number[] = [];
    let blocked = false;
    for (const [tag, handled] of this.tags) {
      if (!handled) blocked = true;
      else if (blocked) single.push(tag);
      else upTo = tag;
    }
    try {
      if (upTo !== undefined) this.ch.ack(ackable(upTo), true);
      for (const tag of single) this.ch.ack(ackable(tag), false);
    } catch (err) {
      this.onError(err as Error);
    }
    if (upTo !== undefined) {
      for (const [tag, handled] of this.tags) {
        if (tag > upTo) break;
        if (handled) this.tags.delete(tag);
      }
    }
    for (const tag of single) this.tags.delete(tag);
  }
}

/** ack() reads only the delivery tag. */
function ackable(deliveryTag: number): Message {
  return { fields: { deliveryTag } } as Message;
}
