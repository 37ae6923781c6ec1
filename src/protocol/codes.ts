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
/** User ids come from tickets; bounded so they fit tags and attachments. */
export const USER_RE = /^[^\x00-\x1f\x7f]{1,128}$/;
/**
 * User ids starting with `@` are reserved for the gateway and the origin
 * (`@origin` marks what an origin sent): no ticket may name one (SPEC section 3).
 */
export const RESERVED_USER_PREFIX = "@";
export function isReservedUser(user: string): boolean {
  return user.startsWith(RESERVED_USER_PREFIX);
}
export const ENV_NAME_RE = /^[A-Z_][A-Z0-9_]{0,127}$/;
