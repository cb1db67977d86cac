// Checks an HTTP response against the OpenAPI document (shared/openapi.json): the operation
// documents the status, the documented required headers are present and valid, the Content-Type
// is one the response documents, and the body validates against that media type's schema (ajv,
// JSON Schema 2020-12, the dialect of OpenAPI 3.1, with the document's components).
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { OPENAPI_KEYWORDS, OPENAPI_SCHEMA_ID, openapiDocument } from '@order-pipeline/shared';

// ajv-formats is CommonJS; under NodeNext its default export may arrive wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => Ajv2020;

export interface ResponseToCheck {
  method: string;
  /** A concrete path (`/orders/o-1?x=1`) or a path template of the document (`/orders/{id}`). */
  path: string;
  status: number;
  headers: Headers | Record<string, string>;
  /** The body as received (text); JSON media types are parsed here. */
  body: string;
}

type Json = Record<string, unknown>;

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats(ajv);
ajv.addVocabulary(OPENAPI_KEYWORDS);
ajv.addSchema(openapiDocument, OPENAPI_SCHEMA_ID);
const compiled = new Map<string, ValidateFunction>();

/** The validator of the schema at a JSON Pointer of the document (compiled once). */
export function validatorAt(pointer: string): ValidateFunction {
  let v = compiled.get(pointer);
  if (!v) {
    v = ajv.compile({ $ref: `${OPENAPI_SCHEMA_ID}#${pointer}` });
    compiled.set(pointer, v);
  }
  return v;
}

