/**
 * Cross-room governance (SPEC section 2): one Durable Object per tenant,
 * `t/<tenant>`, holding one row per live socket: (sid, room) → user.
 *
 * A session is a (user, sid) pair. The directory decides, in one place and one
 * round trip, everything that spans rooms:
 *  - a sid names at most one user's session in the tenant (400 otherwise);
 *  - one socket per (session, room): the same (user, sid, room) again replaces it;
 *  - `max_sessions_per_user`: the user's distinct sids (deny 409, or kick_oldest);
 *  - `max_rooms_per_user`: the distinct rooms where the user has a socket;
 *  - `max_sessions_total`: the tenant's sockets; `max_rooms_total`: rooms with one.
 * A refused admission writes nothing. An admission the upgrade then failed is
 * undone exactly (`undo`), restoring whatever it replaced or evicted.
 *
 * Rows are absolute state with leases, never counters:
 *  - `admit` (from the Worker, before the upgrade) records a row with a short
 *    pending lease and the upgrade's connection id (`cid`);
 *  - rooms `renew` the full list of their sockets every RENEW_MS (a confirmed row
 *    missing from its room's list is gone) and `release` one on close (only if
 *    its cid still matches, so a late release never deletes a newer socket's row);
 *  - a row whose lease ran out (its room crashed, or never confirmed it) is
 *    dropped at the next admission, so no ghost outlives LEASE_MS.
 *
 * The decision itself is the pure function `decide` (admission-rules.ts), which
 * the property tests drive against a model.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";
import { decide, MAX_BATCH, type AdmitRequest, type AdmitResult, type SocketRow, type TenantView } from "./admission-rules.ts";

export type { AdmitRequest, AdmitResult, SocketRow } from "./admission-rules.ts";

/** How often rooms renew their sockets' leases. */
export const RENEW_MS = 30_000;
/** A row not renewed for this long is dropped (3 missed renewals). */
export const LEASE_MS = 3 * RENEW_MS;
/** Lease of an admitted socket until its room first renews it. */
export const PENDING_LEASE_MS = 2 * RENEW_MS;
/** Expired rows are deleted at most this often; every read skips them anyway. */
const SWEEP_MS = 5_000;
/** How long an admission may wait for its room before a renewal without it drops it. */
const ADMISSION_GRACE_MS = 15_000;

/** What a room reports of one of its sockets. */
export interface RoomSocket {
  sid: string;
  user: string;
  cid: string;
  since: number;
}

type Row = SocketRow & { [k: string]: SqlStorageValue };

