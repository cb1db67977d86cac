import type { RedisClient } from '../redis.js';

// The raw commands createRedis defines from ../../lua, and the checks the wrappers in this folder
// run on their replies. Internal: nothing outside shared/src/scripts calls a script directly, so
// each script's KEYS, ARGV and reply are laid out in exactly one place (its wrapper).

type Arg = string | number;

/** One command per Lua file; replies are unknown until the wrapper has checked them. */
export interface ScriptCommands {
  claim(numberOfKeys: number, ...keysThenArgs: Arg[]): Promise<unknown>;
  accept(numberOfKeys: number, ...keysThenArgs: Arg[]): Promise<unknown>;
  release(...keysThenArgs: Arg[]): Promise<unknown>;
  reserve(...keysThenArgs: Arg[]): Promise<unknown>;
  expireOrder(...keysThenArgs: Arg[]): Promise<unknown>;
  cancel(...keysThenArgs: Arg[]): Promise<unknown>;
  cancelRequested(...keysThenArgs: Arg[]): Promise<unknown>;
  notifyClaim(...keysThenArgs: Arg[]): Promise<unknown>;
  notifySent(...keysThenArgs: Arg[]): Promise<unknown>;
  notifyFail(...keysThenArgs: Arg[]): Promise<unknown>;
  inventoryAdjust(numberOfKeys: number, ...keysThenArgs: Arg[]): Promise<unknown>;
  listOrders(...keysThenArgs: Arg[]): Promise<unknown>;
  rateLimit(...keysThenArgs: Arg[]): Promise<unknown>;
}

/** The script commands of a client made by createRedis (which defines one per Lua file). */
export function scripts(redis: RedisClient): ScriptCommands {
  return redis as unknown as ScriptCommands;
}

/** A script answered with something its header does not list: a script and its wrapper disagree. */
export class ScriptReplyError extends Error {
  constructor(
    readonly script: string,
    readonly reply: unknown,
  ) {
    super(`unexpected reply from the ${script} script: ${JSON.stringify(reply)}`);
    this.name = 'ScriptReplyError';
  }
}

/** The reply as an array of `length` (any length when undefined), else ScriptReplyError. */
export function arrayReply(script: string, reply: unknown, length?: number): unknown[] {
  if (!Array.isArray(reply) || (length !== undefined && reply.length !== length)) throw new ScriptReplyError(script, reply);
  return reply as unknown[];
}

/** One of `allowed` integers, else ScriptReplyError. */
export function codeReply<C extends number>(script: string, reply: unknown, allowed: readonly C[], whole: unknown = reply): C {
  if (typeof reply !== 'number' || !(allowed as readonly number[]).includes(reply)) throw new ScriptReplyError(script, whole);
  return reply as C;
}

/** A string, else ScriptReplyError. */
export function stringReply(script: string, reply: unknown, whole: unknown): string {
  if (typeof reply !== 'string') throw new ScriptReplyError(script, whole);
  return reply;
}

/** A non-negative integer, else ScriptReplyError. */
export function countReply(script: string, reply: unknown, whole: unknown): number {
  if (typeof reply !== 'number' || !Number.isInteger(reply) || reply < 0) throw new ScriptReplyError(script, whole);
  return reply;
}
