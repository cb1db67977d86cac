/**
 * Turns a call that takes many items into one that takes a single item: calls made during one
 * turn of the event loop are collected and sent together on the next (setImmediate), in order,
 * at most `maxBatch` per call. Each caller gets its own item's result, or the batch's error.
 *
 * Why: under load the gateway has dozens of requests between two event-loop turns, each wanting
 * the same Lua script. One script call for all of them costs the client and Redis one command,
 * one write and one reply instead of dozens, and it waits at most one turn. When requests arrive
 * one at a time, every batch holds one item and nothing changes.
 */
export function createBatcher<I, R>(run: (items: I[]) => Promise<R[]>, maxBatch = 256): (item: I) => Promise<R> {
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`maxBatch must be a positive integer, got ${maxBatch}`);
  interface Waiting {
    item: I;
    resolve: (result: R) => void;
    reject: (err: unknown) => void;
  }
  let waiting: Waiting[] = [];

  const send = async (batch: Waiting[]) => {
    try {
      const results = await run(batch.map((w) => w.item));
      if (results.length !== batch.length) throw new Error(`a batch of ${batch.length} got ${results.length} results`);
      batch.forEach((w, i) => w.resolve(results[i] as R));
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  };
  const flush = () => {
    const all = waiting;
    waiting = [];
    for (let i = 0; i < all.length; i += maxBatch) void send(all.slice(i, i + maxBatch));
  };

  return (item) =>
    new Promise<R>((resolve, reject) => {
      if (waiting.push({ item, resolve, reject }) === 1) setImmediate(flush);
    });
}
