import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { AuthConfig } from './config.js';
import { HttpProblem } from './http.js';
import type { Logger } from './logger.js';

// Bearer tokens (RFC 6750) checked with jose: an HS256 secret or a JWKS (RS256, ES256), the
// token's `scope` claim (space-separated) naming what the caller may do. Off when no AuthConfig is
// given: every route is then open, as it always was. See docs/security.md.

export const SCOPES = ['orders:write', 'orders:read', 'inventory:write', 'inventory:read'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who called: the token's `sub` and its scopes. */
export interface Caller {
  subject: string;
  scopes: ReadonlySet<string>;
}

/** Leeway for exp and nbf against the issuer's clock. */
export const CLOCK_TOLERANCE_SECONDS = 5;
const REALM = 'order-pipeline';

export interface Authenticator {
  /** The caller of a verified token; throws a 401 (or, when the keys cannot be fetched, a 503) HttpProblem. */
  authenticate(authorization: string | undefined): Promise<Caller>;
}

/** The header value of a 401 (RFC 6750 section 3): no error code when no token was sent. */
function challenge(error?: 'invalid_token' | 'invalid_request', description?: string): string {
  const params = [`realm="${REALM}"`];
  if (error) params.push(`error="${error}"`);
  if (description) params.push(`error_description="${description.replace(/["\\]/g, '')}"`);
  return `Bearer ${params.join(', ')}`;
}

function unauthorized(detail: string, error?: 'invalid_token', description?: string): HttpProblem {
  return new HttpProblem(401, 'Unauthorized', detail, {}, { 'WWW-Authenticate': challenge(error, description) });
}

/** What a refused token is told: enough to fix it, nothing about the keys. */
function describeRefusal(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'the token is not valid yet';
    if (err.claim === 'iss') return 'the token has the wrong issuer';
    if (err.claim === 'aud') return 'the token has the wrong audience';
    return `the token's ${err.claim} claim is missing or invalid`;
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm that is not accepted';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature does not verify';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the issuer verifies the token';
  return 'the token is malformed';
}

/** The token of an `Authorization: Bearer <token>` header, undefined when there is none of that scheme. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization ?? '');
  return m ? m[1] : undefined;
}

export function createAuthenticator(auth: AuthConfig): Authenticator {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (auth.kind === 'secret') {
    key = new TextEncoder().encode(auth.secret);
    algorithms = ['HS256'];
  } else {
    // Fetched on first use and cached; an unknown `kid` refetches (at most every 30 s).
    key = createRemoteJWKSet(new URL(auth.jwksUrl), { timeoutDuration: 2000, cooldownDuration: 30_000 });
    algorithms = ['RS256', 'ES256'];
  }
  const options = {
    algorithms,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    // A token without an expiry would be good for ever; one without a subject names nobody.
    requiredClaims: ['exp', 'sub'],
    ...(auth.issuer ? { issuer: auth.issuer } : {}),
    ...(auth.audience ? { audience: auth.audience } : {}),
  };
  return {
    async authenticate(authorization) {
      if (authorization === undefined || authorization.trim() === '') {
        throw unauthorized('This endpoint needs an Authorization: Bearer token');
      }
      const token = bearerToken(authorization);
      if (token === undefined) {
        throw unauthorized('The Authorization header is not a Bearer token', 'invalid_token', 'not a Bearer token');
      }
      try {
        // `key` is one of two types; jwtVerify's overloads take each.
        const { payload } = typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
        const scope = typeof payload.scope === 'string' ? payload.scope : '';
        return { subject: String(payload.sub), scopes: new Set(scope.split(' ').filter((s) => s !== '')) };
      } catch (err) {
        // The key set could not be fetched: our outage, not the caller's fault.
        if (err instanceof joseErrors.JWKSTimeout || (auth.kind === 'jwks' && !(err instanceof joseErrors.JOSEError))) {
          throw new HttpProblem(503, 'Service Unavailable', 'The token keys cannot be fetched; retry shortly', {}, { 'Retry-After': '1' });
        }
        if (err instanceof joseErrors.JWKSInvalid) {
          throw new HttpProblem(503, 'Service Unavailable', 'The token key set is unusable; retry shortly', {}, { 'Retry-After': '1' });
        }
        const description = describeRefusal(err);
        throw unauthorized(`The bearer token was refused: ${description}`, 'invalid_token', description);
      }
    },
  };
}

const CALLER = Symbol('caller');

/** The authenticated caller of this request; undefined when auth is off (or not checked on this route). */
export function callerOf(ctx: Context): Caller | undefined {
  return (ctx.state as Record<symbol, Caller | undefined>)[CALLER];
}

/** The caller's subject, for logs and records: undefined when auth is off. */
export function subjectOf(ctx: Context): string | undefined {
  return callerOf(ctx)?.subject;
}

/**
 * A route's guard: 401 without a valid token, 403 without `scope`; it runs before the route reads
 * its body, so a refused request writes and publishes nothing. With no authenticator (auth off)
 * it lets everything through.
 */
export function requireScope(authenticator: Authenticator | undefined, scope: Scope, log?: Logger): Middleware {
  if (!authenticator) return (_ctx, next) => next();
  return async (ctx, next) => {
    let caller: Caller;
    try {
      caller = await authenticator.authenticate(ctx.get('authorization') || undefined);
    } catch (err) {
      if (err instanceof HttpProblem && err.status === 401)
        log?.info({ ip: ctx.ip, path: ctx.path, detail: err.detail }, 'request refused: 401');
      throw err;
    }
    if (!caller.scopes.has(scope)) {
      log?.info({ ip: ctx.ip, path: ctx.path, sub: caller.subject, scope }, 'request refused: 403');
      throw new HttpProblem(
        403,
        'Insufficient Scope',
        `The token of ${caller.subject} lacks the scope ${scope} this request needs`,
        { scope },
        { 'WWW-Authenticate': `Bearer realm="${REALM}", error="insufficient_scope", scope="${scope}"` },
      );
    }
    (ctx.state as Record<symbol, Caller>)[CALLER] = caller;
    await next();
  };
}

/** Constant-time comparison of a presented secret with the expected one (any lengths). */
export function secretsEqual(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The 401 of a /metrics request without the metrics token (METRICS_BEARER_TOKEN). */
export function checkMetricsToken(authorization: string | undefined, expected: string): void {
  const token = bearerToken(authorization);
  if (token !== undefined && secretsEqual(token, expected)) return;
  throw new HttpProblem(
    401,
    'Unauthorized',
    'GET /metrics needs Authorization: Bearer <METRICS_BEARER_TOKEN>',
    {},
    { 'WWW-Authenticate': token === undefined ? 'Bearer realm="metrics"' : 'Bearer realm="metrics", error="invalid_token"' },
  );
}
