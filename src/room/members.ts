/**
 * The room's members, rebuilt from the runtime after every wake.
 *
 * Every fact about a session lives in its WebSocket attachment (which the
 * runtime keeps across hibernation); this class is only an in-memory index
 * over `ctx.getWebSockets()`, dropped and rebuilt whenever the object wakes.
 */
import type { Bucket } from "./ratelimit.ts";

/** Serialized into the socket (limit 16 KiB; ours is well under 1 KiB). */
export interface Attachment {
  v: 1;
  tenant: string;
  room: string;
  user: string;
  sid: string;
  /** Member number in the room (u16, 1..65535; 0 is reserved for origin-sent frames). */
  slot: number;
  trace: string;
  /** ms since epoch when the session joined. */
  since: number;
  /** JWT expiry (unix seconds), null for tickets without one. */
  exp: number | null;
  /** ms of the last frame received (heartbeats are not frames: see housekeeping.ts). */
  last?: number;
  /** Per-connection token bucket. */
  rl: Bucket;
  /** Set once the gateway has closed the socket, so a rebuild skips it. */
  gone?: true;
  /** With recovery: the session id (the trace of the session's first connection; answers find the session by it). */
  cid?: string;
  /** With recovery: the highest ACK_REQUESTED seq the room accepted from this session. */
  ls?: number;
  /**
   * No frame yet (SPEC v1.2, arrival.ts): "join" while its arrival is still to be
   * announced (it is in no presence view), "life" for a resume of an announced session.
   */
  wait?: "join" | "life";
}

export const MAX_SLOT = 0xffff;
/** The runtime's WebSockets per object (SPEC v1.2 section 12): a room holding this many refuses a newcomer (503). */
export const MAX_SOCKETS = 32_768;

const CLOSED = 3;

/** See Members.saveSoon. */
export const SAVE_EVERY_MS = 1_000;

export class Members {
  private index: Map<WebSocket, Attachment> | null = null;
  /** The same members by sid (built with the index, kept in step with it): answers find their session without a scan. */
  private sids: Map<string, Set<WebSocket>> | null = null;
  private readonly ctx: DurableObjectState;

  constructor(ctx: DurableObjectState) {
    this.ctx = ctx;
  }

  /** All live members (lazily rebuilt from the runtime after a wake). */
  all(): ReadonlyMap<WebSocket, Attachment> {
    return this.indexed();
  }

  private indexed(): Map<WebSocket, Attachment> {
    if (this.index) return this.index;
    const index = new Map<WebSocket, Attachment>();
    for (const ws of this.ctx.getWebSockets()) {
      // A socket whose close is being handled right now is CLOSING: keep it, so
      // webSocketClose on a freshly woken object still finds the member.
      if (ws.readyState === CLOSED) continue;
      const att = readAttachment(ws);
      if (att) index.set(ws, att);
    }
    this.index = index;
    this.sids = new Map();
    for (const [ws, att] of index) bySidAdd(this.sids, att.sid, ws);
    return index;
  }

  get(ws: WebSocket): Attachment | undefined {
    return this.all().get(ws);
  }

  add(ws: WebSocket, att: Attachment): void {
    ws.serializeAttachment(att);
    const index = this.indexed();
    const before = index.get(ws);
    if (before) bySidDelete(this.sids!, before.sid, ws);
    index.set(ws, att);
    bySidAdd(this.sids!, att.sid, ws);
  }

  /** When each socket's attachment was last written (this instance only). */
  private readonly savedAt = new WeakMap<WebSocket, number>();

  /**
   * Persist the per-frame fields (rate-limit bucket, time of the last frame) at
   * most once per SAVE_EVERY_MS per socket: writing the attachment on every frame
   * cost more than the rest of the frame's checks. The object in memory stays
   * exact; what a wake reads back is at most that old (an idle clock up to one
   * second earlier; a bucket holding back at most the tokens taken since, never
   * more than its burst). The caller saves at once a bucket that is exhausted, so
   * a sender at its limit is still at its limit after a wake.
   */
  saveSoon(ws: WebSocket, att: Attachment, now: number): void {
    if (now - (this.savedAt.get(ws) ?? 0) < SAVE_EVERY_MS) return;
    this.save(ws, att, now);
  }

  /** Persist a changed attachment. */
  save(ws: WebSocket, att: Attachment, now = Date.now()): void {
    this.savedAt.set(ws, now);
    try {
      ws.serializeAttachment(att);
    } catch {
      // The socket is already closed: nothing left to persist.
    }
  }

