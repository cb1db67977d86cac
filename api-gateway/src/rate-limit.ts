import type { Middleware } from 'koa';
import { HttpProblem, countRequest, subjectOf, type Logger, type RedisClient } from '@order-pipeline/shared';

// RATE_LIMIT_PER_MINUTE per caller, counted in Redis so every gateway shares one count
// (rate-limit-1.lua: a fixed one-minute window from the caller's first request). The headers are
// those of the IETF httpapi draft draft-ietf-httpapi-ratelimit-headers-09 (structured fields):
//   RateLimit-Policy: "default";q=<limit>;w=60     RateLimit: "default";r=<left>;t=<seconds>
// sent on every answer of a limited route; over the limit, a 429 problem with Retry-After.

export const WINDOW_SECONDS = 60;

/** The caller a count belongs to: the token's subject when auth is on, else the client address. */
export function callerKey(subject: string | undefined, ip: string): string {
  return subject === undefined ? `ip:${ip}` : `sub:${subject}`;
}

/**
 * Runs after the auth guard (it needs the subject; a request refused there is not counted). When
 * Redis cannot count, the request goes through: the limit protects the service, and the route
 * itself answers 503 when Redis is down.
 */
export function rateLimit(redis: RedisClient, perMinute: number | undefined, log: Logger): Middleware {
  if (perMinute === undefined) return (_ctx, next) => next();
  const policy = `"default";q=${perMinute};w=${WINDOW_SECONDS}`;
  return async (ctx, next) => {
    const caller = callerKey(subjectOf(ctx), ctx.ip);
    let counted;
    try {
      counted = await countRequest(redis, caller, WINDOW_SECONDS * 1000);
    } catch (err) {
      log.debug({ err: (err as Error).message, caller }, 'rate limit not counted; letting the request through');
      return next();
    }
    const seconds = Math.max(1, Math.ceil(counted.msLeft / 1000));
    ctx.set('RateLimit-Policy', policy);
    ctx.set('RateLimit', `"default";r=${Math.max(0, perMinute - counted.count)};t=${seconds}`);
    if (counted.count > perMinute) {
      if (counted.count === perMinute + 1) log.info({ caller, limit: perMinute }, 'caller over its rate limit; answering 429');
      throw new HttpProblem(
        429,
        'Too Many Requests',
        `More than ${perMinute} requests in a minute from this caller; retry in ${seconds} s`,
        {},
        { 'Retry-After': String(seconds) },
      );
    }
    await next();
  };
}
