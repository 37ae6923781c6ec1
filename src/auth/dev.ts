/**
 * `mode: "dev"` tickets (SPEC section 3): `dev:<user>` admits `<user>`, for local
 * use only. Refused unless the env var WSPRISM_ALLOW_DEV_AUTH is exactly "1",
 * which `npm start` sets and a deployed configuration does not.
 */
import type { Env } from "../env.ts";
import { USER_RE } from "../protocol/codes.ts";
import { authFailed } from "./failure.ts";
import type { AuthResult } from "./index.ts";

export const DEV_TICKET_PREFIX = "dev:";

export function devAuthEnabled(env: Env | undefined): boolean {
  return env?.WSPRISM_ALLOW_DEV_AUTH === "1";
}

export function verifyDevTicket(ticket: string, env: Env | undefined): AuthResult {
  if (!devAuthEnabled(env)) return authFailed("dev tickets are disabled");
  if (!ticket.startsWith(DEV_TICKET_PREFIX)) return authFailed("malformed dev ticket");
  const user = ticket.slice(DEV_TICKET_PREFIX.length);
  if (!USER_RE.test(user)) return authFailed("bad user in dev ticket");
  return { ok: true, identity: { user, exp: null, rooms: null } };
}
