import type { IncomingMessage } from 'node:http';
import getRawBody from 'raw-body';
import { HttpProblem } from '@order-pipeline/shared';

/** Largest `POST /orders` body accepted (SPEC: at most 16 KiB). */
export const MAX_BODY_BYTES = 16 * 1024;

/**
 * True for `application/json`, with or without parameters; a `charset` parameter must name UTF-8
 * (JSON on the wire is UTF-8 only, RFC 8259), anything else would be decoded wrongly.
 */
export function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const [type, ...params] = header.split(';');
  if (type === undefined || type.trim().toLowerCase() !== 'application/json') return false;
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0) continue;
    if (param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const charset = param
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
    if (charset !== 'utf-8' && charset !== 'utf8') return false;
  }
  return true;
}

/** Throws a 415 problem unless the request carries plain (not compressed) JSON. */
export function requireJson(req: IncomingMessage): void {
  const type = req.headers['content-type'];
  if (!isJsonContentType(type)) {
    throw new HttpProblem(
      415,
      'Unsupported Media Type',
      `Content-Type must be application/json, got ${type === undefined ? 'none' : JSON.stringify(type)}`,
    );
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    throw new HttpProblem(
      415,
      'Unsupported Media Type',
      `Content-Encoding ${JSON.stringify(encoding)} is not supported; send the JSON uncompressed`,
    );
  }
}

function isRawBodyError(err: unknown): err is getRawBody.RawBodyError {
  return err instanceof Error && typeof (err as { type?: unknown }).type === 'string';
}

/**
 * Reads the body as UTF-8 text, at most `limit` bytes: a Content-Length over the limit is refused
 * before reading anything, a chunked body as soon as it passes the limit (413 either way).
 */
export async function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  let bytes: Buffer;
  try {
    // Read as bytes and decoded once: raw-body's `encoding` decodes through an iconv-lite stream
    // decoder made per request, several times the cost of the read itself.
    bytes = await getRawBody(req, { length: req.headers['content-length'] ?? null, limit });
  } catch (err) {
    // Discard what the client still sends, so the connection stays usable for its next request.
    req.resume();
    if (isRawBodyError(err) && err.type === 'entity.too.large') {
      throw new HttpProblem(413, 'Content Too Large', `The body must be at most ${limit} bytes`);
    }
    if (isRawBodyError(err) && err.status < 500) {
      // `errors` like every other 400 of POST /orders (the OpenAPI document's ValidationProblem).
      throw new HttpProblem(400, 'Bad Request', `The body could not be read: ${err.message}`, {
        errors: [{ path: '/', message: err.message }],
      });
    }
    throw err;
  }
  const text = bytes.toString('utf8');
  // A leading byte order mark is dropped, as iconv-lite's UTF-8 decoder did.
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** JSON.parse with a 400 problem (`errors` like a schema violation's) when the text is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const message = (err as Error).message;
    throw new HttpProblem(400, 'Malformed JSON', 'The body is not valid JSON', { errors: [{ path: '/', message }] });
  }
}
