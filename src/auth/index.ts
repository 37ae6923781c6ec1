/**
 * Ticket verification before the WebSocket upgrade (SPEC sections 2 and 3).
 *
 * `authenticate` is the single entry point used by the Worker's upgrade route. It
 * never throws: every failure, expected or not, comes back as an `AuthFailure`
 * whose `msg` is short and safe to return to the client (it never echoes the
 * ticket, a claim value or a secret).
 *
 * Whatever the mode, a user id starting with `@` is refused here (SPEC section
 * 3: reserved for the gateway and the origin, whose messages carry
 * `from.user: "@origin"`), and so is one that could pass for such an id or for
 * another user (SPEC v1.2: white space at either end, controls, format
 * characters, an NFKC form starting with `@`; see userIdProblem). sys:refresh
 * comes through here too.
 */
import type { CompiledAuth } from "../policy/types.ts";
import type { Env } from "../env.ts";
import { userIdProblem } from "../protocol/codes.ts";
import { verifyDevTicket } from "./dev.ts";
import { authFailed } from "./failure.ts";
import { verifyJwtTicket } from "./jwt.ts";
import { verifyOriginTicket } from "./origin.ts";
import { roomAllowed } from "./rooms.ts";
import { secretShared } from "./shared-secrets.ts";

export { roomAllowed } from "./rooms.ts";

export interface Identity {
  /** JWT `sub`, the dev ticket's or the auth origin's user; userIdProblem() found nothing wrong with it. */
  user: string;
  /** Unix seconds, from the JWT `exp`; null for dev tickets. */
  exp: number | null;
  /** JWT `rooms` claim patterns; null = any room. */
  rooms: string[] | null;
}

export type AuthFailure = {
  ok: false;
  status: 401 | 403 | 503;
  /** INTERNAL: the tenant's configuration is unsafe to serve (shared-secrets.ts). */
  code: "AUTH_FAILED" | "NOT_ALLOWED" | "ORIGIN_UNAVAILABLE" | "INTERNAL";
  msg: string;
  /** Seconds; set on 503 answers, for the `Retry-After` header. */
  retryAfter?: number;
};

export type AuthResult = { ok: true; identity: Identity } | AuthFailure;

export interface AuthContext {
  tenant: string;
  room: string;
  ip: string;
  env: Env;
  /** Current time in ms since the epoch; tests only. Defaults to Date.now(). */
  now?: number;
}

/** Seconds a client is told to wait after a 503 for a misconfigured tenant (a fix needs a deploy). */
export const MISCONFIGURED_RETRY_S = 60;
const MISCONFIGURED: AuthFailure = { ok: false, status: 503, code: "INTERNAL", msg: "tenant misconfigured", retryAfter: MISCONFIGURED_RETRY_S };

/** Longer tickets are refused (401 AUTH_FAILED) without being parsed. */
export const MAX_TICKET_LENGTH = 8192;

/**
 * Verify a ticket for a tenant. Never throws: every failure is an AuthFailure.
 * Also enforces the identity's `rooms` patterns for ctx.room (403 NOT_ALLOWED).
 */
export async function authenticate(auth: CompiledAuth, ticket: string, ctx: AuthContext): Promise<AuthResult> {
  try {
    if (typeof ticket !== "string" || ticket.length === 0) return authFailed("missing ticket");
    if (ticket.length > MAX_TICKET_LENGTH) return authFailed("ticket too long");

    // Fail closed: a tenant whose HS256 secret another tenant also accepts admits nobody.
    if (await secretShared(ctx.tenant, auth, ctx.env)) return MISCONFIGURED;

    let result: AuthResult;
    switch (auth.mode) {
      case "jwt":
        result = await verifyJwtTicket(auth, ticket, ctx);
        break;
      case "dev":
        result = verifyDevTicket(ticket, ctx.env);
        break;
      case "origin":
        result = await authenticateViaOrigin(auth, ticket, ctx);
        break;
      default:
        result = authFailed("unsupported auth mode");
    }
    if (!result.ok) return result;
    // Here, not in each verifier: every mode (and sys:refresh, which comes through here) refuses them alike.
    const problem = userIdProblem(result.identity.user);
    if (problem) return authFailed(problem === "reserved" ? "reserved user id" : "bad user id");
    if (!roomAllowed(result.identity.rooms, ctx.room)) {
      return { ok: false, status: 403, code: "NOT_ALLOWED", msg: "ticket does not grant this room" };
    }
    return result;
  } catch {
    // Defensive: the verifiers map every expected error themselves.
    return authFailed("ticket rejected");
  }
}

/**
 * `mode: "origin"` (SPEC section 3): POST the ticket to the tenant's origin,
 * signed like a webhook, with a cache of its answers. See origin.ts.
 */
async function authenticateViaOrigin(
  auth: Extract<CompiledAuth, { mode: "origin" }>,
  ticket: string,
  ctx: AuthContext,
): Promise<AuthResult> {
  return verifyOriginTicket(auth, ticket, ctx);
}
