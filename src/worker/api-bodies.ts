/**
 * The HTTP API's JSON bodies (SPEC section 7), checked by hand (see
 * protocol/check.ts for why not zod):
 *
 *   messages  {svc, type, data?, to?: {user}|{sid}, exclude?: [sid, …≤1000]}
 *   kick      {user}|{sid}, reason? (≤200 characters)
 *
 * Strict: unknown keys are refused. Fields are checked in the order above, then
 * unknown keys, then "exactly one of user or sid"; the first issue is answered
 * (400 BAD_REQUEST, `describeIssue`). The result holds the checked fields only.
 */
import {
  checkPattern,
  invalid,
  isObject,
  unknownKeys,
  wrongType,
  type Issue,
} from "../protocol/check.ts";
import { isReservedUser, SID_RE, SVC_RE, USER_RE } from "../protocol/codes.ts";

/** At most this many sids in `exclude`. */
export const MAX_EXCLUDE = 1000;
/** Longest kick reason. */
export const MAX_REASON_LENGTH = 200;

export type Checked<T> = { ok: true; value: T } | { ok: false; issue: Issue };

export interface MessageBody {
  svc: string;
  type: string;
  data?: unknown;
  to?: TargetBody;
  exclude?: string[];
}
export type TargetBody = { user: string } | { sid: string };
export type KickBody = TargetBody & { reason?: string };

const SVC_MSG = "must match ^[a-z0-9_-]{1,32}$";
const SID_MSG = "must match ^[A-Za-z0-9_-]{1,64}$";
const USER_MSG = "must be 1 to 128 characters without control characters";
const ONE_OF = "give exactly one of user or sid";

const MESSAGE_KEYS: ReadonlySet<string> = new Set(["svc", "type", "data", "to", "exclude"]);
const TARGET_KEYS: ReadonlySet<string> = new Set(["user", "sid"]);
const KICK_KEYS: ReadonlySet<string> = new Set(["user", "sid", "reason"]);

const at = (path: string, key: string) => (path === "" ? key : `${path}.${key}`);

function optional(x: unknown, check: (x: unknown) => Issue | null): Issue | null {
  return x === undefined ? null : check(x);
}

// No client can hold an id starting with @ (SPEC section 3: reserved), so a target
// naming one is a mistake worth a 400 rather than a silent `delivered: 0`.
function checkUser(x: unknown, path: string): Issue | null {
  return checkPattern(x, path, USER_RE, USER_MSG) ?? (isReservedUser(x as string) ? invalid(path, "user ids starting with @ are reserved") : null);
}

/** `{user}` or `{sid}` at `path` ("" for the body itself), with the keys `known`. */
function targetIssue(obj: Record<string, unknown>, path: string, known: ReadonlySet<string>, rest?: () => Issue | null): Issue | null {
  return (
    optional(obj.user, (u) => checkUser(u, at(path, "user"))) ??
    optional(obj.sid, (s) => checkPattern(s, at(path, "sid"), SID_RE, SID_MSG)) ??
    (rest ? rest() : null) ??
    unknownKeys(obj, known) ??
    ((obj.user === undefined) === (obj.sid === undefined) ? invalid(path, ONE_OF) : null)
  );
}

function target(obj: Record<string, unknown>): TargetBody {
  return obj.sid !== undefined ? { sid: obj.sid as string } : { user: obj.user as string };
}

function checkExclude(x: unknown): Issue | null {
  if (!Array.isArray(x)) return wrongType("exclude", "array", x);
  // The length first: a long list of bad sids is not read.
  if (x.length > MAX_EXCLUDE) return invalid("exclude", `Too big: expected array to have <=${MAX_EXCLUDE} items`);
  for (let i = 0; i < x.length; i++) {
    const issue = checkPattern(x[i], `exclude.${i}`, SID_RE, SID_MSG);
    if (issue) return issue;
  }
  return null;
}

/** POST messages. */
export function checkMessageBody(body: unknown): Checked<MessageBody> {
  if (!isObject(body)) return { ok: false, issue: wrongType("", "object", body) };
  const { to, exclude } = body;
  const issue =
    // `sys` is the gateway's own (SPEC section 7): an origin must not forge a kicked or presence.
    checkPattern(body.svc, "svc", SVC_RE, SVC_MSG) ??
    (body.svc === "sys" ? invalid("svc", "svc sys is reserved for the gateway") : null) ??
    checkPattern(body.type, "type", SVC_RE, SVC_MSG) ??
    optional(to, (t) => (isObject(t) ? targetIssue(t, "to", TARGET_KEYS) : wrongType("to", "object", t))) ??
    optional(exclude, checkExclude) ??
    unknownKeys(body, MESSAGE_KEYS);
  if (issue) return { ok: false, issue };
  const value: MessageBody = { svc: body.svc as string, type: body.type as string };
  if (body.data !== undefined) value.data = body.data;
  if (to !== undefined) value.to = target(to as Record<string, unknown>);
  if (exclude !== undefined) value.exclude = [...(exclude as string[])];
  return { ok: true, value };
}

/** POST kick. */
export function checkKickBody(body: unknown): Checked<KickBody> {
  if (!isObject(body)) return { ok: false, issue: wrongType("", "object", body) };
  const reason = body.reason;
  const issue = targetIssue(body, "", KICK_KEYS, () =>
    optional(reason, (r) => {
      if (typeof r !== "string") return wrongType("reason", "string", r);
      return r.length > MAX_REASON_LENGTH ? invalid("reason", `Too big: expected string to have <=${MAX_REASON_LENGTH} characters`) : null;
    }),
  );
  if (issue) return { ok: false, issue };
  const value: KickBody = target(body);
  if (reason !== undefined) value.reason = reason as string;
  return { ok: true, value };
}
