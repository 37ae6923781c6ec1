/**
 * Ext lane (SPEC section 4): JSON envelopes, steps 3-5 of the inbound pipeline
 * (frame size and rate limit ran before, in inbound.ts): parse, allowlist,
 * handler. Returns verdicts; sends nothing itself.
 */
import { extAllowed, type TenantPolicy } from "../policy/index.ts";
import type { OriginEvent, PushResult } from "../origin/outbox.ts";
import { newMessageId } from "../origin/sign.ts";
import { CLOSE } from "../protocol/codes.ts";
import { parseEnvelope, relayFrame, sysFrame, type ClientEnvelope } from "../protocol/envelope.ts";
import { refuse, type Session, type Verdict } from "./verdict.ts";

export function extVerdict(s: Session, t: TenantPolicy, text: string): Verdict {
  const parsed = parseEnvelope(text);
  if (!parsed.ok) {
    return {
      ...refuse(s, "ext", parsed.code === "UNSUPPORTED_VERSION" ? "version" : "decode", parsed.code, parsed.msg, parsed.seq),
      count: { name: "wsprism_decode_errors_total", labels: { tenant: t.id, lane: "ext" } },
    };
  }
  const env = parsed.env;
  const att = s.att;
  if (env.room !== undefined && env.room !== att.room) {
    return refuse(s, "ext", "room", "BAD_REQUEST", "room does not name this connection's room", env.seq);
  }
  if (env.svc === "sys") {
    // Control messages from the client are not routed to services.
    if (env.type !== "refresh") return refuse(s, "ext", "unsupported", "NOT_SUPPORTED", `sys:${env.type} is not supported`, env.seq);
    const data = env.data as { ticket?: unknown } | undefined;
    return {
      decision: { lane: "ext", decision: "allow", reason: "refresh" },
      effect: { kind: "refresh", ticket: data && typeof data === "object" ? data.ticket : undefined, seq: env.seq, ack: parsed.ack },
    };
  }
  if (!extAllowed(t, env.svc, env.type)) {
    return refuse(s, "ext", "allowlist", "NOT_ALLOWED", `${env.svc}:${env.type} is not allowed`, env.seq);
  }
  // A message the room already accepted from this session (resent after a resume): never forwarded twice.
  if (parsed.ack && att.ls !== undefined && env.seq! <= att.ls) {
    return { decision: { lane: "ext", decision: "drop", reason: "duplicate" }, effect: { kind: "none" } };
  }
  return { ...routed(s, t, env, parsed.ack), count: { name: "wsprism_ext_messages_total", labels: { tenant: t.id } } };
}

/** An allowlisted message: the built-in `room` service, a broadcast service, or an origin. */
function routed(s: Session, t: TenantPolicy, env: ClientEnvelope, ack: boolean): Verdict {
  if (env.svc === "room") return roomService(s, env, ack);
  const service = t.serviceMap.get(env.svc);
  // The compiler guarantees allowlisted services exist; keep the answer defined anyway.
  if (!service) return refuse(s, "ext", "no_service", "NOT_ALLOWED", `no service ${env.svc}`, env.seq);
  if (service.kind === "broadcast") {
    return {
      decision: { lane: "ext", decision: "allow", reason: "ok" },
      effect: {
        kind: "relay",
        frame: relayFrame(env.svc, env.type, s.att.room, env.data, s.att, env.seq),
        coalesce: false,
        then: ack ? [sysFrame("ack", { seq: env.seq })] : [],
        log: env.svc,
        ...(ack ? { accepted: env.seq! } : {}),
      },
    };
  }
  // An origin service: a durable webhook event. The answer (ack, reply, reject…)
  // comes when the origin has answered.
  if (!service.events.includes("message")) {
    return refuse(s, "ext", "no_service", "NOT_ALLOWED", `service ${env.svc} does not take messages`, env.seq);
  }
  const event: OriginEvent = {
    id: newMessageId("evt"),
    kind: "message",
    user: s.att.user,
    sid: s.att.sid,
    svc: env.svc,
    type: env.type,
    ts: Date.now(),
    trace_id: s.att.trace,
  };
  if (env.seq !== undefined) event.seq = env.seq;
  if (env.data !== undefined) event.data = env.data;
  return { effect: { kind: "origin", svc: env.svc, service, event, ack } };
}

/** Why the outbox refused a message: the decision's reason and the sender's message. */
const REFUSED = {
  stream_full: ["outbox_full", "this service's outbox is full in this room"],
  user_share: ["outbox_share", "this user holds a quarter of this service's outbox already"],
  backlog: ["outbox_backlog", "the service is not keeping up and this user holds a large part of its backlog"],
} as const;

/** The verdict once the outbox has taken (or refused) an origin event. */
export function originVerdict(s: Session, pushed: PushResult, seq: number | undefined): Verdict {
  if (pushed === "ok") return { decision: { lane: "ext", decision: "allow", reason: "ok" }, effect: { kind: "none" } };
  const [reason, why] = REFUSED[pushed];
  return refuse(s, "ext", reason, "RESOURCE_EXHAUSTED", `${why}; retry later`, seq);
}

function roomService(s: Session, env: ClientEnvelope, ack: boolean): Verdict {
  const allow = { lane: "ext", decision: "allow", reason: "ok" } as const;
  const acked = ack ? [sysFrame("ack", { seq: env.seq })] : [];
  switch (env.type) {
    case "join": {
      const named = roomNamed(env);
      if (named !== undefined && named !== s.att.room) {
        return refuse(s, "ext", "unsupported", "NOT_SUPPORTED", "one socket is in one room; open another socket", env.seq);
      }
      return { decision: allow, effect: { kind: "reply", frames: [sysFrame("joined", { room: s.att.room, ...s.position?.() }), ...acked] } };
    }
    case "leave":
      return {
        decision: allow,
        effect: { kind: "close", frames: [...acked, sysFrame("left", { room: s.att.room })], code: CLOSE.NORMAL, reason: "left" },
      };
    default:
      return refuse(s, "ext", "unsupported", "NOT_SUPPORTED", `room:${env.type} is not supported`, env.seq);
  }
}

/** The room a room:join/leave names: `data.room` if given, else the envelope's `room`. */
function roomNamed(env: ClientEnvelope): string | undefined {
  const data = env.data;
  if (data && typeof data === "object" && !Array.isArray(data)) {
    const r = (data as { room?: unknown }).room;
    if (typeof r === "string") return r;
  }
  return env.room;
}
