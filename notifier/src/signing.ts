import { createHmac } from 'node:crypto';
import { webhookSecretKey } from '@order-pipeline/shared';

// Standard Webhooks signatures (symmetric, `v1`): HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>"
// with the key a `whsec_<base64>` secret stands for, base64-encoded, one `v1,<sig>` per secret,
// space-separated. Several secrets let a receiver move to a new one without missing a request.

export interface Signer {
  /** The `webhook-signature` value for this request, or undefined when no secret is configured. */
  sign(id: string, timestampSeconds: number, body: string): string | undefined;
}

/** A signer over NOTIFY_WEBHOOK_SECRET's secrets (already validated by the config). */
export function createSigner(secrets: readonly string[]): Signer {
  const keys = secrets.map((s) => webhookSecretKey(s));
  return {
    sign(id, timestampSeconds, body) {
      if (keys.length === 0) return undefined;
      const content = `${id}.${timestampSeconds}.${body}`;
      return keys.map((key) => `v1,${createHmac('sha256', key).update(content, 'utf8').digest('base64')}`).join(' ');
    },
  };
}
