// Types of poll.mjs, generated from its JSDoc so TypeScript callers (tests) get them without
// allowJs. Regenerate after changing the JSDoc:
//   npx tsc --allowJs --declaration --emitDeclarationOnly --module nodenext --target es2022 --types node --skipLibCheck --outDir scripts scripts/poll.mjs
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
export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs?: number,
  everyMs?: number,
): Promise<T>;
