import { keys, queues, type Broker, type Logger, type Metrics, type RedisClient } from '@order-pipeline/shared';

// Admission control: a 202 promises the order will be processed, and an order that waits in
// orders.queue longer than ORDER_TTL_MS is expired instead. So the gateway refuses (503) while the
// backlog could not be drained within the time to live at the rate the processors really achieve,
// and whenever the backlog reaches MAX_BACKLOG.
//
// Nothing here is on the request path: a background sampler reads the queue's depth (a passive
// check on the broker) and the processors' decision counters (one MGET on Redis) every
// SAMPLE_MS, shared by all requests; a request only reads the last verdict.

/** How often the backlog and the decision counters are read. */
export const SAMPLE_MS = 250;
/** The drain rate is measured over the busy intervals of this recent past. */
export const WINDOW_MS = 5000;
/** ...and over this shorter recent past, the lower of the two counting (see sample()). */
export const SHORT_WINDOW_MS = 1500;
/**
 * The share of ORDER_TTL_MS the backlog may take to drain. The rest is margin for what the
 * samples do not see: the deliveries the processors hold (prefetch), the orders accepted between
 * two samples, a processor lost while the backlog waits.
 */
export const TTL_SHARE = 0.5;
/** A sample older than this is no verdict (the broker or Redis stopped answering the sampler). */
export const STALE_MS = 5000;

export interface Sample {
  /** Date.now() when it was read. */
  at: number;
  /** Ready messages in orders.queue. */
  backlog: number;
  /** Orders the processors decided so far (created plus rejected), across every processor. */
  decided: number;
}

export type Verdict =
  { admit: true } | { admit: false; reason: 'max_backlog' | 'drain_time'; backlog: number; retryAfterSeconds: number; detail: string };

/**
 * The processors' drain rate (orders/s) over the busy intervals of `samples` (both ends with a
 * backlog: the processors were never short of work, so what they decided is what they can do),
 * or undefined when the window holds no busy interval or nothing was decided in them. An idle interval only shows the arrival
 * rate, which says nothing of the processors' capacity.
 */
export function drainRate(samples: readonly Sample[]): number | undefined {
  let decided = 0;
  let ms = 0;
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1] as Sample;
    const b = samples[i] as Sample;
    if (a.backlog === 0 || b.backlog === 0 || b.at <= a.at) continue;
    // A counter reset (Redis flushed) is no negative rate.
    decided += Math.max(0, b.decided - a.decided);
    ms += b.at - a.at;
  }
  // Nothing decided while work waited: the processors are away (restarting, or none runs), which
  // says nothing of what they drain when they run. The last rate measured stands meanwhile, so a
  // short pause sheds nothing and a long one sheds once the backlog outgrows that rate.
  return ms === 0 || decided === 0 ? undefined : (decided * 1000) / ms;
}

/** The verdict for the latest sample: pure, so its table of cases is unit-tested. */
export function verdict(latest: Sample, rate: number | undefined, limits: { orderTtlMs: number; maxBacklog: number }): Verdict {
  const { backlog } = latest;
  if (backlog >= limits.maxBacklog) {
    const excess = backlog - limits.maxBacklog + 1;
    return {
      admit: false,
      reason: 'max_backlog',
      backlog,
      retryAfterSeconds: retryAfter(excess, rate),
      detail: `${backlog} orders are waiting to be processed, the most this service takes (MAX_BACKLOG ${limits.maxBacklog}); retry later`,
    };
  }
  // No busy interval yet: the processors have kept up with everything so far.
  if (rate === undefined || backlog === 0) return { admit: true };
  const budget = (limits.orderTtlMs / 1000) * TTL_SHARE;
  const drainSeconds = rate > 0 ? backlog / rate : Infinity;
  if (drainSeconds <= budget) return { admit: true };
  const excess = backlog - rate * budget;
  return {
    admit: false,
    reason: 'drain_time',
    backlog,
    retryAfterSeconds: retryAfter(excess, rate),
    detail:
      rate > 0
        ? `${backlog} orders are waiting and the processors decide about ${Math.round(rate)} a second: ` +
          `a new order could not be processed within its time to live; retry later`
        : `${backlog} orders are waiting and the processors decide none: a new order could not be processed within its time to live; retry later`,
  };
}

/** Seconds until the excess should have drained at `rate`, 1 to 30. */
function retryAfter(excess: number, rate: number | undefined): number {
  if (!rate || rate <= 0) return 5;
  return Math.min(30, Math.max(1, Math.ceil(excess / rate)));
}

