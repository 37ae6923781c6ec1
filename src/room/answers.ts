/**
 * What a settled webhook batch does to the room's sockets. The bridge
 * (origin/bridge.ts) only delivers batches and reports how each one settled;
 * this module turns that report into sends: the origin's actions (reply,
 * reject, broadcast, send, kick), `sys.ack` to the senders that asked, and
 * `sys.error` to the senders of a batch that was rejected or given up.
 *
 * Answers go to the connection that sent the event only (SPEC section 6),
 * never to whoever holds the sid now.
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
}

/** sys.error to the connected senders of the message events of a batch. */
function notifySenders(room: RoomApi, rows: OutboxRow[], code: "ORIGIN_REJECTED" | "ORIGIN_UNAVAILABLE", msg: string): void {
  for (const r of rows) {
    if (r.kind !== "message") continue;
    const seq = r.seq ?? undefined;
    for (const ws of senderOf(room, r)) {
      const att = room.members.get(ws);
      if (att) room.sendError(ws, att, code, msg, seq);
    }
  }
}

/**
 * The socket that sent an event, if it is still connected. The connection is
 * the event's trace id (minted per upgrade), kept in the row's `cid` (read from
 * the event itself for rows written before that column).
 */
function senderOf(room: RoomApi, r: OutboxRow): WebSocket[] {
  let cid: unknown = r.cid;
  if (cid === null) {
    try {
      cid = (JSON.parse(r.event) as { trace_id?: unknown }).trace_id;
    } catch {
      return [];
    }
  }
  const out: WebSocket[] = [];
  for (const [ws, att] of room.members.all()) if (att.sid === r.sid && att.trace === cid) out.push(ws);
  return out;
}

function applyAnswer(room: RoomApi, s: Answered): void {
  const { meta, svc, batchId, rows } = s;
  const { actions, invalid, malformed } = parseActions(s.body);
  if (malformed || invalid > 0) {
    room.counters.inc("wsprism_origin_invalid_answers_total", { tenant: meta.tenant, svc });
    log("warn", "origin.invalid_answer", { trace_id: batchId, tenant: meta.tenant, room: meta.room, svc, malformed, invalid });
  }
  const byId = new Map(rows.map((r) => [r.event_id, r]));
  const rejected = new Set<string>();
  for (const a of actions) {
    try {
      apply(room, meta.room, a, byId, rejected);
    } catch (err) {
      log("error", "origin.action_failed", { trace_id: batchId, tenant: meta.tenant, action: a.action, error: String(err) });
    }
  }
  // An event the origin rejected gets its error instead of an ack.
  for (const r of rows) {
    if (r.ack !== 1 || rejected.has(r.event_id) || r.seq === null) continue;
    const frame = sysFrame("ack", { seq: r.seq });
    for (const ws of senderOf(room, r)) safeSend(ws, frame);
  }
}

function apply(room: RoomApi, roomName: string, a: OriginAction, byId: Map<string, OutboxRow>, rejected: Set<string>): void {
  switch (a.action) {
    case "reply": {
      const ev = byId.get(a.to);
      if (!ev) return; // an unknown event: ignored
      const frame = relayFrame(a.svc, a.type, roomName, a.data, ORIGIN_SENDER);
      for (const ws of senderOf(room, ev)) safeSend(ws, frame);
      return;
    }
    case "broadcast":
      deliverMessage(room, roomName, { svc: a.svc, type: a.type, data: a.data, exclude: a.exclude });
      return;
    case "send":
      deliverMessage(room, roomName, {
        svc: a.svc,
        type: a.type,
        data: a.data,
        to: "sid" in a ? { sid: a.sid } : { user: a.user },
      });
      return;
    case "reject": {
      const ev = byId.get(a.to);
      if (!ev) return;
      rejected.add(ev.event_id);
      for (const ws of senderOf(room, ev)) {
        const att = room.members.get(ws);
        if (att) safeSend(ws, errorFrame(a.code, a.msg, ev.seq ?? undefined, att.trace));
      }
      return;
    }
    case "kick":
      kick(room, "sid" in a ? { sid: a.sid } : { user: a.user }, a.reason);
      return;
  }
}