  /**
   * Remove and mark gone. Returns the attachment if it was a member. A socket
   * being closed is no longer listed by `getWebSockets()`, so on a freshly woken
   * object its attachment is read from the socket itself.
   */
  remove(ws: WebSocket): Attachment | undefined {
    const index = this.indexed();
    const att = index.get(ws) ?? readAttachment(ws);
    if (!att) return undefined;
    index.delete(ws);
    bySidDelete(this.sids!, att.sid, ws);
    att.gone = true;
    this.save(ws, att);
    return att;
  }

  size(): number {
    return this.all().size;
  }

  /** Lowest free slot >= 1, or -1 when all 65535 are taken. */
  freeSlot(reserved: ReadonlySet<number> = new Set()): number {
    const used = new Set<number>(reserved);
    for (const att of this.all().values()) used.add(att.slot);
    for (let s = 1; s <= MAX_SLOT; s++) if (!used.has(s)) return s;
    return -1;
  }

  distinctUsers(also: Iterable<string> = []): number {
    const users = new Set<string>(also);
    for (const att of this.all().values()) users.add(att.user);
    return users.size;
  }

  hasUser(user: string): boolean {
    for (const att of this.all().values()) if (att.user === user) return true;
    return false;
  }

  /**
   * Where a new session goes: a live session with its sid is replaced (same user
   * only, and keeps its slot); otherwise the room must have room for one more
   * distinct user (`max_users`, 0 = unlimited) and a free slot.
   */
  place(
    sid: string,
    user: string,
    maxUsers: number,
    reserved: { mine?: number; others: ReadonlySet<number>; users?: ReadonlySet<string> } = { others: new Set() },
  ): { ok: true; slot: number; replaces?: WebSocket } | { ok: false; code: "BAD_REQUEST" | "RESOURCE_EXHAUSTED" } {
    const existing = this.bySid(sid);
    if (existing) {
      if (existing[1].user !== user) return { ok: false, code: "BAD_REQUEST" };
      return { ok: true, slot: existing[1].slot, replaces: existing[0] };
    }
    // Ghosts keep their place (SPEC section 10): their users count as in the room.
    if (this.size() >= MAX_SOCKETS) return { ok: false, code: "RESOURCE_EXHAUSTED" };
    if (maxUsers > 0 && !this.hasUser(user) && !reserved.users?.has(user) && this.distinctUsers(reserved.users) >= maxUsers) {
      return { ok: false, code: "RESOURCE_EXHAUSTED" };
    }
    // A session coming back gets its reserved slot (SPEC section 10); nobody else takes a reserved one.
    if (reserved.mine !== undefined && ![...this.all().values()].some((a) => a.slot === reserved.mine)) return { ok: true, slot: reserved.mine };
    const slot = this.freeSlot(reserved.others);
    return slot < 0 ? { ok: false, code: "RESOURCE_EXHAUSTED" } : { ok: true, slot };
  }

  /** The members with this sid (usually one; briefly two while a session is being replaced). */
  withSid(sid: string): Array<[WebSocket, Attachment]> {
    const index = this.indexed();
    const out: Array<[WebSocket, Attachment]> = [];
    for (const ws of this.sids!.get(sid) ?? []) {
      const att = index.get(ws);
      if (att) out.push([ws, att]);
    }
    return out;
  }

  bySid(sid: string): [WebSocket, Attachment] | undefined {
    return this.withSid(sid)[0];
  }
}

function bySidAdd(m: Map<string, Set<WebSocket>>, sid: string, ws: WebSocket): void {
  const set = m.get(sid);
  if (set) set.add(ws);
  else m.set(sid, new Set([ws]));
}

function bySidDelete(m: Map<string, Set<WebSocket>>, sid: string, ws: WebSocket): void {
  const set = m.get(sid);
  if (!set) return;
  set.delete(ws);
  if (set.size === 0) m.delete(sid);
}

function readAttachment(ws: WebSocket): Attachment | undefined {
  try {
    const att = ws.deserializeAttachment() as Attachment | null;
    return att && att.v === 1 && !att.gone ? att : undefined;
  } catch {
    return undefined;
  }
}

/** Send without ever throwing (a socket may close between check and send). */
export function safeSend(ws: WebSocket, data: string | ArrayBuffer | ArrayBufferView): boolean {
  try {
    ws.send(data);
    return true;
  } catch {
    return false;
  }
}

/**
 * The code to answer a client's close with: its own, or none when the
 * connection is already gone (1005 no code, 1006 abnormal, 1015 TLS: sending a
 * close then only raises "Network connection lost"), 1000 for codes outside
 * the range a close frame may carry.
 */
export function closeAnswer(code: number): number | null {
  if (code === 1005 || code === 1006 || code === 1015) return null;
  return code >= 1000 && code < 5000 ? code : 1000;
}

export function safeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    // Already closed or closing.
  }
}
