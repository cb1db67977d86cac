// The OpenAPI document (shared/openapi.json): valid by an OpenAPI 3.1 validator, its schemas
// strict JSON Schema 2020-12, the source of the order schema, and the test helper that checks
// responses against it able to fail.
import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { ID_PATTERN, OPENAPI_TEXT, openapiDocument, validateOrder } from '@order-pipeline/shared';
import { pathTemplateOf, responseProblems, schemaPointers, validatorAt, type ResponseToCheck } from '../../test/helpers/openapi.js';

const json = { 'content-type': 'application/json; charset=utf-8' };
const problem = { 'content-type': 'application/problem+json' };

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document whose references all resolve', async () => {
    const validator = new Validator();
    const result = await validator.validate(JSON.parse(OPENAPI_TEXT) as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(() => validator.resolveRefs()).not.toThrow();
  });

  it('has only strict JSON Schema 2020-12 schemas (ajv strict mode compiles each)', () => {
    const pointers = schemaPointers();
    expect(pointers.length).toBeGreaterThan(40);
    for (const pointer of pointers) expect(() => validatorAt(pointer), pointer).not.toThrow();
  });

  it('is the file in the repository, served as it is', () => {
    expect(OPENAPI_TEXT).toBe(readFileSync(new URL('../openapi.json', import.meta.url), 'utf8'));
  });

  it('is where the order schema comes from: POST /orders takes its Order, ids are its Id', () => {
    const post = openapiDocument.paths['/orders']?.post as { requestBody: { content: Record<string, { schema: unknown }> } };
    expect(post.requestBody.content['application/json']?.schema).toEqual({ $ref: '#/components/schemas/Order' });
    expect(ID_PATTERN).toBe(openapiDocument.components.schemas.Id.pattern);
    // The limits the document states are the ones enforced.
    const qty = (openapiDocument.components.schemas.Order as { properties: { qty: { maximum: number } } }).properties.qty;
    expect(validateOrder({ id: 'o', sku: 's', qty: qty.maximum }).ok).toBe(true);
    expect(validateOrder({ id: 'o', sku: 's', qty: qty.maximum + 1 })).toEqual({
      ok: false,
      errors: [{ path: '/qty', message: `must be <= ${qty.maximum}` }],
    });
  });

  it('documents a problem body and a status for every 4xx and 5xx response', () => {
    for (const [template, item] of Object.entries(openapiDocument.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if (method === 'servers' || method === 'parameters') continue;
        const responses = (op as { responses: Record<string, { $ref?: string; content?: Record<string, unknown> }> }).responses;
        for (const [status, response] of Object.entries(responses)) {
          if (Number(status) < 400 || template === '/readyz') continue;
          const content = response.$ref ? undefined : response.content;
          if (content) expect(Object.keys(content), `${method} ${template} ${status}`).toEqual(['application/problem+json']);
          else expect(response.$ref, `${method} ${template} ${status}`).toMatch(/^#\/components\/responses\//);
        }
      }
    }
  });
});

describe('the response checker (test/helpers/openapi.ts)', () => {
  const accepted: ResponseToCheck = {
    method: 'POST',
    path: '/orders',
    status: 202,
    headers: { ...json, location: '/orders/o-1' },
    body: JSON.stringify({ id: 'o-1', sku: 's', qty: 1, status: 'accepted', message: 'Order received: o-1' }),
  };

  it('passes a response as documented', () => {
    expect(responseProblems(accepted)).toEqual([]);
    expect(
      responseProblems({
        method: 'GET',
        path: '/orders/o-1',
        status: 404,
        headers: problem,
        body: JSON.stringify({ type: '/problems/order-not-found', title: 'Order Not Found', status: 404, detail: 'No order with id o-1' }),
      }),
    ).toEqual([]);
  });

  it('maps concrete paths to their templates, literal ones first', () => {
    expect(pathTemplateOf('/orders/o-1')).toBe('/orders/{id}');
    expect(pathTemplateOf('/orders')).toBe('/orders');
    expect(pathTemplateOf('/metrics?sku=x')).toBe('/metrics');
    expect(pathTemplateOf('/orders/a/b')).toBeUndefined();
  });

  it.each<[string, Partial<ResponseToCheck>, RegExp]>([
    ['an undocumented status', { status: 201 }, /does not document status 201/],
    ['a missing required header', { headers: json }, /required header Location is missing/],
    ['a header against its schema', { headers: { ...json, location: 'elsewhere' } }, /header Location/],
    ['another content type', { headers: { 'content-type': 'text/plain', location: '/orders/o-1' } }, /Content-Type text\/plain/],
    ['a body that is not JSON', { body: 'accepted' }, /not JSON/],
    ['a field missing from the body', { body: JSON.stringify({ id: 'o-1', sku: 's', qty: 1, status: 'accepted' }) }, /message/],
    [
      'a field the schema does not have',
      { body: JSON.stringify({ id: 'o-1', sku: 's', qty: 1, status: 'accepted', message: 'm', extra: 1 }) },
      /additional properties/,
    ],
    ['an operation not in the document', { method: 'PATCH', path: '/healthz', status: 200 }, /no operation PATCH \/healthz/],
  ])('rejects %s', (_name, change, message) => {
    const problems = responseProblems({ ...accepted, ...change });
    expect(problems.join('\n')).toMatch(message);
  });

  it('rejects a problem of an undocumented type, or whose status is not the response status', () => {
    const body = { type: '/problems/no-such-thing', title: 'Order Not Found', status: 404, detail: 'd' };
    const get = { method: 'GET', path: '/orders/o-1', status: 404, headers: problem };
    expect(responseProblems({ ...get, body: JSON.stringify(body) }).join('\n')).toMatch(/\/type/);
    expect(
      responseProblems({ ...get, body: JSON.stringify({ ...body, type: '/problems/order-not-found', status: 400 }) }).join('\n'),
    ).toMatch(/status 400 is not the response's/);
  });

  it('rejects a 503 without Retry-After, and a Retry-After that is not a number of seconds', () => {
    const body = JSON.stringify({ type: '/problems/service-unavailable', title: 'Service Unavailable', status: 503, detail: 'd' });
    const base = { method: 'POST', path: '/orders', status: 503, body };
    expect(responseProblems({ ...base, headers: problem }).join('\n')).toMatch(/Retry-After is missing/);
    expect(responseProblems({ ...base, headers: { ...problem, 'retry-after': 'soon' } }).join('\n')).toMatch(/header Retry-After/);
    expect(responseProblems({ ...base, headers: { ...problem, 'retry-after': '1' } })).toEqual([]);
  });
});