export interface Admission {
  /** The verdict of the latest sample; admits while no fresh sample exists (see STALE_MS). */
  check(): Verdict;
  /** The latest sample and the measured drain rate, for the metrics and the tests. */
  state(): { latest: Sample | undefined; rate: number | undefined };
  stop(): void;
}

export interface AdmissionOptions {
  broker: Broker;
  redis: RedisClient;
  log: Logger;
  orderTtlMs: number;
  maxBacklog: number;
  sampleMs?: number;
}

/**
 * Starts the sampler. A request is never refused for want of a sample: when the sampler cannot
 * read the queue or the counters, the broker or Redis is down, and the gateway's own checks
 * answer 503 for that.
 */
export function startAdmission(opts: AdmissionOptions): Admission {
  const { broker, redis, log } = opts;
  const sampleMs = opts.sampleMs ?? SAMPLE_MS;
  const channel = broker.channel('admission');
  const samples: Sample[] = [];
  let rate: number | undefined;
  let current: Verdict = { admit: true };
  let sampling = false;
  let stopped = false;
  let lastError: string | undefined;

  async function sample(): Promise<void> {
    if (sampling || stopped || !broker.isConnected()) return;
    sampling = true;
    try {
      const [q, counts] = await Promise.all([
        withTimeout(channel.checkQueue(queues.orders), 2000),
        withTimeout(redis.mget(keys.processedCount, keys.stats.rejected), 2000),
      ]);
      const s: Sample = { at: Date.now(), backlog: q.messageCount, decided: counts.reduce((n, v) => n + Number(v ?? 0), 0) };
      samples.push(s);
      while (samples.length > 0 && (samples[0] as Sample).at < s.at - WINDOW_MS) samples.shift();
      // The lower of the rate over the whole window and over its last SHORT_WINDOW_MS: a drain
      // that slows (a processor lost, starved of CPU) is believed at once, a faster one only once
      // it has lasted. The last measured capacity stands through idle spells: it is what a burst
      // meets first.
      const rates = [drainRate(samples), drainRate(samples.filter((x) => x.at >= s.at - SHORT_WINDOW_MS))].filter(
        (r): r is number => r !== undefined,
      );
      rate = rates.length > 0 ? Math.min(...rates) : rate;
      const next = verdict(s, rate, opts);
      if (next.admit !== current.admit)
        log.warn(
          { backlog: s.backlog, drainRate: rate, ...(next.admit ? {} : { reason: next.reason }) },
          next.admit ? 'admitting orders again' : 'refusing new orders: backlog',
        );
      current = next;
      lastError = undefined;
    } catch (err) {
      const message = (err as Error).message;
      if (message !== lastError) log.debug({ err: message }, 'admission sample failed');
      lastError = message;
    } finally {
      sampling = false;
    }
  }

  const timer = setInterval(() => void sample(), sampleMs);
  timer.unref();
  void sample();

  return {
    check() {
      const latest = samples.at(-1);
      if (!latest || Date.now() - latest.at > STALE_MS) return { admit: true };
      return current;
    },
    state: () => ({ latest: samples.at(-1), rate }),
    stop() {
      stopped = true;
      clearInterval(timer);
      void channel.close().catch(() => undefined);
    },
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The admission state at each scrape: gateway_admission_refusing (1 while POST /orders is refused
 * for the backlog), gateway_backlog_messages (ready messages in orders.queue at the last sample)
 * and gateway_drain_rate_per_second (the processors' measured rate; NaN until a busy interval
 * was measured). Read from the sampler's last verdict, so a scrape costs nothing on the broker.
 */
export function admissionMetrics(metrics: Metrics, admission: Admission): void {
  metrics.gauge('gateway_admission_refusing', '1 while POST /orders is refused for the backlog (503 overloaded), else 0', () =>
    admission.check().admit ? 0 : 1,
  );
  metrics.gauge(
    'gateway_backlog_messages',
    "Ready messages in orders.queue at the admission sampler's last sample (NaN before the first)",
    () => admission.state().latest?.backlog ?? Number.NaN,
  );
  metrics.gauge(
    'gateway_drain_rate_per_second',
    'Orders the processors decide a second, measured over busy intervals (NaN until measured)',
    () => admission.state().rate ?? Number.NaN,
  );
}
