// history:<id>'s entries as the HTTP answers show them (GET /orders/{id} on the gateway, the
// dashboard's GET /orders/{id}/history): JSON objects, oldest first. The scripts write every entry;
// an entry that is not a JSON object (written by hand) is left out rather than failing the answer.

export function parseHistory(raw: readonly string[]): Record<string, unknown>[] {
  const entries: Record<string, unknown>[] = [];
  for (const one of raw) {
    try {
      const entry: unknown = JSON.parse(one);
      if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) entries.push(entry as Record<string, unknown>);
    } catch {
      // Not one of ours: nothing to show.
    }
  }
  return entries;
}
