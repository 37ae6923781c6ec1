/**
 * The origin's answer to a webhook (SPEC section 6): 2xx with an empty body or
 * `{"actions":[…]}`. Each action is checked by hand (see protocol/check.ts for
 * why not zod); an invalid one is skipped (counted, and listed with its index
 * and a fixed reason for the log), never applied half-way. A valid action comes
 * out as a fresh object with its own fields only. Actions may not use
 * `svc: "sys"` (the SDK acts on sys frames), as in the HTTP API.
 *
 * An answer the gateway cannot read (over 1 MiB, nested deeper than 64 levels
 * (protocol/json.ts), not JSON, `actions` not a list) is `unreadable`: nothing
 * is applied, and it fails closed (room/answers.ts rejects the batch's events).
 */
import { isObject } from "../protocol/check.ts";
import { SID_RE, SVC_RE } from "../protocol/codes.ts";
import { parseJson } from "../protocol/json.ts";

type Body = { svc: string; type: string; data?: unknown };
export type OriginAction =
  | ({ action: "reply"; to: string } & Body)
  | ({ action: "broadcast"; exclude?: string[] } & Body)
  | ({ action: "send"; user: string } & Body)
  | ({ action: "send"; sid: string } & Body)
  | { action: "reject"; to: string; code: string; msg: string }
  | { action: "kick"; user: string; reason: string }
  | { action: "kick"; sid: string; reason: string };

export const MAX_ACTIONS = 1000;
/** Skipped actions listed (for the log) per answer; all of them are counted. */
export const MAX_SKIPPED_LISTED = 10;
const MAX_EXCLUDE = 1000;
const MAX_REASON = 200;
const MAX_REJECT_MSG = 500;

/** An origin's own reject code (SPEC section 6); the contract's codes match it too. */
export const APP_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;

const isSvc = (x: unknown): x is string => typeof x === "string" && SVC_RE.test(x);
const isSid = (x: unknown): x is string => typeof x === "string" && SID_RE.test(x);
const isUser = (x: unknown): x is string => typeof x === "string" && x.length >= 1 && x.length <= 128;
const isEventId = (x: unknown): x is string => typeof x === "string" && x.length >= 1 && x.length <= 64;

/** Why an action was skipped: a fixed text, never one of the action's values (it goes to the log). */
type Why = { skip: string };
const why = (skip: string): Why => ({ skip });
const isWhy = (x: OriginAction | Why): x is Why => "skip" in x;

/** svc, type and data (when present), or why not. */
function body(a: Record<string, unknown>): Body | Why {
  if (!isSvc(a.svc)) return why("bad svc");
  if (a.svc === "sys") return why("svc sys is reserved for the gateway");
  if (!isSvc(a.type)) return why("bad type");
  const b: Body = { svc: a.svc, type: a.type };
  if (a.data !== undefined) b.data = a.data;
  return b;
}

/** `{user}` when it is valid, else `{sid}` when that is: never both. */
function target(a: Record<string, unknown>): { user: string } | { sid: string } | Why {
  if (isUser(a.user)) return { user: a.user };
  if (isSid(a.sid)) return { sid: a.sid };
  return why("no valid user or sid");
}

/** One action, checked; null when invalid. */
export function checkAction(a: unknown): OriginAction | null {
  const r = check(a);
  return isWhy(r) ? null : r;
}

function check(a: unknown): OriginAction | Why {
  if (!isObject(a)) return why("not an object");
  switch (a.action) {
    case "reply": {
      const b = body(a);
      if (!isEventId(a.to)) return why("bad to");
      return "skip" in b ? b : { action: "reply", to: a.to, ...b };
    }
    case "broadcast": {
      const b = body(a);
      if ("skip" in b) return b;
      const { exclude } = a;
      if (exclude === undefined) return { action: "broadcast", ...b };
      if (!Array.isArray(exclude) || exclude.length > MAX_EXCLUDE || !exclude.every(isSid)) return why("bad exclude");
      return { action: "broadcast", ...b, exclude: [...exclude] };
    }
    case "send": {
      const b = body(a);
      if ("skip" in b) return b;
      const t = target(a);
      return "skip" in t ? t : { action: "send", ...t, ...b };
    }
    case "reject": {
      // Fails closed: whatever its code and msg (missing ones too), the event is
      // rejected. A malformed code becomes ORIGIN_REJECTED, a bad msg the default.
      if (!isEventId(a.to)) return why("bad to");
      const code = typeof a.code === "string" && APP_CODE_RE.test(a.code) ? a.code : "ORIGIN_REJECTED";
      const msg = typeof a.msg === "string" ? a.msg.slice(0, MAX_REJECT_MSG) : "rejected by origin";
      return { action: "reject", to: a.to, code, msg };
    }
    case "kick": {
      const t = target(a);
      if ("skip" in t) return t;
      const reason = a.reason === undefined ? "kicked" : a.reason;
      if (typeof reason !== "string" || reason.length > MAX_REASON) return why("bad reason");
      return { action: "kick", ...t, reason };
    }
    default:
      return why("unknown action");
  }
}

export interface ParsedAnswer {
  /** The valid actions, in order. */
  actions: OriginAction[];
  /** How many actions were skipped as invalid. */
  invalid: number;
  /** The first MAX_SKIPPED_LISTED of them: index in `actions` of the answer, and why. */
  skipped: { index: number; reason: string }[];
  /** Why the answer could not be read at all (then it fails closed), or null. */
  unreadable: string | null;
}

const unreadable = (reason: string): ParsedAnswer => ({ actions: [], invalid: 0, skipped: [], unreadable: reason });

/** Parse an answer body; null stands for a body over the bound the bridge reads (1 MiB). */
export function parseActions(text: string | null): ParsedAnswer {
  if (text === null) return unreadable("over 1 MiB");
  if (text.trim() === "") return { actions: [], invalid: 0, skipped: [], unreadable: null };
  // Nested deeper than 64 levels: applying it would overflow the stack.
  const json = parseJson(text);
  if (!json.ok) return unreadable(json.error === "too_deep" ? "nested deeper than 64 levels" : "not JSON");
  const raw = json.value;
  if (!isObject(raw)) return unreadable("not a JSON object");
  const list = raw.actions;
  if (list === undefined) return { actions: [], invalid: 0, skipped: [], unreadable: null };
  if (!Array.isArray(list)) return unreadable("actions is not a list");
  const out: ParsedAnswer = { actions: [], invalid: 0, skipped: [], unreadable: null };
  const skip = (index: number, reason: string, n = 1) => {
    out.invalid += n;
    if (out.skipped.length < MAX_SKIPPED_LISTED) out.skipped.push({ index, reason });
  };
  const n = Math.min(list.length, MAX_ACTIONS);
  for (let i = 0; i < n; i++) {
    const a = check(list[i]);
    if (isWhy(a)) skip(i, a.skip);
    else out.actions.push(a);
  }
  if (list.length > MAX_ACTIONS) skip(MAX_ACTIONS, `over ${MAX_ACTIONS} actions`, list.length - MAX_ACTIONS);
  return out;
}