export class DirectoryObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private sweptAt = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // v0 kept one row per sid (the bug of issue 9); its rows are leases that rooms renew within RENEW_MS.
    this.sql.exec("DROP TABLE IF EXISTS sessions");
    this.sql.exec(`CREATE TABLE IF NOT EXISTS sockets (
      sid TEXT NOT NULL, room TEXT NOT NULL, user TEXT NOT NULL, cid TEXT NOT NULL,
      since INTEGER NOT NULL, lease INTEGER NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (sid, room)) WITHOUT ROWID`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS sockets_user ON sockets (user)");
    this.sql.exec("CREATE INDEX IF NOT EXISTS sockets_room ON sockets (room)");
    this.sql.exec("CREATE INDEX IF NOT EXISTS sockets_lease ON sockets (lease)");
  }

  /**
   * Admit sockets in order (each sees the rows of the ones before it), refusing
   * some without writing anything for them. The Worker sends the admissions that
   * queued up while its previous call was in flight as one call (admission.ts),
   * so a storm pays one round trip and one transaction per batch, not per socket.
   */
  async admitMany(reqs: AdmitRequest[], now = Date.now()): Promise<AdmitResult[]> {
    this.sweep(now);
    return reqs.slice(0, MAX_BATCH).map((req) => this.admitOne(req, now));
  }

  /** One admission (tests and operators; the Worker uses admitMany). */
  async admit(req: AdmitRequest, now = Date.now()): Promise<AdmitResult> {
    this.sweep(now);
    return this.admitOne(req, now);
  }

  /**
   * The rows the decision needs are read by index: the sid's and the user's
   * (expired ones ignored), and, only when a tenant cap is set, counts over the tenant.
   */
  private admitOne(req: AdmitRequest, now: number): AdmitResult {
    const rows = this.sql.exec<Row>("SELECT * FROM sockets WHERE sid = ? AND lease >= ?", req.sid, now).toArray();
    for (const r of this.sql.exec<Row>("SELECT * FROM sockets WHERE user = ? AND lease >= ?", req.user, now)) {
      if (r.sid !== req.sid) rows.push(r);
    }
    const tenant = req.maxSessionsTotal > 0 || req.maxRoomsTotal > 0 ? this.tenantView(now) : null;
    const result = decide(req, rows, tenant, now, PENDING_LEASE_MS);
    if (!result.ok) return result;
    for (const v of result.evicted) this.sql.exec("DELETE FROM sockets WHERE sid = ? AND room = ?", v.sid, v.room);
    this.put(result.row);
    return result;
  }

  /** Drop expired rows, at most once per SWEEP_MS: reads ignore them meanwhile. */
  private sweep(now: number): void {
    if (now - this.sweptAt < SWEEP_MS) return;
    this.sweptAt = now;
    this.sql.exec("DELETE FROM sockets WHERE lease < ?", now);
  }

  /**
   * The Worker could not complete an admitted upgrade: put back exactly what the
   * admission changed (its own row, the row it replaced, the rows it evicted).
   */
  async undo(admitted: Extract<AdmitResult, { ok: true }>): Promise<void> {
    const { row, replaced, evicted } = admitted;
    this.sql.exec("DELETE FROM sockets WHERE sid = ? AND room = ? AND cid = ?", row.sid, row.room, row.cid);
    if (replaced) this.put(replaced, "OR IGNORE");
    for (const v of evicted) this.put(v, "OR IGNORE");
  }

  /**
   * A room's complete list of its sockets: renews them, forgets the room's others.
   * Returns the sids it refused because another user holds them in the tenant
   * (only possible after leases were lost); the room closes those sockets.
   */
  async renew(room: string, sockets: RoomSocket[], now = Date.now()): Promise<string[]> {
    const listed = new Set(sockets.map((s) => s.sid));
    for (const r of this.sql.exec<Row>("SELECT * FROM sockets WHERE room = ?", room).toArray()) {
      // A confirmed row missing from the list is gone. An admission the room has
      // not confirmed yet is kept a little (the upgrade may still be on its way).
      const admittedAt = r.lease - PENDING_LEASE_MS;
      if (!listed.has(r.sid) && (r.confirmed === 1 || now - admittedAt > ADMISSION_GRACE_MS)) {
        this.sql.exec("DELETE FROM sockets WHERE sid = ? AND room = ?", r.sid, room);
      }
    }
    const refused: string[] = [];
    for (const s of sockets) {
      const owner = this.sql
        .exec<{ user: string }>("SELECT user FROM sockets WHERE sid = ? AND user != ? AND lease >= ? LIMIT 1", s.sid, s.user, now)
        .toArray()[0];
      if (owner) {
        refused.push(s.sid);
        continue;
      }
      // The session's start (since) is the directory's: the room knows only its socket's.
      this.sql.exec(
        `INSERT INTO sockets (sid, room, user, cid, since, lease, confirmed) VALUES (?, ?, ?, ?, ?, ?, 1)
         ON CONFLICT (sid, room) DO UPDATE SET user = excluded.user, cid = excluded.cid, lease = excluded.lease, confirmed = 1`,
        s.sid,
        room,
        s.user,
        s.cid,
        s.since,
        now + LEASE_MS,
      );
    }
    return refused;
  }

  /** A socket ended. Only removes its row if no newer socket took the (sid, room) since. */
  async release(room: string, sid: string, cid: string): Promise<void> {
    this.sql.exec("DELETE FROM sockets WHERE sid = ? AND room = ? AND cid = ?", sid, room, cid);
  }

  /**
   * A session that had no socket (a ghost) ended in its room, by a kick: free its
   * sid there. Only that user's row: a sid another user holds stays theirs.
   */
  async releaseGhost(room: string, sid: string, user: string): Promise<void> {
    this.sql.exec("DELETE FROM sockets WHERE sid = ? AND room = ? AND user = ?", sid, room, user);
  }

  /** Live rows, for tests and operators. */
  async list(now = Date.now()): Promise<Array<{ sid: string; room: string; user: string; since: number }>> {
    return this.sql
      .exec<Row>("SELECT * FROM sockets WHERE lease >= ? ORDER BY since, sid, room", now)
      .toArray()
      .map(({ sid, room, user, since }) => ({ sid, room, user, since }));
  }

  /** Counts over the whole tenant's live rows: scans, paid only by tenants that set a cap. */
  private tenantView(now: number): TenantView {
    const count = (q: string, ...args: SqlStorageValue[]) => this.sql.exec<{ n: number }>(q, ...args).one().n;
    return {
      sockets: count("SELECT COUNT(*) AS n FROM sockets WHERE lease >= ?", now),
      rooms: count("SELECT COUNT(DISTINCT room) AS n FROM sockets WHERE lease >= ?", now),
      roomSockets: (room) => count("SELECT COUNT(*) AS n FROM sockets WHERE room = ? AND lease >= ?", room, now),
    };
  }

  private put(r: SocketRow, conflict: "OR REPLACE" | "OR IGNORE" = "OR REPLACE"): void {
    this.sql.exec(
      `INSERT ${conflict} INTO sockets (sid, room, user, cid, since, lease, confirmed) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      r.sid,
      r.room,
      r.user,
      r.cid,
      r.since,
      r.lease,
      r.confirmed,
    );
  }
}
