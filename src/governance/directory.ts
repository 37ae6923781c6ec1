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
 * Rows are absolute state with leases (the tenant caps read running counts of
 * them, kept by triggers: see `counters`):
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
    this.counters();
  }

  /**
   * Running counts of the rows, for the tenant caps: sockets per room and the
   * tenant's totals, kept by triggers on every insert and delete of a row (so
   * admit, undo, renew, release and sweeps all keep them exact, and they live in
   * storage across wakes). Rows are written with upserts, never INSERT OR REPLACE,
   * whose implicit delete would not fire the delete trigger. A directory from
   * before the counters seeds them once from its rows.
   */
  private counters(): void {
    this.sql.exec("CREATE TABLE IF NOT EXISTS room_counts (room TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID");
    this.sql.exec(`CREATE TABLE IF NOT EXISTS tenant_counts (
      k INTEGER PRIMARY KEY CHECK (k = 0), sockets INTEGER NOT NULL, rooms INTEGER NOT NULL)`);
    this.sql.exec(`CREATE TRIGGER IF NOT EXISTS rooms_up AFTER INSERT ON room_counts BEGIN
      UPDATE tenant_counts SET rooms = rooms + 1; END`);
    this.sql.exec(`CREATE TRIGGER IF NOT EXISTS rooms_down AFTER DELETE ON room_counts BEGIN
      UPDATE tenant_counts SET rooms = rooms - 1; END`);
    if (this.sql.exec("SELECT k FROM tenant_counts").toArray().length === 0) {
      this.sql.exec("DELETE FROM room_counts");
      this.sql.exec("INSERT INTO tenant_counts (k, sockets, rooms) VALUES (0, (SELECT COUNT(*) FROM sockets), 0)");
      this.sql.exec("INSERT INTO room_counts (room, n) SELECT room, COUNT(*) FROM sockets GROUP BY room");
    }
    this.sql.exec(`CREATE TRIGGER IF NOT EXISTS sockets_up AFTER INSERT ON sockets BEGIN
      INSERT INTO room_counts (room, n) VALUES (NEW.room, 1) ON CONFLICT (room) DO UPDATE SET n = n + 1;
      UPDATE tenant_counts SET sockets = sockets + 1; END`);
    this.sql.exec(`CREATE TRIGGER IF NOT EXISTS sockets_down AFTER DELETE ON sockets BEGIN
      UPDATE room_counts SET n = n - 1 WHERE room = OLD.room;
      DELETE FROM room_counts WHERE room = OLD.room AND n <= 0;
      UPDATE tenant_counts SET sockets = sockets - 1; END`);
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
   * (expired ones ignored), and, only when a tenant cap is set, the tenant's counters.
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
    if (replaced) this.put(replaced, true);
    for (const v of evicted) this.put(v, true);
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

  /**
   * The tenant's live sockets and rooms, from the counters: expired rows are
   * deleted first (by the lease index, so only they are read), which makes the
   * counters count exactly the rows every read treats as live.
   */
  private tenantView(now: number): TenantView {
    this.sql.exec("DELETE FROM sockets WHERE lease < ?", now);
    const t = this.sql.exec<{ sockets: number; rooms: number }>("SELECT sockets, rooms FROM tenant_counts WHERE k = 0").one();
    return {
      sockets: t.sockets,
      rooms: t.rooms,
      roomSockets: (room) => this.sql.exec<{ n: number }>("SELECT n FROM room_counts WHERE room = ?", room).toArray()[0]?.n ?? 0,
    };
  }

  /** The tenant's live sockets and rooms as the caps see them, for tests and operators. */
  async counts(now = Date.now()): Promise<{ sockets: number; rooms: number }> {
    const { sockets, rooms } = this.tenantView(now);
    return { sockets, rooms };
  }

  /** Write a row: replace the (sid, room) one in place, or (`keep`) leave an existing one alone. */
  private put(r: SocketRow, keep = false): void {
    const onConflict = keep
      ? "DO NOTHING"
      : "DO UPDATE SET user = excluded.user, cid = excluded.cid, since = excluded.since, lease = excluded.lease, confirmed = excluded.confirmed";
    this.sql.exec(
      `INSERT INTO sockets (sid, room, user, cid, since, lease, confirmed) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid, room) ${onConflict}`,
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
