/**
 * Sessions of a room with recovery on (SPEC section 10), in the object's SQLite
 * storage: the source of truth for who may resume, across sockets, evictions
 * and replaced instances (attachments stay the cache of live sockets).
 *
 * A session is (user, sid, the moment it first joined): a row per sid, with its
 * user, its session id (`cid`: the trace id of the session's first connection,
 * kept by every resumed connection so that origin answers find it), its slot,
 * the highest ACK_REQUESTED `seq` the room accepted from it (`last_seq`), the
 * log's head when it first joined (`start_off`: a resume replays nothing from
 * before), when it first joined (`since`), and, once its socket is gone, when it
 * left and whether its departure was announced.
 *
 * Only ghosts stay once their socket is gone: a session that left abnormally
 * keeps its slot, its place and its sid for `window_s`; its presence `leave` and
 * the origins' `close` wait `grace_s`. A session that ended (a deliberate leave,
 * a kick, a new session under its sid) has no row: nothing can resume it.
 */

export type SessionRow = {
  sid: string;
  user: string;
  cid: string;
  slot: number;
  last_seq: number;
  /** ms when its socket went away (null: connected). */
  left_at: number | null;
  /** 1 once a ghost's presence `leave` and `close` events went out. */
  announced: number;
  /** The log's head when the session first joined. */
  start_off: number;
  /** ms when the session first joined. */
  since: number;
};

export class Roster {
  private readonly storage: DurableObjectStorage;
  private ready = false;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  private get sql(): SqlStorage {
    if (!this.ready) {
      const sql = this.storage.sql;
      sql.exec(`CREATE TABLE IF NOT EXISTS sessions (
        sid TEXT PRIMARY KEY, user TEXT NOT NULL, cid TEXT NOT NULL, slot INTEGER NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0, left_at INTEGER, announced INTEGER NOT NULL DEFAULT 0)`);
      // v1.2 columns; rows from before them start at 0 (their sessions began before any row they can still read).
      const cols = new Set(sql.exec<{ name: string }>("PRAGMA table_info(sessions)").toArray().map((c) => c.name));
      if (!cols.has("start_off")) sql.exec("ALTER TABLE sessions ADD COLUMN start_off INTEGER NOT NULL DEFAULT 0");
      if (!cols.has("since")) sql.exec("ALTER TABLE sessions ADD COLUMN since INTEGER NOT NULL DEFAULT 0");
      this.ready = true;
    }
    return this.storage.sql;
  }

  get(sid: string): SessionRow | undefined {
    return this.sql.exec<SessionRow>("SELECT * FROM sessions WHERE sid = ?", sid).toArray()[0];
  }

  /** The session of a connection that just joined: a new row, or the same session continued. */
  join(row: Omit<SessionRow, "left_at" | "announced">): void {
    this.sql.exec(
      `INSERT INTO sessions (sid, user, cid, slot, last_seq, left_at, announced, start_off, since) VALUES (?, ?, ?, ?, ?, NULL, 0, ?, ?)
       ON CONFLICT(sid) DO UPDATE SET user = excluded.user, cid = excluded.cid, slot = excluded.slot,
         last_seq = excluded.last_seq, left_at = NULL, announced = 0, start_off = excluded.start_off, since = excluded.since`,
      row.sid,
      row.user,
      row.cid,
      row.slot,
      row.last_seq,
      row.start_off,
      row.since,
    );
  }

  /** An ACK_REQUESTED message of session `cid` was accepted for good (relayed, or answered by its origin). */
  accepted(cid: string, seq: number): void {
    this.sql.exec("UPDATE sessions SET last_seq = MAX(last_seq, ?) WHERE cid = ?", seq, cid);
  }

  /** The socket went away abnormally: a ghost (`announced` says whether its departure is already out). */
  ghost(sid: string, now: number, announced: boolean): void {
    this.sql.exec("UPDATE sessions SET left_at = ?, announced = ? WHERE sid = ?", now, announced ? 1 : 0, sid);
  }

  /** The session ended: forget it. Returns its row (a ghost's, to announce its departure if still due). */
  end(sid: string): SessionRow | undefined {
    const row = this.get(sid);
    if (row) this.sql.exec("DELETE FROM sessions WHERE sid = ?", sid);
    return row;
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

  /** Ghosts that may still come back (left within the window): their slots, places and sids are kept. */
  ghosts(windowStart: number): SessionRow[] {
    return this.sql.exec<SessionRow>("SELECT * FROM sessions WHERE left_at IS NOT NULL AND left_at > ?", windowStart).toArray();
  }

  /** Every ghost, whatever its age (the caller filters). */
  unconnected(): SessionRow[] {
    return this.sql.exec<SessionRow>("SELECT * FROM sessions WHERE left_at IS NOT NULL").toArray();
  }

  /** Ghosts still listed in presence (their `leave` not sent yet). */
  unannounced(): SessionRow[] {
    return this.sql.exec<SessionRow>("SELECT * FROM sessions WHERE left_at IS NOT NULL AND announced = 0").toArray();
  }

  /** Forget ghosts that left before the window. */
  prune(windowStart: number): void {
    this.sql.exec("DELETE FROM sessions WHERE left_at IS NOT NULL AND left_at <= ?", windowStart);
  }

  /** Rows of sessions that are marked connected (for reconciling after an instance was replaced). */
  connected(): SessionRow[] {
    return this.sql.exec<SessionRow>("SELECT * FROM sessions WHERE left_at IS NULL").toArray();
  }
}
