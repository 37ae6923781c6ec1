/** Reconnect delays: exponential backoff with FULL jitter. */

export interface BackoffOptions {
  /** First ceiling, in ms. Default 250. */
  baseMs?: number;
  /** Largest ceiling, in ms. Default 15000. */
  maxMs?: number;
}

export const DEFAULT_BACKOFF = { baseMs: 250, maxMs: 15_000 } as const;

/** The ceiling of attempt `attempt` (0-based): `min(maxMs, baseMs * 2^attempt)`. */
export function backoffCeiling(attempt: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const max = opts.maxMs ?? DEFAULT_BACKOFF.maxMs;
  // 2^attempt overflows to Infinity for large attempts; min() keeps it bounded.
  return Math.min(max, base * 2 ** Math.max(0, attempt));
}

/**
 * Delay before reconnect attempt `attempt` (0-based): uniformly random in
 * `[0, min(maxMs, baseMs * 2^attempt))` ("full jitter"), so that many clients
 * dropped at once do not come back in lockstep.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, opts));
}
