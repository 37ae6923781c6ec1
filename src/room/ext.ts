/**
 * Ext lane (SPEC section 4): JSON envelopes. Checks run in the contract's order
 * (frame size and rate limit happen in room.ts, before this): parse, allowlist,
 * handler.
 */
import { extAllowed, type TenantPolicy } from "../policy/index.ts";
import { CLOSE } from "../protocol/codes.ts";
import type { OriginEvent } from "../origin/outbox.ts";
import { newMessageId } from "../origin/sign.ts";
import { parseEnvelope, relayFrame, sysFrame, type ClientEnvelope } from "../protocol/envelope.ts";
import type { RoomApi } from "./context.ts";
import { safeSend, type Attachment } from "./members.ts";

export function handleExt(
  room: RoomApi,
  ws: WebSocket,
  att: Attachment,
  t: TenantPolicy,
  text: string,
): void | Promise<void> {
  const parsed = parseEnvelope(text);
  if (!parsed.ok) {
    room.counters.inc("wsprism_decode_errors_total", { tenant: t.id, lane: "ext" });
    room.decision(t, "ext", "deny", parsed.code === "UNSUPPORTED_VERSION" ? "version" : "decode");
    room.sendError(ws, att, parsed.code, parsed.msg, parsed.seq);
    return;
  }
  const env = parsed.env;
  if (env.room !== undefined && env.room !== att.room) {
    room.decision(t, "ext", "deny", "room");
    room.sendError(ws, att, "BAD_REQUEST", "room does not name this connection's room", env.seq);
    return;
  }
  if (env.svc === "sys") {
    // Control messages from the client are not routed to services.
    if (env.type === "refresh") {
      room.decision(t, "ext", "allow", "refresh");
      const data = env.data as { ticket?: unknown } | undefined;
      return room.refresh(ws, att, t, data && typeof data === "object" ? data.ticket : undefined, env.seq, parsed.ack);
    }
    room.decision(t, "ext", "deny", "unsupported");
    room.sendError(ws, att, "NOT_SUPPORTED", `sys:${env.type} is not supported`, env.seq);
    return;
  }
  if (!extAllowed(t, env.svc, env.type)) {
    room.decision(t, "ext", "deny", "allowlist");
    room.sendError(ws, att, "NOT_ALLOWED", `${env.svc}:${env.type} is not allowed`, env.seq);
    return;
  }
  room.counters.inc("wsprism_ext_messages_total", { tenant: t.id });
  if (env.svc === "room") {
    handleRoomService(room, ws, att, t, env, parsed.ack);
    return;
  }
  const service = t.serviceMap.get(env.svc);
  if (!service) {
    // The compiler guarantees allowlisted services exist; keep the answer defined anyway.
    room.decision(t, "ext", "deny", "no_service");
    room.sendError(ws, att, "NOT_ALLOWED", `no service ${env.svc}`, env.seq);
    return;
  }
  if (service.kind === "broadcast") {
    room.decision(t, "ext", "allow", "ok");
    const frame = relayFrame(env.svc, env.type, att.room, env.data, att, env.seq);
    for (const [other] of room.members.all()) if (other !== ws) safeSend(other, frame);
    if (parsed.ack) safeSend(ws, sysFrame("ack", { seq: env.seq }));
    return;
  }
  // An origin service: a durable webhook event. The answer (ack, reply, reject…)
  // comes when the origin has answered.
  if (!service.events.includes("message")) {
    room.decision(t, "ext", "deny", "no_service");
    room.sendError(ws, att, "NOT_ALLOWED", `service ${env.svc} does not take messages`, env.seq);
    return;
  }
  const event: OriginEvent = {
    id: newMessageId("evt"),
    kind: "message",
    user: att.user,
    sid: att.sid,
    svc: env.svc,
    type: env.type,
    ts: Date.now(),
    trace_id: att.trace,
  };
  if (env.seq !== undefined) event.seq = env.seq;
  if (env.data !== undefined) event.data = env.data;
  const pushed = room.originEvent(env.svc, service, event, parsed.ack);
  if (pushed !== "ok") {
    const [reason, why] = REFUSED[pushed];
    room.decision(t, "ext", "deny", reason);
    room.sendError(ws, att, "RESOURCE_EXHAUSTED", `${why}; retry later`, env.seq);
    return;
  }
  room.decision(t, "ext", "allow", "ok");
}

/** Why the outbox refused a message: the decision's reason and the sender's message. */
const REFUSED = {
  room_full: ["outbox_full", "the room's outbox is full"],
  session_share: ["outbox_share", "this session holds a quarter of the room's outbox already"],
  backlog: ["outbox_backlog", "the service is not keeping up"],
} as const;

function handleRoomService(
  room: RoomApi,
  ws: WebSocket,
  att: Attachment,
  t: TenantPolicy,
  env: ClientEnvelope,
  ack: boolean,
): void {
  const named = roomNamed(env);
  switch (env.type) {
    case "join":
      if (named !== undefined && named !== att.room) {
        room.decision(t, "ext", "deny", "unsupported");
        room.sendError(ws, att, "NOT_SUPPORTED", "one socket is in one room; open another socket", env.seq);
        return;
      }
      room.decision(t, "ext", "allow", "ok");
      safeSend(ws, sysFrame("joined", { room: att.room }));
      if (ack) safeSend(ws, sysFrame("ack", { seq: env.seq }));
      return;
    case "leave":
      room.decision(t, "ext", "allow", "ok");
      if (ack) safeSend(ws, sysFrame("ack", { seq: env.seq }));
      safeSend(ws, sysFrame("left", { room: att.room }));
      room.closeMember(ws, CLOSE.NORMAL, "left");
      return;
    default:
      room.decision(t, "ext", "deny", "unsupported");
      room.sendError(ws, att, "NOT_SUPPORTED", `room:${env.type} is not supported`, env.seq);
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
