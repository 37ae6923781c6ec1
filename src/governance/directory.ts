/**
 * Cross-room governance: one Durable Object per (tenant, user) and one per
 * tenant, each holding the live sessions it governs as absolute state with
 * leases (never increments and decrements):
 *
 *  - `admit` (from the Worker, before the upgrade) checks the limits and, when it
 *    admits, records the session with a short pending lease;
 *  - rooms `renew` the full list of their sessions every RENEW_MS (absolute: a
 *    session missing from a room's list is gone), and `release` one on close;
 *  - a session whose lease ran out (its room crashed, or never confirmed it) is
 *    dropped at the next read, so no ghost outlives LEASE_MS.
 *
 * Names: `u/<tenant>/<user>` for sessions per user (`policy.sessions`,
 * `limits.max_rooms_per_user`), `t/<tenant>` for tenant caps
 * (`limits.max_sessions_total`, `limits.max_rooms_total`).
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";

/** How often rooms renew their sessions' leases. */
export const RENEW_MS = 30_000;
/** A session not renewed for this long is dropped (3 missed renewals). */
export const LEASE_MS = 3 * RENEW_MS;
/** Lease of an admitted session until its room first renews it. */
export const PENDING_LEASE_MS = 2 * RENEW_MS;
/** How long an admission may wait for its room before a renewal without it drops it. */
const ADMISSION_GRACE_MS = 15_000;

export interface AdmitRequest {
  sid: string;
  room: string;
  user: string;
  /** 0 = unlimited for each. */
  maxSessions: number;
  maxRooms: number;
  /** What to do when maxSessions is reached. */
  onExceed: "deny" | "kick_oldest" | "unavailable";
}

export type AdmitResult =
  | { ok: true; evicted: Array<{ room: string; sid: string }> }
  | { ok: false; reason: "sessions" | "rooms"; retryAfter: number };

interface Row {
  sid: string;
  room: string;
  user: string;
  since: number;
  lease: number;
  /** 1 once a room renewed it; 0 while only admitted. */
  confirmed: number;
  [k: string]: SqlStorageValue;
}

export class DirectoryObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS sessions (
      sid TEXT PRIMARY KEY, room TEXT NOT NULL, user TEXT NOT NULL, since INTEGER NOT NULL,
      lease INTEGER NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0)`);
  }

  /** Live sessions, after dropping expired leases. */
  private live(now: number): Row[] {
    this.sql.exec("DELETE FROM sessions WHERE lease < ?", now);
    return this.sql.exec<Row>("SELECT * FROM sessions ORDER BY since, sid").toArray();
  }

  async admit(req: AdmitRequest, now = Date.now()): Promise<AdmitResult> {
    const rows = this.live(now);
    const existing = rows.find((r) => r.sid === req.sid);
    // The same sid again (a reconnect that replaces its session): not a new session.
    const others = rows.filter((r) => r.sid !== req.sid);
    const evicted: Array<{ room: string; sid: string }> = [];
    if (!existing && req.maxRooms > 0) {
      const rooms = new Set(others.map((r) => r.room));
      if (!rooms.has(req.room) && rooms.size >= req.maxRooms) return { ok: false, reason: "rooms", retryAfter: 5 };
    }
    if (!existing && req.maxSessions > 0 && others.length >= req.maxSessions) {
      if (req.onExceed !== "kick_oldest") return { ok: false, reason: "sessions", retryAfter: 5 };
      // Oldest first, until there is room for this one.
      for (const victim of others.slice(0, others.length - req.maxSessions + 1)) {
        this.sql.exec("DELETE FROM sessions WHERE sid = ?", victim.sid);
        evicted.push({ room: victim.room, sid: victim.sid });
      }
    }
    this.sql.exec(
      "INSERT OR REPLACE INTO sessions (sid, room, user, since, lease) VALUES (?, ?, ?, ?, ?)",
      req.sid,
      req.room,
      req.user,
      existing?.since ?? now,
      now + PENDING_LEASE_MS,
    );
    return { ok: true, evicted };
  }

  /** A room's complete list of its sessions here: renews them, forgets the room's others. */
  async renew(room: string, sessions: Array<{ sid: string; user: string; since: number }>, now = Date.now()): Promise<void> {
    const keep = new Set(sessions.map((s) => s.sid));
    for (const r of this.sql.exec<Row>("SELECT * FROM sessions WHERE room = ?", room).toArray()) {
      // A confirmed session missing from the list is gone. An admission the room has
      // not confirmed yet is kept a little (the upgrade may still be on its way).
      const admittedAt = r.lease - PENDING_LEASE_MS;
      if (!keep.has(r.sid) && (r.confirmed === 1 || now - admittedAt > ADMISSION_GRACE_MS)) {
        this.sql.exec("DELETE FROM sessions WHERE sid = ?", r.sid);
      }
    }
    for (const s of sessions) {
      this.sql.exec(
        "INSERT OR REPLACE INTO sessions (sid, room, user, since, lease, confirmed) VALUES (?, ?, ?, ?, ?, 1)",
        s.sid,
        room,
        s.user,
        s.since,
        now + LEASE_MS,
      );
    }
  }

  /** A session ended (or an admission was not used). Only removes it if it is still in `room`. */
  async release(room: string, sid: string): Promise<void> {
    this.sql.exec("DELETE FROM sessions WHERE sid = ? AND room = ?", sid, room);
  }

  /** For tests and operators. */
  async list(now = Date.now()): Promise<Array<{ sid: string; room: string; user: string; since: number }>> {
    return this.live(now).map(({ sid, room, user, since }) => ({ sid, room, user, since }));
  }
}
