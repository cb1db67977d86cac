import { ScriptReplyError, TransientError } from '@order-pipeline/shared';

/** A Redis call whose failure is transient ("redis unavailable"), unless the script's reply was unexpected. */
export async function redisCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    // The script and this code disagree: said as such, not as "redis unavailable".
    if (err instanceof ScriptReplyError) throw err;
    throw new TransientError(`redis unavailable (${what}): ${(err as Error).message}`, { cause: err });
  }
}
