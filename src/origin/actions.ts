/**
 * The origin's answer to a webhook (SPEC section 6): 2xx with an empty body or
 * `{"actions":[…]}`. Each action is checked by hand (see protocol/check.ts for
 * why not zod); an invalid one is skipped (and counted), never applied half-way.
 * A body that is not JSON, or is nested deeper than 64 levels (protocol/json.ts),
 * is malformed: nothing is applied. A valid action comes out as a fresh object
 * with its own fields only.
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
const MAX_EXCLUDE = 1000;
const MAX_REASON = 200;
const MAX_REJECT_MSG = 500;

/** An origin's own reject code (SPEC section 6); the contract's codes match it too. */
export const APP_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;

const isSvc = (x: unknown): x is string => typeof x === "string" && SVC_RE.test(x);
const isSid = (x: unknown): x is string => typeof x === "string" && SID_RE.test(x);
const isUser = (x: unknown): x is string => typeof x === "string" && x.length >= 1 && x.length <= 128;
const isEventId = (x: unknown): x is string => typeof x === "string" && x.length >= 1 && x.length <= 64;

/** svc, type and data (when present), or null. */
function body(a: Record<string, unknown>): Body | null {
  if (!isSvc(a.svc) || !isSvc(a.type)) return null;
  const b: Body = { svc: a.svc, type: a.type };
  if (a.data !== undefined) b.data = a.data;
  return b;
}

/** `{user}` when it is valid, else `{sid}` when that is: never both. */
function target(a: Record<string, unknown>): { user: string } | { sid: string } | null {
  if (isUser(a.user)) return { user: a.user };
  if (isSid(a.sid)) return { sid: a.sid };
  return null;
}

/** One action, checked; null when invalid. */
export function checkAction(a: unknown): OriginAction | null {
  if (!isObject(a)) return null;
  switch (a.action) {
    case "reply": {
      const b = body(a);
      return b && isEventId(a.to) ? { action: "reply", to: a.to, ...b } : null;
    }
    case "broadcast": {
      const b = body(a);
      if (!b) return null;
      const { exclude } = a;
      if (exclude === undefined) return { action: "broadcast", ...b };
      if (!Array.isArray(exclude) || exclude.length > MAX_EXCLUDE || !exclude.every(isSid)) return null;
      return { action: "broadcast", ...b, exclude: [...exclude] };
    }
    case "send": {
      const b = body(a);
      const t = b && target(a);
      return b && t ? { action: "send", ...t, ...b } : null;
    }
    case "reject": {
      // Fails closed: whatever its code and msg (missing ones too), the event is
      // rejected. A malformed code becomes ORIGIN_REJECTED, a bad msg the default.
      if (!isEventId(a.to)) return null;
      const code = typeof a.code === "string" && APP_CODE_RE.test(a.code) ? a.code : "ORIGIN_REJECTED";
      const msg = typeof a.msg === "string" ? a.msg.slice(0, MAX_REJECT_MSG) : "rejected by origin";
      return { action: "reject", to: a.to, code, msg };
    }
    case "kick": {
      const t = target(a);
      const reason = a.reason === undefined ? "kicked" : a.reason;
      if (!t || typeof reason !== "string" || reason.length > MAX_REASON) return null;
      return { action: "kick", ...t, reason };
    }
    default:
      return null;
  }
}

/** Parse an answer body. Returns the valid actions and how many were invalid. */
export function parseActions(body: string): { actions: OriginAction[]; invalid: number; malformed: boolean } {
  if (body.trim() === "") return { actions: [], invalid: 0, malformed: false };
  // Not JSON, or nested deeper than 64 levels (applying it would overflow the stack): malformed.
  const json = parseJson(body);
  if (!json.ok) return { actions: [], invalid: 0, malformed: true };
  const raw = json.value;
  if (!isObject(raw)) return { actions: [], invalid: 0, malformed: true };
  const list = raw.actions;
  if (list === undefined) return { actions: [], invalid: 0, malformed: false };
  if (!Array.isArray(list)) return { actions: [], invalid: 0, malformed: true };
  const actions: OriginAction[] = [];
  let invalid = 0;
  for (const item of list.slice(0, MAX_ACTIONS)) {
    const a = checkAction(item);
    if (a) actions.push(a);
    else invalid++;
  }
  invalid += Math.max(0, list.length - MAX_ACTIONS);
  return { actions, invalid, malformed: false };
}
