/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): one
 * implementation for origin webhooks and the `origin` auth callback.
 *
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>
 *
 * The key is the base64 part of a `whsec_…` secret (a secret without the prefix
 * is taken as base64 too, as the reference libraries do).
 *
 * The HMAC is the runtime's (crypto.subtle), not the `standardwebhooks` package,
 * which the tests verify every signature with: it hashes in JavaScript, and for
 * a batch of 50 events (~10 KB) that took a quarter of the gateway's CPU in a
 * profile at 48,000 events/s.
 */

import { USER_AGENT } from "../version.ts";

const encoder = new TextEncoder();
const keyCache = new Map<string, Promise<CryptoKey>>();
const MAX_CACHED_KEYS = 64;

function secretBytes(secret: string): Uint8Array {
  const b64 = secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret;
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    if (keyCache.size >= MAX_CACHED_KEYS) keyCache.delete(keyCache.keys().next().value!);
    key = crypto.subtle.importKey("raw", secretBytes(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    keyCache.set(secret, key);
    key.catch(() => keyCache.delete(secret));
  }
  return key;
}

function toBase64(buf: ArrayBuffer): string {
  const bytes = new Uint8Array(buf);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]!);
  return btoa(bin);
}

/** `v1,<base64>` for one message. Throws only on a secret that is not base64. */
export async function signWebhook(secret: string, id: string, timestampSec: number, body: string): Promise<string> {
  const key = await hmacKey(secret);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${id}.${timestampSec}.${body}`));
  return `v1,${toBase64(mac)}`;
}

/**
 * The three Standard Webhooks headers plus the JSON content type and the
 * gateway's User-Agent (webhooks and auth calls alike). Each attempt calls this
 * afresh, so each carries the second it was sent in (docs/origins.md, retries).
 */
export async function webhookHeaders(
  secret: string,
  id: string,
  body: string,
  nowMs: number = Date.now(),
): Promise<Record<string, string>> {
  const ts = Math.floor(nowMs / 1000);
  return {
    "content-type": "application/json",
    "user-agent": USER_AGENT,
    "webhook-id": id,
    "webhook-timestamp": String(ts),
    "webhook-signature": await signWebhook(secret, id, ts, body),
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
