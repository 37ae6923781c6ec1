/** Error codes and close codes of the external contract (SPEC sections 2 and 4). */

export const ERROR_CODES = [
  "BAD_REQUEST",
  "AUTH_FAILED",
  "AUTH_EXPIRED",
  "RATE_LIMITED",
  "PAYLOAD_TOO_LARGE",
  "NOT_ALLOWED",
  "NOT_SUPPORTED",
  "RESOURCE_EXHAUSTED",
  "UNSUPPORTED_VERSION",
  "TOO_MANY_SESSIONS",
  "ORIGIN_REJECTED",
  "ORIGIN_UNAVAILABLE",
  "TIMEOUT",
  "INTERNAL",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes that only occur before the upgrade, as HTTP JSON errors. */
export type HttpErrorCode = ErrorCode | "UPGRADE_REQUIRED" | "UNKNOWN_TENANT";

export const CLOSE = {
  NORMAL: 1000,
  POLICY: 1008,
  TOO_LARGE: 1009,
  INTERNAL: 1011,
  AUTH_EXPIRED: 4001,
  IDLE_TIMEOUT: 4002,
  KICKED: 4003,
  SESSION_REPLACED: 4004,
  RATE_LIMIT: 4008,
} as const;
export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];

/** Patterns shared by the Worker, the room object and the policy compiler. */
export const TENANT_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;
export const SID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const SVC_RE = /^[a-z0-9_-]{1,32}$/;
/** Longest user id, in UTF-16 code units (SPEC leaves it open; 128 fits tags and attachments). */
export const MAX_USER_LENGTH = 128;
/** User ids come from tickets; bounded so they fit tags and attachments. The first filter: userIdProblem() is the whole rule. */
export const USER_RE = /^[^\x00-\x1f\x7f]{1,128}$/;
/**
 * User ids starting with `@` are reserved for the gateway and the origin
 * (`@origin` marks what an origin sent): no ticket may name one (SPEC section 3).
 */
export const RESERVED_USER_PREFIX = "@";
export function isReservedUser(user: string): boolean {
  return user.startsWith(RESERVED_USER_PREFIX);
}

/**
 * Anywhere in a user id: C0 and C1 controls and DEL (Cc), format characters
 * (Cf: bidi overrides and isolates, zero-width space and joiners, BOM, soft
 * hyphen), a lone surrogate (Cs), line and paragraph separators (Zl, Zp).
 */
const INVISIBLE_RE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
/** White space (and any space separator) at either end. */
const EDGE_SPACE_RE = /^[\s\p{Z}]|[\s\p{Z}]$/u;
/** A combining mark first: drawn over whatever precedes the id on screen. */
const LEADING_MARK_RE = /^\p{M}/u;
const INVISIBLE_OR_SPACE_G = /[\s\p{Z}\p{Cc}\p{Cf}\p{Cs}]/gu;

/**
 * Why a ticket may not name this user id (SPEC v1.2 section 3), or null:
 *  - `reserved`: it starts with `@`, or its NFKC form does (`＠origin`), or it
 *    is refused below and would show an `@` once its invisible characters and
 *    white space are gone (` @origin`, `\u202Enigiro@` drawn as "@origin");
 *  - `malformed`: empty or longer than MAX_USER_LENGTH, white space at either
 *    end, a control, format or separator character anywhere, or a combining
 *    mark first.
 * Characters inside an id that merely look like others (Cyrillic `а` for
 * Latin `a`) are allowed: telling users apart is the application's business.
 */
export function userIdProblem(user: string): "reserved" | "malformed" | null {
  if (user.length === 0 || user.length > MAX_USER_LENGTH) return "malformed";
  const nfkc = user.normalize("NFKC");
  if (nfkc.startsWith(RESERVED_USER_PREFIX)) return "reserved";
  if (!INVISIBLE_RE.test(user) && !EDGE_SPACE_RE.test(user) && !LEADING_MARK_RE.test(user)) return null;
  return nfkc.replace(INVISIBLE_OR_SPACE_G, "").includes(RESERVED_USER_PREFIX) ? "reserved" : "malformed";
}
export const ENV_NAME_RE = /^[A-Z_][A-Z0-9_]{0,127}$/;
