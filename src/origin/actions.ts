/**
 * The origin's answer to a webhook (SPEC section 6): 2xx with an empty body or
 * `{"actions":[…]}`. Validated with zod; an invalid action is skipped (and
 * counted), never applied half-way. A body that is not JSON, or is nested
 * deeper than 64 levels (protocol/json.ts), is malformed: nothing is applied.
 */
import { z } from "zod";
import { SID_RE, SVC_RE } from "../protocol/codes.ts";
import { parseJson } from "../protocol/json.ts";

const svc = z.string().regex(SVC_RE);
const sid = z.string().regex(SID_RE);
const user = z.string().min(1).max(128);
const eventId = z.string().min(1).max(64);

const Reply = z.object({ action: z.literal("reply"), to: eventId, svc, type: svc, data: z.unknown().optional() });
const Broadcast = z.object({
  action: z.literal("broadcast"),
  svc,
  type: svc,
  data: z.unknown().optional(),
  exclude: z.array(sid).max(1000).optional(),
});
const Send = z.union([
  z.object({ action: z.literal("send"), user, svc, type: svc, data: z.unknown().optional() }),
  z.object({ action: z.literal("send"), sid, svc, type: svc, data: z.unknown().optional() }),
]);
/** An origin's own reject code (SPEC section 6); the contract's codes match it too. */
export const APP_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;
// A reject fails closed: whatever its code and msg, the event is rejected. A code
// that is not a well-formed one becomes ORIGIN_REJECTED, a bad msg the default.
const Reject = z.object({
  action: z.literal("reject"),
  to: eventId,
  code: z.unknown().transform((c) => (typeof c === "string" && APP_CODE_RE.test(c) ? c : "ORIGIN_REJECTED")),
  msg: z.unknown().transform((m) => (typeof m === "string" ? m.slice(0, 500) : "rejected by origin")),
});
const Kick = z.union([
  z.object({ action: z.literal("kick"), user, reason: z.string().max(200).default("kicked") }),
  z.object({ action: z.literal("kick"), sid, reason: z.string().max(200).default("kicked") }),
]);

export const OriginAction = z.union([Reply, Broadcast, Send, Reject, Kick]);
export type OriginAction = z.infer<typeof OriginAction>;

export const MAX_ACTIONS = 1000;

/** Parse an answer body. Returns the valid actions and how many were invalid. */
export function parseActions(body: string): { actions: OriginAction[]; invalid: number; malformed: boolean } {
  if (body.trim() === "") return { actions: [], invalid: 0, malformed: false };
  // Not JSON, or nested deeper than 64 levels (applying it would overflow the stack): malformed.
  const json = parseJson(body);
  if (!json.ok) return { actions: [], invalid: 0, malformed: true };
  const raw = json.value;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { actions: [], invalid: 0, malformed: true };
  const list = (raw as { actions?: unknown }).actions;
  if (list === undefined) return { actions: [], invalid: 0, malformed: false };
  if (!Array.isArray(list)) return { actions: [], invalid: 0, malformed: true };
  const actions: OriginAction[] = [];
  let invalid = 0;
  for (const item of list.slice(0, MAX_ACTIONS)) {
    const r = OriginAction.safeParse(item);
    if (r.success) actions.push(r.data);
    else invalid++;
  }
  invalid += Math.max(0, list.length - MAX_ACTIONS);
  return { actions, invalid, malformed: false };
}
