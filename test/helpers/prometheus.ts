// Reading the Prometheus text exposition in tests.

/** The Accept header Prometheus sends when it scrapes. */
export const PROMETHEUS_ACCEPT = 'application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1';

/** `name{labels}` -> value of every sample line of a Prometheus text exposition. */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

/**
 * The value of the sample `name` whose labels include every one of `labels` (other labels, such
 * as the registry's default `service`, may be there too); undefined when there is none.
 */
export function sampleValue(all: Map<string, number>, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const [key, value] of all) {
    const brace = key.indexOf('{');
    if ((brace < 0 ? key : key.slice(0, brace)) !== name) continue;
    const have = brace < 0 ? [] : key.slice(brace + 1, -1).split(/,(?=[a-zA-Z_]+=")/);
    if (wanted.every((w) => have.includes(w))) return value;
  }
  return undefined;
}