const escapePointer = (part: string) => part.replace(/~/g, '~0').replace(/\//g, '~1');
const unescapePointer = (part: string) => part.replace(/~1/g, '/').replace(/~0/g, '~');

/** The value at a JSON Pointer of the document, following a `$ref` found there (and its pointer). */
function resolve(pointer: string): { value: Json; pointer: string } {
  let value: unknown = openapiDocument;
  for (const part of pointer.split('/').slice(1)) value = (value as Json | undefined)?.[unescapePointer(part)];
  const ref = (value as Json | undefined)?.$ref;
  if (typeof ref === 'string') {
    if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported, got ${ref}`);
    return resolve(ref.slice(1));
  }
  if (value === undefined || value === null || typeof value !== 'object') throw new Error(`nothing at #${pointer}`);
  return { value: value as Json, pointer };
}

/** The pointer of every `schema` of the document (media types, headers, parameters) and of every component schema. */
export function schemaPointers(): string[] {
  const found: string[] = [];
  const walk = (value: unknown, pointer: string): void => {
    if (value === null || typeof value !== 'object') return;
    for (const [key, child] of Object.entries(value)) {
      const at = `${pointer}/${escapePointer(key)}`;
      if (key === 'schema') found.push(at);
      else walk(child, at);
    }
  };
  walk(openapiDocument.paths, '/paths');
  for (const kind of ['responses', 'headers'] as const) walk(openapiDocument.components[kind], `/components/${kind}`);
  for (const name of Object.keys(openapiDocument.components.schemas)) found.push(`/components/schemas/${escapePointer(name)}`);
  return found;
}

/** The document's path template for a concrete path; literal paths win over templated ones. */
export function pathTemplateOf(path: string): string | undefined {
  const bare = path.split('?')[0] ?? path;
  const templates = Object.keys(openapiDocument.paths);
  if (templates.includes(bare)) return bare;
  return templates.find((t) => {
    if (!t.includes('{')) return false;
    const re = new RegExp(`^${t.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`);
    return re.test(bare);
  });
}

function headerOf(headers: ResponseToCheck['headers'], name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : headers[key];
}

function ajvErrors(v: ValidateFunction): string {
  return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ');
}

/** What is wrong with the response by the document; empty when it conforms. */
export function responseProblems(r: ResponseToCheck): string[] {
  const method = r.method.toLowerCase();
  const where = `${r.method.toUpperCase()} ${r.path} ${r.status}`;
  const template = pathTemplateOf(r.path);
  let responsePointer: string;
  if (template !== undefined && (openapiDocument.paths[template] as Json)[method] !== undefined) {
    const opPointer = `/paths/${escapePointer(template)}/${method}`;
    const responses = resolve(`${opPointer}/responses`).value;
    const key = [String(r.status), `${String(r.status)[0]}XX`, 'default'].find((k) => k in responses);
    if (key === undefined) return [`${where}: the operation does not document status ${r.status}`];
    responsePointer = `${opPointer}/responses/${key}`;
  } else if (r.status === 404 && template === undefined) {
    // Undocumented paths and methods answer the document's generic problems.
    responsePointer = '/components/responses/NotFound';
  } else if (r.status === 405 && template !== undefined) {
    responsePointer = '/components/responses/MethodNotAllowed';
  } else if (r.status === 501) {
    responsePointer = '/components/responses/NotImplemented';
  } else {
    return [`${where}: no operation ${r.method.toUpperCase()} ${template ?? r.path} in the document`];
  }

  const { value: response, pointer } = resolve(responsePointer);
  const problems: string[] = [];

  for (const name of Object.keys((response.headers ?? {}) as Json)) {
    const { value: header, pointer: headerPointer } = resolve(`${pointer}/headers/${escapePointer(name)}`);
    const value = headerOf(r.headers, name);
    if (value === undefined) {
      if (header.required === true) problems.push(`${where}: required header ${name} is missing`);
      continue;
    }
    if (!header.schema) continue;
    const schema = resolve(`${headerPointer}/schema`).value;
    // Header values are text; a numeric schema describes the number they spell.
    const typed = (schema.type === 'integer' || schema.type === 'number') && /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
    const v = validatorAt(`${headerPointer}/schema`);
    if (!v(typed)) problems.push(`${where}: header ${name}: ${JSON.stringify(value)} ${ajvErrors(v)}`);
  }

  const content = response.content as Json | undefined;
  if (!content) {
    if (r.body !== '') problems.push(`${where}: the response documents no body, got ${JSON.stringify(r.body.slice(0, 80))}`);
    return problems;
  }
  const contentType = headerOf(r.headers, 'content-type');
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (!mediaType || !(mediaType in content)) {
    problems.push(`${where}: Content-Type ${String(contentType)} is not one of ${Object.keys(content).join(', ')}`);
    return problems;
  }
  const mediaPointer = `${pointer}/content/${escapePointer(mediaType)}`;
  if (!resolve(mediaPointer).value.schema) return problems;
  let body: unknown = r.body;
  if (mediaType === 'application/json' || mediaType.endsWith('+json')) {
    try {
      body = JSON.parse(r.body);
    } catch {
      return [...problems, `${where}: the ${mediaType} body is not JSON: ${JSON.stringify(r.body.slice(0, 80))}`];
    }
  }
  const v = validatorAt(`${mediaPointer}/schema`);
  if (!v(body)) problems.push(`${where}: the body does not match its schema: ${ajvErrors(v)}`);
  if (mediaType === 'application/problem+json' && (body as Json | null)?.status !== r.status) {
    problems.push(`${where}: the problem's status ${String((body as Json | null)?.status)} is not the response's`);
  }
  return problems;
}

/** Throws, listing what is wrong, unless the response is as the document describes it. */
export function expectDocumented(r: ResponseToCheck): void {
  const problems = responseProblems(r);
  if (problems.length > 0) throw new Error(`response not as documented:\n${problems.join('\n')}`);
}

/** fetch, with the answer checked against the document first (its body read from a clone). */
export async function checkedFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(url, init);
  const { pathname, search } = new URL(url);
  const body = await res.clone().text();
  expectDocumented({ method: init.method ?? 'GET', path: pathname + search, status: res.status, headers: res.headers, body });
  return res;
}
