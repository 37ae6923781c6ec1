/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): one
 * implementation for origin webhooks and the `origin` auth callback.
 *
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>
 *
 * The key is the base64 part of a `whsec_…` secret (a secret without the prefix
 * is taken as base64 too). Signing is the `standardwebhooks` reference library's.
 */

import { Webhook } from "standardwebhooks";

const encoder = new TextEncoder();
/** One signer per secret (the decoded key); a policy names few secrets. */
const signers = new Map<string, Webhook>();
const MAX_CACHED_KEYS = 64;

function signer(secret: string): Webhook {
  let w = signers.get(secret);
  if (!w) {
    if (signers.size >= MAX_CACHED_KEYS) signers.delete(signers.keys().next().value!);
    w = new Webhook(secret); // strips `whsec_`, decodes base64; throws on an empty key
    signers.set(secret, w);
  }
  return w;
}

/**
 * `v1,<base64>` for one message, by the reference library (synchronous: HMAC in
 * JavaScript costs a few µs for a webhook body, less than a round trip through
 * crypto.subtle's promise). Throws only on a secret that is not base64.
 */
export function signWebhook(secret: string, id: string, timestampSec: number, body: string): string {
  return signer(secret).sign(id, new Date(timestampSec * 1000), body);
}

/** The three Standard Webhooks headers plus the JSON content type. */
export function webhookHeaders(secret: string, id: string, body: string, nowMs: number = Date.now()): Record<string, string> {
  const ts = Math.floor(nowMs / 1000);
  return {
    "content-type": "application/json",
    "webhook-id": id,
    "webhook-timestamp": String(ts),
    "webhook-signature": signWebhook(secret, id, ts, body),
  };
}

/** A new message id, `msg_` + 26 base32 chars (unique per batch, kept across its retries). */
const ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const ID_CHARS = 26;
/** Random bytes drawn 4 KiB at a time: one call into the runtime per ~157 ids instead of one per id. */
let pool = new Uint8Array(0);
let poolAt = 0;

export function newMessageId(prefix = "msg"): string {
  if (poolAt + ID_CHARS > pool.length) {
    pool = crypto.getRandomValues(new Uint8Array(4096));
    poolAt = 0;
  }
  let s = `${prefix}_`;
  for (let i = 0; i < ID_CHARS; i++) s += ID_ALPHABET[pool[poolAt + i]! & 31];
  poolAt += ID_CHARS;
  return s;
}

/**
 * Constant-time comparison of a presented secret (a bearer key) with the expected
 * one: both are hashed to equal length, then compared with the runtime's
 * `timingSafeEqual`, so neither the content nor the length leaks through timing.
 */
export async function secretsEqual(presented: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(presented)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}
