/**
 * The one definition of a 401 AUTH_FAILED. A module of its own so that index.ts
 * and the verifiers it imports (dev.ts, jwt.ts, origin.ts) share it without a
 * runtime import cycle (they import only types from index.ts).
 */
import type { AuthFailure } from "./index.ts";

/** 401 AUTH_FAILED with a short, safe message (never a ticket, claim value or secret). */
export function authFailed(msg: string): AuthFailure {
  return { ok: false, status: 401, code: "AUTH_FAILED", msg };
}
