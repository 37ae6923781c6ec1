/**
 * Sessions of a room with recovery on (SPEC section 10), in the object's SQLite
 * storage: the source of truth for who may resume, across sockets, evictions
 * and replaced instances (attachments stay the cache of live sockets).
 *
 * A row per sid: its user, its session id (`cid`: the trace id of the
 * session's first connection, kept by every resumed connection so that origin
 * answers find it), its slot, the highest ACK_REQUESTED `seq` the room accepted
 * from it (`last_seq`), and, once its socket is gone, when it left and whether
 * its departure was announced. A session that left abnormally is a ghost: its
 * slot stays reserved for `window_s`; its presence `leave` and the origins'
 * `close` wait `grace_s`. Rows past the window are deleted.
 */

export type SessionRow = {
  sid: string;
  user: string;
  cid: string;
  slot: number;
  last_seq: number;
  /** ms when its socket went away (null: connected). */
  left_at: number | null;
  /** 1 once its presence `leave` and `close` events went out (or it left deliberately). */
  announced: number;
};

export class Roster {
  private readonly storage: DurableObjectStorage;
  private ready = false;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  private get sql(): SqlStorage {
    if (!this.ready) {
      this.storage.sql.exec(`CREATE TABLE IF NOT EXISTS sessions (
        sid TEXT PRIMARY KEY, user TEXT NOT NULL, cid TEXT NOT NULL, slot INTEGER NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0, left_at INTEGER, announced INTEGER NOT NULL DEFAULT 0)`);
      this.ready = true;
    }
    return this.storage.sql;
  }

  get(sid: string): SessionRow | undefined {
    return this.sql.exec<SessionRow>("SELECT * FROM sessions WHERE sid = ?", sid).toArray()[0];
  }

  /** The session of a connection that just joined: a new row, or the same session continued. */
  join(row: Omit<SessionRow, "left_at" | "announced" | "last_seq"> & { last_seq?: number }): void {
    this.sql.exec(
      `INSERT INTO sessions (sid, user, cid, slot, last_seq, left_at, announced) VALUES (?, ?, ?, ?, ?, NULL, 0)
       ON CONFLICT(sid) DO UPDATE SET user = excluded.user, cid = excluded.cid, slot = excluded.slot,
         last_seq = excluded.last_seq, left_at = NULL, announced = 0`,
      row.sid,
      row.user,
      row.cid,
      row.slot,
      row.last_seq ?? 0,
    );
  }

  /** An ACK_REQUESTED message was accepted. */
  accepted(sid: string, seq: number): void {
    this.sql.exec("UPDATE sessions SET last_seq = MAX(last_seq, ?) WHERE sid = ?", seq, sid);
  }

  /** The socket went away: a ghost (`announced` 0) or a session that ended (1). */
  left(sid: string, now: number, ghost: boolean): void {
    this.sql.exec("UPDATE sessions SET left_at = ?, announced = ? WHERE sid = ?", now, ghost ? 0 : 1, sid);
  }

  /** Ghosts whose grace ended before `graceEnd` and were not announced yet; marked announced. */
  takeDueGhosts(graceEnd: number): SessionRow[] {
    const due = this.sql
      .exec<SessionRow>("SELECT * FROM sessions WHERE left_at IS NOT NULL AND announced = 0 AND left_at <= ?", graceEnd)
      .toArray();
    if (due.length > 0) this.sql.exec("UPDATE sessions SET announced = 1 WHERE left_at IS NOT NULL AND announced = 0 AND left_at <= ?", graceEnd);
    return due;
  }

  /** When the earliest unannounced ghost left (null: none). */
  nextGhost(): number | null {
    return this.sql.exec<{ at: number | null }>("SELECT MIN(left_at) AS at FROM sessions WHERE left_at IS NOT NULL AND announced = 0").one().at;
  }

  /** Slots held by sessions that left within the window (reserved for their resume). */
  reservedSlots(windowStart: number): Set<number> {
    const out = new Set<number>();
    for (const r of this.sql.exec<{ slot: number }>("SELECT slot FROM sessions WHERE left_at IS NOT NULL AND left_at > ?", windowStart)) out.add(r.slot);
    return out;
  }

  /** Forget sessions that left before the window. */
  prune(windowStart: number): void {
    this.sql.exec("DELETE FROM sessions WHERE left_at IS NOT NULL AND left_at <= ?", windowStart);
  }

  /** Rows of sessions that are marked connected (for reconciling after an instance was replaced). */
  connected(): SessionRow[] {
    return this.sql.exec<SessionRow>("SELECT * FROM sessions WHERE left_at IS NULL").toArray();
  }
}
