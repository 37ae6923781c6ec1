/**
 * Delivery of gateway- or origin-produced messages to a room's members:
 * shared by the origin's webhook actions (answers.ts) and the origin-facing HTTP API.
 */
import { CLOSE, type ErrorCode } from "../protocol/codes.ts";
import { relayFrame, sysFrame, type Sender } from "../protocol/envelope.ts";
import { decodeHot, encodeOutbound } from "../protocol/hot.ts";
import type { RoomApi } from "./context.ts";
import { safeSend, type Attachment, type Members } from "./members.ts";

/** `from` on messages an origin sent (webhook actions, HTTP API). No client sid can be "@origin". */
export const ORIGIN_SENDER: Sender = { user: "@origin", sid: "@origin" };

export type Target = { user: string } | { sid: string };

export function matches(att: Attachment, target: Target): boolean {
  return "sid" in target ? att.sid === target.sid : att.user === target.user;
}

export interface OutboundMessage {
  svc: string;
  type: string;
  data?: unknown;
  /** Only these members (all when absent). */
  to?: Target;
  /** Never these sids. */
  exclude?: readonly string[];
}

/**
 * Send an ext envelope from the origin; returns how many sockets it reached.
 * Logged for recovery (room.record) as the service `logAs` (default: its own svc) says.
 */
export function deliverMessage(room: RoomApi, roomName: string, msg: OutboundMessage, logAs = msg.svc): number {
  const to = msg.to ? msg.to : { room: true as const, except: msg.exclude ?? [] };
  const frame = room.record(relayFrame(msg.svc, msg.type, roomName, msg.data, ORIGIN_SENDER), to, logAs);
  const exclude = msg.exclude && msg.exclude.length > 0 ? new Set(msg.exclude) : null;
  let n = 0;
  for (const [ws, att] of room.members.all()) {
    if (msg.to && !matches(att, msg.to)) continue;
    if (exclude?.has(att.sid)) continue;
    if (safeSend(ws, frame)) n++;
  }
  return n;
}

/** `sys.kicked {reason}` then close 4003 for every matching member. */
export function kick(room: RoomApi, target: Target, reason: string): number {
  const victims = [...room.members.all()].filter(([, att]) => matches(att, target));
  const frame = sysFrame("kicked", { reason });
  for (const [ws] of victims) {
    safeSend(ws, frame);
    room.closeMember(ws, CLOSE.KICKED, "kicked");
  }
  return victims.length;
}

export interface PresenceEntry {
  user: string;
  sid: string;
  slot: number;
  since: number;
}

/** A ghost still listed in presence (SPEC section 10: listed until its `leave`). */
export type ListedGhost = { user: string; sid: string; slot: number; since: number };

/** The room's presence: its arrived members and the ghosts whose departure is not announced yet. */
export function presence(room: RoomApi, ghosts: readonly ListedGhost[] = []): PresenceEntry[] {
  // Not a session that has yet to arrive (its first frame: arrival.ts).
  const arrived = [...room.members.all().values()].filter((a) => a.wait !== "join");
  const out = arrived.map((a) => ({ user: a.user, sid: a.sid, slot: a.slot, since: a.since }));
  const live = new Set(out.map((e) => e.sid));
  for (const g of ghosts) if (!live.has(g.sid)) out.push({ user: g.user, sid: g.sid, slot: g.slot, since: g.since });
  return out.sort((x, y) => x.slot - y.slot);
}

/** Most members listed in a presence `sync`; beyond, `truncated: true`. */
export const MAX_SYNC_MEMBERS = 1000;

/** The presence `sync` a newcomer gets right after `authed`: everyone else the room lists (ghosts too). */
export function presenceSync(room: RoomApi, newcomer: WebSocket, ghosts: readonly ListedGhost[] = []): { event: "sync"; members: Array<{ user: string; sid: string; slot: number }>; truncated?: true } {
  const mine = room.members.all().get(newcomer)?.sid;
  const members = presence(room, ghosts)
    .filter((e) => e.sid !== mine)
    .map(({ user, sid, slot }) => ({ user, sid, slot }));
  if (members.length <= MAX_SYNC_MEMBERS) return { event: "sync", members };
  return { event: "sync", members: members.slice(0, MAX_SYNC_MEMBERS), truncated: true };
}

/** Sender slot of hot frames an origin posts through the HTTP API. */
export const ORIGIN_SLOT = 0;

/** Relay an origin's hot frame to every member, with sender slot 0. */
export function relayFromOrigin(members: Members, frame: ArrayBuffer): { ok: true; delivered: number } | { ok: false; code: ErrorCode; msg: string } {
  const decoded = decodeHot(frame);
  if ("error" in decoded) return { ok: false, code: decoded.error, msg: decoded.msg };
  const out = encodeOutbound(decoded, ORIGIN_SLOT);
  let delivered = 0;
  for (const [ws] of members.all()) if (safeSend(ws, out)) delivered++;
  return { ok: true, delivered };
}
