import { setTimeout as sleep } from 'node:timers/promises';
import type { ChannelWrapper } from 'amqp-connection-manager';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Logger } from '../logger.js';
import { orderIdOfMessageId } from '../messages.js';
import { exchanges } from '../topology.js';
import {
  ATTR,
  SpanKind,
  SpanStatusCode,
  endWithError,
  extractContext,
  processAttributes,
  traceHeaders,
  traceIdOf,
  type Span,
  type Tracer,
} from '../tracing.js';
import { AckBatcher } from './ack-batcher.js';
import {
  RETRY_COUNT_HEADER,
  attemptOf,
  decide,
  defaultBackoffMs,
  isLastAttempt,
  type Decision,
  type RetryLimits,
} from './failure-policy.js';
import { DEAD_LETTER_HEADERS, type BrokerObserver, type ConsumeOptions, type Consumer, type HandleOutcome, type Publish } from './types.js';

// One channel per consumer. Each delivery is handled, then settled as the failure policy decides
// (failure-policy.ts), and only ever on the channel it came on.

/** What a consumer needs of the broker client; a test hands it fakes of the same shape. */
export interface ConsumerParts {
  /** Opens the consumer's channel; amqp-connection-manager runs `setup` on every (re)connect. */
  createChannel(options: { name: string; setup: (ch: Channel) => Promise<void> }): Pick<ChannelWrapper, 'close' | 'on'>;
  isConnected(): boolean;
  /** True once the whole broker client is closing. */
  isClosing(): boolean;
  reconnect(): void;
  /** See BrokerConnection.watch. */
  watch(ch: Channel, name: string, closedOnPurpose: () => boolean): void;
  /** Declares the topology on a fresh channel. */
  prepare(ch: Channel): Promise<void>;
  /** Publishes retry copies and dead letters (confirmed). */
  publish: Publish;
  log: Logger;
  tracer: Tracer;
  /** The service's name, for the channel's name. */
  name: string;
  observer?: BrokerObserver;
}

/** A delivery in hand, as the failure policy's decision is carried out. */
interface Delivery {
  msg: ConsumeMessage;
  span: Span;
  attempt: number;
  log: Logger;
  /** Records how the delivery ended (metrics, span). */
  handled: (outcome: HandleOutcome) => void;
}

