/**
 * Token bucket as plain data, so it can live in a WebSocket attachment (and so
 * survive hibernation) or in storage. `tokens` may be fractional.
 */
export interface Bucket {
  tokens: number;
  /** ms timestamp of the last refill. */
  ts: number;
}

export function fullBucket(burst: number, now: number): Bucket {
  return { tokens: burst, ts: now };
}

/** Refill for the time elapsed, then take one token. Mutates `b`. */
export function take(b: Bucket, now: number, rps: number, burst: number): boolean {
  const elapsed = now - b.ts;
  if (elapsed > 0) {
    b.tokens = Math.min(burst, b.tokens + (elapsed * rps) / 1000);
    b.ts = now;
  } else if (elapsed < 0) {
    // Clock went backwards (or a restored bucket from another machine): never refill negatively.
    b.ts = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return true;
  }
  return false;
}

/** Seconds until one token is available. */
export function retryAfterSeconds(b: Bucket, rps: number): number {
  return Math.max(1, Math.ceil((1 - b.tokens) / rps));
}
