import { describe, expect, it } from 'vitest';
import { createBatcher } from '../src/batch.js';

describe('createBatcher', () => {
  it('sends the calls of one event-loop turn together, in order, each caller getting its own result', async () => {
    const batches: number[][] = [];
    const double = createBatcher(async (items: number[]) => {
      batches.push(items);
      return items.map((n) => n * 2);
    });
    const first = await Promise.all([double(1), double(2), double(3)]);
    const second = await double(4);
    expect(first).toEqual([2, 4, 6]);
    expect(second).toBe(8);
    expect(batches).toEqual([[1, 2, 3], [4]]);
  });

  it('splits a turn into calls of at most maxBatch items', async () => {
    const sizes: number[] = [];
    const echo = createBatcher(async (items: number[]) => {
      sizes.push(items.length);
      return items;
    }, 4);
    const all = Array.from({ length: 10 }, (_, i) => i);
    expect(await Promise.all(all.map((n) => echo(n)))).toEqual(all);
    expect(sizes).toEqual([4, 4, 2]);
  });

  it('rejects every caller of a failed batch with its error, and later batches still run', async () => {
    let fail = true;
    const run = createBatcher(async (items: string[]) => {
      if (fail) throw new Error('store down');
      return items;
    });
    const results = await Promise.allSettled([run('a'), run('b')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toEqual(new Error('store down'));
    fail = false;
    expect(await run('c')).toBe('c');
  });

  it('rejects when the batch call returns the wrong number of results', async () => {
    const short = createBatcher(async (items: number[]) => items.slice(1));
    await expect(Promise.all([short(1), short(2)])).rejects.toThrow('a batch of 2 got 1 results');
  });

  it('refuses a maxBatch below 1', () => {
    expect(() => createBatcher(async (items: number[]) => items, 0)).toThrow(/maxBatch/);
  });
});