export function startConsumer(deps: ConsumerParts, c: ConsumeOptions): Consumer {
  const { observer, tracer, publish } = deps;
  const limits: RetryLimits = { maxAttempts: c.maxAttempts ?? 5, backoffMs: c.backoffMs ?? defaultBackoffMs };
  const clog = deps.log.child({ queue: c.queue });
  observer?.consuming(c.queue);
  let current: { ch: Channel; tag: string; acks: AckBatcher } | undefined;
  let stopping = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;

  // Acks only on the channel the delivery came on: after a failover that channel is gone and
  // the broker redelivers the message, which the handler's once-only check absorbs. Acking it
  // on the new channel would close that channel ("unknown delivery tag").
  const settle = (ch: Channel, msg: ConsumeMessage, how: 'ack' | 'requeue') => {
    if (current?.ch !== ch) {
      clog.debug({ messageId: msg.properties.messageId }, 'delivery channel is gone; the broker redelivers');
      return;
    }
    if (how === 'ack') {
      current.acks.done(msg.fields.deliveryTag);
      return;
    }
    current.acks.forget(msg.fields.deliveryTag);
    try {
      ch.nack(msg, false, true);
    } catch (err) {
      clog.debug({ err: (err as Error).message }, 'settle on a closed channel');
    }
  };

  const deadLetter = async (msg: ConsumeMessage, span: Span, reason: string, error: string) => {
    // The dead letter's publish span is a child of this delivery's span, in the same trace.
    const headers = traceHeaders(span, {
      ...msg.properties.headers,
      [DEAD_LETTER_HEADERS.reason]: reason,
      [DEAD_LETTER_HEADERS.error]: error.slice(0, 1000),
      [DEAD_LETTER_HEADERS.queue]: c.queue,
      [DEAD_LETTER_HEADERS.at]: new Date().toISOString(),
    });
    await publish(exchanges.dlx, c.queue, msg.content, { ...msg.properties, headers });
  };

  // A copy back to this queue only (default exchange) carrying the failed attempts before it;
  // the original is acked once the copy is confirmed. The broker's own delivery count starts
  // again with the copy.
  const retryCopy = async (msg: ConsumeMessage, span: Span, failedAttempts: number) => {
    const { 'x-delivery-count': _count, ...kept } = msg.properties.headers ?? {};
    const headers = traceHeaders(span, { ...kept, [RETRY_COUNT_HEADER]: failedAttempts });
    await publish('', c.queue, msg.content, { ...msg.properties, headers });
  };

  // Each delivery is handled in its own CONSUMER span, the child of the publish span whose
  // context the message carries; the handler gets it (ctx.span), and retry copies and dead
  // letters are published as its children.
  const onMessage = (ch: Channel, msg: ConsumeMessage) => {
    const messageId = msg.properties.messageId as string | undefined;
    const orderId = orderIdOfMessageId(messageId);
    // The headers name the parent: the publish span of whoever sent the message.
    const parent = extractContext(msg.properties.headers);
    const span = tracer.startSpan(
      `${c.queue} process`,
      { kind: SpanKind.CONSUMER, attributes: processAttributes(c.queue, messageId, orderId) },
      parent,
    );
    return handleDelivery(ch, msg, span, messageId, orderId).then(
      () => span.end(),
      (err: unknown) => endWithError(span, err),
    );
  };

  const handleDelivery = async (
    ch: Channel,
    msg: ConsumeMessage,
    span: Span,
    messageId: string | undefined,
    orderId: string | undefined,
  ) => {
    inFlight++;
    const attempt = attemptOf(msg);
    observer?.delivered(c.queue, attempt > 1 || msg.fields.redelivered);
    const traceId = traceIdOf(span);
    const mlog = clog.child({ messageId, attempt, ...(orderId ? { orderId } : {}), ...(traceId ? { traceId } : {}) });
    const started = performance.now();
    const handled = (outcome: HandleOutcome) => {
      observer?.handled(c.queue, outcome, (performance.now() - started) / 1000);
      span.setAttribute(ATTR.outcome, outcome);
    };
    try {
      let failure: Error | undefined;
      let decision: Decision;
      for (let holds = 0; ; holds++) {
        failure = undefined;
        try {
          await c.handler(msg, { attempt, lastAttempt: isLastAttempt(attempt, limits), span });
        } catch (err) {
          // Whatever was thrown is a failure, even a thrown undefined.
          failure = err instanceof Error ? err : new Error(String(err));
          span.recordException(failure);
          span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
        }
        decision = decide(failure, attempt, limits, holds);
        if (decision.kind !== 'hold') break;
        // Redis or the broker is down: the delivery stays in hand, uncounted, and the handler runs
        // again after a bounded backoff. The prefetch window fills with held deliveries, so the
        // broker sends no more until the outage ends (no message cycles through the queue).
        if (holds === 0) mlog.warn({ err: failure?.message }, 'a dependency is unreachable; holding the delivery until it is back');
        if (!(await holdFor(decision.delayMs)) || current?.ch !== ch) {
          // Stopping, or the channel is gone: the broker redelivers it (to us or another consumer).
          handled('retry');
          settle(ch, msg, 'requeue');
          return;
        }
      }
      await carryOut(decision, failure?.message ?? '', { msg, span, attempt, log: mlog, handled });
      settle(ch, msg, 'ack');
    } catch (err) {
      // The retry copy or dead letter could not be published (broker trouble): hand the message
      // back after a pause; quorum queues' delivery limit bounds how often this can happen.
      mlog.warn({ err: (err as Error).message }, 'could not route the failed message; requeueing');
      await sleep(limits.backoffMs(attempt));
      settle(ch, msg, 'requeue');
    } finally {
      inFlight--;
      if (inFlight === 0) idle?.();
    }
  };

  // Wakes held deliveries at once when stop() begins.
  const stopSignal = new AbortController();
  /** Sleeps `ms`; false when stop() began meanwhile. */
  const holdFor = async (ms: number): Promise<boolean> => {
    if (stopping) return false;
    try {
      await sleep(ms, undefined, { signal: stopSignal.signal });
      return !stopping;
    } catch {
      return false;
    }
  };

  /** Does what the policy decided; resolves once the delivery may be acked. */
  const carryOut = async (decision: Exclude<Decision, { kind: 'hold' }>, error: string, d: Delivery) => {
    const { msg, span, attempt, log: mlog, handled } = d;
    switch (decision.kind) {
      case 'ack':
        handled('ack');
        return;
      case 'dead-letter':
        handled('dead_letter');
        if (decision.reason === 'attempts_exhausted') mlog.error({ err: error }, 'attempts exhausted; dead-lettering');
        else mlog.warn({ reason: decision.reason, err: error }, 'poison message; dead-lettering');
        await deadLetter(msg, span, decision.reason, error);
        observer?.deadLettered(c.queue, decision.reason);
        return;
      case 'retry':
        handled('retry');
        if (decision.counts) mlog.warn({ err: error, retryInMs: decision.delayMs }, 'handling failed; retrying later');
        else mlog.debug({ reason: error, retryInMs: decision.delayMs }, 'not yet; retrying later without counting an attempt');
        await sleep(decision.delayMs);
        // The copy carries the failed attempts before it: this one too when it counts.
        await retryCopy(msg, span, decision.counts ? attempt : attempt - 1);
        return;
    }
  };

  // A setup under way (a connect, or a reconnect), so that stop() can wait for it.
  let settingUp: Promise<void> | undefined;
  // Set once stop() is done with the channel wrapper (closing it).
  let stopped = false;

  const setup = async (ch: Channel) => {
    ch.on('close', () => {
      if (current?.ch === ch) current = undefined;
    });
    deps.watch(ch, `consume:${c.queue}`, () => stopping);
    // A setup that runs once stop() began (a reconnect meanwhile) must not consume: stop() acks
    // only on the channel it had, so whatever this one took would be handled, never acked, and
    // handled again elsewhere. amqp-connection-manager can even finish a connect that was under
    // way when the wrapper closed: nobody else would close that channel.
    const notNow = async () => {
      if (stopped) await ch.close().catch(() => undefined);
    };
    if (stopping) return notNow();
    await deps.prepare(ch);
    await ch.prefetch(c.prefetch);
    if (stopping) return notNow();
    const acks = new AckBatcher(ch, (err) => clog.debug({ err: err.message }, 'settle on a closed channel'));
    // Deliveries can arrive before consume() resolves: they are tracked from the first one
    // (the consumer counts as consuming once it has its tag).
    current = { ch, tag: '', acks };
    const { consumerTag } = await ch.consume(c.queue, (msg) => {
      if (msg === null) {
        // Cancelled by the broker (queue deleted, or its node went away).
        clog.warn('consumer cancelled by the broker; reconnecting');
        if (!stopping && !deps.isClosing()) deps.reconnect();
        return;
      }
      acks.delivered(msg.fields.deliveryTag);
      // Once stopping, a delivery (before the cancel-ok) stays unacked: it goes back to the
      // queue when the channel closes, and being in hand, no multiple ack takes it.
      if (stopping) return;
      void onMessage(ch, msg);
    });
    if (current?.ch !== ch) return;
    if (stopping) {
      // stop() began while the consume-ok was on its way: it had no tag to cancel.
      await ch.cancel(consumerTag).catch(() => undefined);
      return;
    }
    current = { ch, tag: consumerTag, acks };
    clog.info({ prefetch: c.prefetch }, 'consuming');
  };

  const wrapper = deps.createChannel({
    name: `${deps.name}:consume:${c.queue}`,
    setup: (ch: Channel) => {
      const run = setup(ch);
      settingUp = run;
      return run.finally(() => {
        if (settingUp === run) settingUp = undefined;
      });
    },
  });
  wrapper.on('error', (err: Error) => clog.error({ err: err.message }, 'consumer setup failed'));

  return {
    isConsuming: () => !stopping && current !== undefined && current.tag !== '' && deps.isConnected(),
    async stop(timeoutMs = 10_000) {
      stopping = true;
      stopSignal.abort();
      let timer: NodeJS.Timeout | undefined;
      const timeUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      try {
        // A setup under way sees `stopping` and cancels what it started; wait for it.
        if (settingUp) await Promise.race([settingUp.catch(() => undefined), timeUp]);
        const cur = current;
        if (cur?.tag) await cur.ch.cancel(cur.tag).catch(() => undefined);
        if (inFlight > 0) await Promise.race([new Promise<void>((r) => (idle = r)), timeUp]);
        // What was handled is acked now, before the channel closes; unsettled deliveries go back
        // to the queue when it does. (Handlers of a channel that has gone since are settled by
        // the broker's redelivery, never on another channel.)
        current?.acks.flush();
      } finally {
        clearTimeout(timer);
        current = undefined;
        stopped = true;
        await wrapper.close().catch(() => undefined);
      }
    },
  };
}
