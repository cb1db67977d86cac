// One polling helper for the scripts (bench, screenshot, drain) and the tests' helpers, which
// take its types from the JSDoc below (allowJs in tsconfig.test.json).

import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `check` until it returns a value other than undefined and returns that value, or throws
 * after `timeoutMs` naming `what` and the last error `check` threw. Return `undefined` (not
 * `false`) for "not yet".
 * @template T
 * @param {string} what
 * @param {() => Promise<T | undefined> | T | undefined} check
 * @param {number} [timeoutMs]
 * @param {number} [everyMs]
 * @returns {Promise<T>}
 */
export async function waitFor(what, check, timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  /** @type {unknown} */
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
