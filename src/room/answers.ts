/**
 * What a settled webhook batch does to the room's sockets. The bridge
 * (origin/bridge.ts) only delivers batches and reports how each one settled;
 * this module turns that report into sends: the origin's actions (reply,
 * reject, broadcast, send, kick), `sys.ack` to the senders that asked, and
 * `sys.error` to the senders of a batch that was rejected or given up.
 *
 * Answers go to the connection that sent the event only, or to the same
 * session resumed (SPEC sections 6 and 10), never to whoever holds the sid now.
 * With recovery on for the event's service, each answer is logged for that
 * session first (room.record), so a session that is away gets it on resume.
 */
import { log } from "../observability/log.ts";
import { parseActions, type OriginAction } from "../origin/actions.ts";
import type { Settled } from "../origin/bridge.ts";
import type { OutboxRow } from "../origin/outbox.ts";
import { errorFrame, relayFrame, sysFrame } from "../protocol/envelope.ts";
import type { RoomApi } from "./context.ts";
import { deliverMessage, kick, ORIGIN_SENDER } from "./deliver.ts";
import { safeSend } from "./members.ts";

type Answered = Extract<Settled, { kind: "answered" }>;

/** Apply how a batch settled. Called by the bridge right after the batch left the outbox. */
export function settle(room: RoomApi, s: Settled): void {
  if (s.kind === "answered") applyAnswer(room, s);
  else notifySenders(room, s.rows, s.code, s.msg);
  // The session's last_seq covers these messages now: a resend after a resume is not forwarded again.
  for (const r of s.rows) {
    const cid = r.kind === "message" && r.ack === 1 && r.seq !== null ? cidOf(r) : undefined;
    if (cid !== undefined) room.answered(cid, r.seq!);
  }
}

/** sys.error to the senders of the message events of a batch. */
function notifySenders(room: RoomApi, rows: OutboxRow[], code: "ORIGIN_REJECTED" | "ORIGIN_UNAVAILABLE", msg: string): void {
  for (const r of rows) if (r.kind === "message") toSender(room, r, errorFrame(code, msg, r.seq ?? undefined, cidOf(r)));
}

/**
 * Log (when the service keeps a log) and send a frame to the session that sent
 * `r`: addressed to that session (its `cid`), never to a later holder of its sid.
 */
function toSender(room: RoomApi, r: OutboxRow, frame: string): void {
  const sockets = senderOf(room, r);
  const cid = cidOf(r);
  const sent = cid === undefined ? frame : room.record(frame, { cid }, r.svc, cid);
  for (const ws of sockets) safeSend(ws, sent);
}

/** The sending session's id: the row's `cid` (read from the event itself for rows written before that column). */
function cidOf(r: OutboxRow): string | undefined {
  if (r.cid !== null) return r.cid;
  try {
    const id = (JSON.parse(r.event) as { trace_id?: unknown }).trace_id;
    return typeof id === "string" ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The socket of the session that sent an event, if it is connected: the same
 * sid and session id (`cid`: the trace id of the session's first connection,
 * kept by resumed connections).
 */
function senderOf(room: RoomApi, r: OutboxRow): WebSocket[] {
  const cid = cidOf(r);
  if (cid === undefined) return [];
  const out: WebSocket[] = [];
  for (const [ws, att] of room.members.withSid(r.sid)) if ((att.cid ?? att.trace) === cid) out.push(ws);
  return out;
}

function applyAnswer(room: RoomApi, s: Answered): void {
  const { meta, svc, batchId, rows } = s;
  const { actions, invalid, skipped, unreadable } = parseActions(s.body);
  if (unreadable !== null || invalid > 0) {
    room.counters.inc("wsprism_origin_invalid_answers_total", { tenant: meta.tenant, svc });
    log("warn", "origin.invalid_answer", { trace_id: batchId, tenant: meta.tenant, room: meta.room, svc, unreadable, invalid, skipped });
  }
  // An answer that cannot be read fails closed (SPEC section 6): what it meant to
  // reject is unknown, so no event that asked for an ack is acked.
  if (unreadable !== null) {
    notifySenders(room, rows.filter((r) => r.ack === 1), "ORIGIN_REJECTED", "origin answer unreadable");
    return;
  }
  const rejected = new Set<string>();
  const byId = actions.length > 0 ? new Map(rows.map((r) => [r.event_id, r])) : new Map<string, OutboxRow>();
  for (const a of actions) {
    try {
      apply(room, meta.room, svc, a, byId, rejected);
    } catch (err) {
      log("error", "origin.action_failed", { trace_id: batchId, tenant: meta.tenant, action: a.action, error: String(err).slice(0, 200) });
    }
  }
  // An event the origin rejected gets its error instead of an ack.
  for (const r of rows) {
    if (r.ack !== 1 || rejected.has(r.event_id) || r.seq === null) continue;
    toSender(room, r, sysFrame("ack", { seq: r.seq }));
  }
}

function apply(room: RoomApi, roomName: string, svc: string, a: OriginAction, byId: Map<string, OutboxRow>, rejected: Set<string>): void {
  switch (a.action) {
    case "reply": {
      const ev = byId.get(a.to);
      if (!ev) return; // an unknown event: ignored
      toSender(room, ev, relayFrame(a.svc, a.type, roomName, a.data, ORIGIN_SENDER));
      return;
    }
    case "broadcast":
      deliverMessage(room, roomName, { svc: a.svc, type: a.type, data: a.data, exclude: a.exclude }, svc);
      return;
    case "send":
      deliverMessage(room, roomName, {
        svc: a.svc,
        type: a.type,
        data: a.data,
        to: "sid" in a ? { sid: a.sid } : { user: a.user },
      }, svc);
      return;
    case "reject": {
      const ev = byId.get(a.to);
      if (!ev) return;
      rejected.add(ev.event_id);
      toSender(room, ev, errorFrame(a.code, a.msg, ev.seq ?? undefined, cidOf(ev)));
      return;
    }
    case "kick":
      kick(room, "sid" in a ? { sid: a.sid } : { user: a.user }, a.reason);
      return;
  }
}
