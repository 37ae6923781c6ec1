/**
 * Session lifecycle pieces that need no socket: the `open`/`close` events a
 * session's arrival or departure makes for the origin services that subscribe
 * to them, and the check of a `sys:refresh` ticket.
 */
import type { Env } from "../env.ts";
import { authenticate } from "../auth/index.ts";
import type { CompiledService, TenantPolicy } from "../policy/index.ts";
import type { OriginEvent } from "../origin/outbox.ts";
import { newMessageId } from "../origin/sign.ts";
import { sysFrame } from "../protocol/envelope.ts";
import type { Attachment } from "./members.ts";
import { NOTHING, refuse, type Session, type Verdict } from "./verdict.ts";

type OriginService = Extract<CompiledService, { kind: "origin" }>;

/** One event per origin service of the tenant that subscribes to `kind`. */
export function lifecycleEvents(
  kind: "open" | "close",
  att: Pick<Attachment, "user" | "sid" | "trace">,
  t: TenantPolicy,
): Array<{ svc: string; service: OriginService; event: OriginEvent }> {
  const out: Array<{ svc: string; service: OriginService; event: OriginEvent }> = [];
  for (const [svc, service] of t.serviceMap) {
    if (service.kind !== "origin" || !service.events.includes(kind)) continue;
    out.push({
      svc,
      service,
      event: { id: newMessageId("evt"), kind, user: att.user, sid: att.sid, svc, type: kind, ts: Date.now(), trace_id: att.trace },
    });
  }
  return out;
}

/**
 * Verify a `sys:refresh` ticket for this session: the verdict to apply and, when
 * the ticket is good and for the same user, the session's new expiry.
 */
export async function checkRefresh(
  s: Session,
  t: TenantPolicy,
  ticket: unknown,
  seq: number | undefined,
  ack: boolean,
  env: Env,
): Promise<{ verdict: Verdict } | { verdict: Verdict; exp: number | null }> {
  // The decision (allow, refresh) was counted when the frame passed the allowlist: answers only.
  const error = (code: string, msg: string): { verdict: Verdict } => ({ verdict: { effect: refuse(s, "ext", "refresh", code, msg, seq).effect } });
  if (typeof ticket !== "string" || ticket.length === 0) return error("BAD_REQUEST", "sys:refresh needs data.ticket");
  const r = await authenticate(t.auth, ticket, { tenant: t.id, room: s.att.room, ip: "", env });
  if (!r.ok) return error(r.code === "NOT_ALLOWED" ? "NOT_ALLOWED" : "AUTH_FAILED", r.msg);
  if (r.identity.user !== s.att.user) return error("AUTH_FAILED", "ticket for another user");
  const frames = ack && seq !== undefined ? [sysFrame("ack", { seq })] : [];
  return { verdict: { effect: frames.length > 0 ? { kind: "reply", frames } : NOTHING }, exp: r.identity.exp };
}
