import { readFileSync } from 'node:fs';

// The HTTP contract: one OpenAPI 3.1 document, shared/openapi.json. Read at run time relative to
// this module, as ../lua is, so the sources (tests) and shared/dist (services, image) find it.

/** The parts of the document the code reads; the rest is for people and tools. */
export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
  components: {
    schemas: Record<string, Record<string, unknown>> & {
      Id: { pattern: string };
      ProblemType: { oneOf: { const: string; title: string; description: string }[] };
    };
    responses: Record<string, unknown>;
    headers: Record<string, unknown>;
  };
}

/** The document's bytes, as served at GET /openapi.json. */
export const OPENAPI_TEXT = readFileSync(new URL('../openapi.json', import.meta.url), 'utf8');
export const openapiDocument = JSON.parse(OPENAPI_TEXT) as OpenApiDocument;

/** The key ajv knows the document by: `$ref: '<OPENAPI_SCHEMA_ID>#/components/schemas/Order'`. */
export const OPENAPI_SCHEMA_ID = 'openapi.json';

/** The document's top-level fields, declared to ajv so a strict ajv accepts the document as a schema resource. */
export const OPENAPI_KEYWORDS = [
  'openapi',
  'info',
  'jsonSchemaDialect',
  'servers',
  'paths',
  'webhooks',
  'components',
  'security',
  'tags',
  'externalDocs',
];
