/**
 * The room's log of ext frames for missed-message recovery (SPEC section 10):
 * an append-only table in the object's SQLite storage, offsets 1, 2, … within
 * an epoch. A frame is written before it is sent (the runtime's output gate
 * holds the send until the write is durable), so no client can have seen an
 * offset the room later loses. The epoch is minted with the log and changes
 * only when the room's storage is deleted.
 *
 * Each row keeps who the frame was for: the whole room minus some sids, one
 * sid, one user, or one session (`cid`: answers to a session's own messages).
 * A resume names its session and the offset the session first joined at, so it
 * replays exactly the frames addressed to that session since then and never
 * another session's private ones, even one that held the same sid before.
 *
 * Bounds (v1.2): kept for `window_s`, at most `max_bytes`; what is trimmed moves
 * the floor, below which a resume is `too_old`. A logged frame costs two rows
 * written over its life, its insert and its delete: no index row, and the floor is
 * written only when a trim empties the log (else it is read back as just below
 * the oldest row). A row may name its owner (the
 * session whose message caused it); no owner keeps more than a quarter of
 * `max_bytes`: beyond it, the owner's own oldest rows leave the log first, so a
 * member sending large frames cannot push everyone else's history out. A
 * resume filters in SQL, counts at most `max_messages + 1` rows addressed to
 * it, and streams the frames a page at a time.
 */

/** Who a logged frame was sent to. */
export type Address = { room: true; except: readonly string[] } | { sid: string } | { user: string } | { cid: string };

export interface Position {
  epoch: string;
  off: number;
}

export interface HistoryLimits {
  window_s: number;
  max_bytes: number;
}

/** Why a resume replays nothing (SPEC section 10). */
export type ResumeRefusal = "epoch" | "too_old" | "too_many" | "disabled";

/** The session a resume replays for. */
export interface Reader {
  sid: string;
  user: string;
  cid: string;
  /** The log's head when the session first joined: nothing at or before it is the session's. */
  start: number;
}

const EPOCH_KEY = "history:epoch";
/** Rows read per step when trimming, and frames per page of a replay. */
const TRIM_PAGE = 16;
export const REPLAY_PAGE = 64;
/** One owner keeps at most this share of `max_bytes`. */
export const OWNER_SHARE = 4;
const encoder = new TextEncoder();
const FLOOR_KEY = "history:floor";

/** One owner's rows in the log, oldest first, and their bytes (kept in memory: no index on owner). */
interface Held {
  bytes: number;
  rows: Array<{ off: number; bytes: number }>;
}

/** Rows addressed to a reader after an offset (exactly one of to_cid, to_sid, to_user, or none: the room). */
const ADDRESSED = `off > ? AND (to_cid = ? OR to_sid = ? OR to_user = ?
  OR (to_cid IS NULL AND to_sid IS NULL AND to_user IS NULL
      AND (excl IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(excl) WHERE value = ?))))`;

export class History {
  private readonly storage: DurableObjectStorage;
  private state: { epoch: string; head: number; floor: number; bytes: number; oldestAt: number | null; owners: Map<string, Held> | null } | null = null;
  /** Rows the trims of this instance read (a test keeps trimming cheap at the cap). */
  trimReads = 0;
  /** Rows the replays of this instance read from storage (a test keeps a resume bounded by what it replays). */
  replayReads = 0;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  /** Schema, epoch and counters, once per instance. */
  private load(): NonNullable<History["state"]> {
    if (this.state) return this.state;
    const sql = this.storage.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS history (
      off INTEGER PRIMARY KEY, at INTEGER NOT NULL, bytes INTEGER NOT NULL, frame TEXT NOT NULL,
      to_sid TEXT, to_user TEXT, excl TEXT)`);
    // v1.2 columns: logs written before them keep null (no session address, no owner).
    const cols = new Set(sql.exec<{ name: string }>("PRAGMA table_info(history)").toArray().map((c) => c.name));
    if (!cols.has("to_cid")) sql.exec("ALTER TABLE history ADD COLUMN to_cid TEXT");
    if (!cols.has("owner")) sql.exec("ALTER TABLE history ADD COLUMN owner TEXT");
    // No index on owner: an index row doubles what each logged frame writes (SPEC v1.2 section 12: at most
    // two rows a frame, trims included). Owners' rows are tracked in memory instead (ownersMap).
    sql.exec("DROP INDEX IF EXISTS history_owner");
    let epoch = this.storage.kv.get<string>(EPOCH_KEY);
    if (!epoch) {
      epoch = mintEpoch();
      this.storage.kv.put(EPOCH_KEY, epoch);
    }
    const row = sql.exec<{ head: number | null; first: number | null; bytes: number | null; oldest: number | null }>(
      "SELECT MAX(off) AS head, MIN(off) AS first, SUM(bytes) AS bytes, MIN(at) AS oldest FROM history",
    ).one();
    // The floor is written only when a trim empties the log; otherwise it is just below the oldest row
    // (trims write no floor row: a logged frame's insert and its eventual delete are its two rows).
    const floor = Math.max(this.storage.kv.get<number>(FLOOR_KEY) ?? 0, row.first === null ? 0 : row.first - 1);
    this.state = { epoch, head: Math.max(row.head ?? 0, floor), floor, bytes: row.bytes ?? 0, oldestAt: row.oldest, owners: null };
    return this.state;
  }

  position(): Position {
    const s = this.load();
    return { epoch: s.epoch, off: s.head };
  }

  /**
   * Log a frame (a JSON object text) for `to` and return it with its offset
   * added (`"off":N`): the text to send, to every recipient alike. `owner`: the
   * session whose message caused it (its share of the log is bounded).
   */
  record(frame: string, to: Address, limits: HistoryLimits, now: number, owner?: string): string {
    const s = this.load();
    const off = s.head + 1;
    const stamped = `${frame.slice(0, -1)},"off":${off}}`;
    const bytes = encoder.encode(stamped).byteLength; // UTF-8 bytes, not UTF-16 code units
    const mine = owner === undefined ? undefined : this.heldBy(owner); // read before this row is in storage
    this.storage.sql.exec(
      "INSERT INTO history (off, at, bytes, frame, to_sid, to_user, excl, to_cid, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      off,
      now,
      bytes,
      stamped,
      "sid" in to ? to.sid : null,
      "user" in to ? to.user : null,
      "room" in to && to.except.length > 0 ? JSON.stringify(to.except) : null,
      "cid" in to ? to.cid : null,
      owner ?? null,
    );
    s.head = off;
    s.bytes += bytes;
    s.oldestAt ??= now;
    if (owner !== undefined && mine) {
      mine.bytes += bytes;
      mine.rows.push({ off, bytes });
      this.trimOwner(mine, limits);
    }
    this.trim(limits, now);
    return stamped;
  }

  /** Bytes the log holds for `owner`. */
  ownerBytes(owner: string): number {
    return this.ownersMap().get(owner)?.bytes ?? 0;
  }

  /** What one owner holds (created empty). */
  private heldBy(owner: string): Held {
    const owners = this.ownersMap();
    let h = owners.get(owner);
    if (!h) owners.set(owner, (h = { bytes: 0, rows: [] }));
    return h;
  }

  /** Every owner's rows, oldest first: one read of the owned rows the first time an instance needs them. */
  private ownersMap(): Map<string, Held> {
    const s = this.load();
    if (s.owners) return s.owners;
    const owners = new Map<string, Held>();
    const rows = this.storage.sql.exec<{ off: number; bytes: number; owner: string }>("SELECT off, bytes, owner FROM history WHERE owner IS NOT NULL ORDER BY off");
    for (const r of rows) {
      let h = owners.get(r.owner);
      if (!h) owners.set(r.owner, (h = { bytes: 0, rows: [] }));
      h.bytes += r.bytes;
      h.rows.push({ off: r.off, bytes: r.bytes });
    }
    return (s.owners = owners);
  }

  /** An owner over its share loses its own oldest rows (never the newest one it just logged). */
  private trimOwner(h: Held, limits: HistoryLimits): void {
    const s = this.load();
    const share = Math.floor(limits.max_bytes / OWNER_SHARE);
    let k = 0;
    let dropped = 0;
    while (h.bytes - dropped > share && k < h.rows.length - 1) dropped += h.rows[k++]!.bytes;
    if (k === 0) return;
    const gone = h.rows.splice(0, k);
    for (const r of gone) this.storage.sql.exec("DELETE FROM history WHERE off = ?", r.off);
    h.bytes -= dropped;
    s.bytes -= dropped;
    s.oldestAt = this.storage.sql.exec<{ at: number }>("SELECT at FROM history ORDER BY off LIMIT 1").toArray()[0]?.at ?? null;
  }

  /** Drop what is older than the window or beyond the byte budget; the floor follows. */
  private trim(limits: HistoryLimits, now: number): void {
    const s = this.load();
    const cutoff = now - limits.window_s * 1000;
    if (s.bytes <= limits.max_bytes && (s.oldestAt === null || s.oldestAt >= cutoff)) return;
    const sql = this.storage.sql;
    // Oldest first, a page at a time: drop rows before the cutoff (a row exactly window_s
    // old is kept) and past the byte budget. A log at its cap drops about one row per
    // insert, so this reads a page, not the log.
    let last = s.floor;
    let kept = s.bytes;
    const freed = new Map<string, number>();
    for (let done = false; !done; ) {
      const page = sql
        .exec<{ off: number; at: number; bytes: number; owner: string | null }>("SELECT off, at, bytes, owner FROM history WHERE off > ? ORDER BY off LIMIT ?", last, TRIM_PAGE)
        .toArray();
      this.trimReads += page.length;
      done = page.length < TRIM_PAGE;
      for (const r of page) {
        if (kept <= limits.max_bytes && r.at >= cutoff) {
          done = true;
          break;
        }
        kept -= r.bytes;
        last = r.off;
        if (r.owner !== null) freed.set(r.owner, (freed.get(r.owner) ?? 0) + r.bytes);
      }
    }
    if (last <= s.floor) return;
    sql.exec("DELETE FROM history WHERE off <= ?", last);
    s.floor = last;
    s.bytes = kept;
    for (const [owner, n] of freed) {
      const h = s.owners?.get(owner);
      if (!h) continue; // not read yet: read from storage when needed
      h.bytes -= n;
      while (h.rows.length > 0 && h.rows[0]!.off <= last) h.rows.shift();
      if (h.rows.length === 0) s.owners!.delete(owner);
    }
    s.oldestAt = sql.exec<{ at: number }>("SELECT at FROM history ORDER BY off LIMIT 1").toArray()[0]?.at ?? null;
    // Only an empty log needs the floor written: otherwise it is read back as just below the oldest row.
    if (s.oldestAt === null) this.storage.kv.put(FLOOR_KEY, last);
  }

  /**
   * What a session that last saw `from` missed: every logged frame addressed to
   * it after that offset (and after the session first joined), in order; or why
   * nothing is replayed. Whole or nothing: the count is checked here (reading at
   * most `maxMessages + 1` rows); `stream` then hands the frames to `send` a
   * page at a time. Call it in the same turn (nothing may be logged between).
   */
  replay(from: Position, who: Reader, maxMessages: number): { count: number; stream: (send: (frame: string) => void) => void } | { refused: ResumeRefusal } {
    const s = this.load();
    if (from.epoch !== s.epoch || from.off > s.head) return { refused: "epoch" };
    if (from.off < s.floor) return { refused: "too_old" };
    const after = Math.max(from.off, who.start);
    const sql = this.storage.sql;
    const args = [who.cid, who.sid, who.user, who.sid] as const;
    // Counted in SQL (no row reaches JavaScript): one wake never materialises more than a page of the log.
    const counted = sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM (SELECT 1 FROM history WHERE ${ADDRESSED} LIMIT ?)`, after, ...args, maxMessages + 1);
    const count = counted.one().n;
    this.replayReads += counted.rowsRead;
    if (count > maxMessages) return { refused: "too_many" };
    const stream = (send: (frame: string) => void): void => {
      let last = after;
      for (let sent = 0; sent < count; ) {
        const page = sql.exec<{ off: number; frame: string }>(`SELECT off, frame FROM history WHERE ${ADDRESSED} ORDER BY off LIMIT ?`, last, ...args, Math.min(REPLAY_PAGE, count - sent));
        const rows = page.toArray();
        this.replayReads += page.rowsRead;
        if (rows.length === 0) return;
        for (const r of rows) send(r.frame);
        sent += rows.length;
        last = rows[rows.length - 1]!.off;
      }
    };
    return { count, stream };
  }
}

/** 16 random base32 characters: a fresh epoch for a fresh log. */
function mintEpoch(): string {
  const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
  let out = "";
  for (const b of crypto.getRandomValues(new Uint8Array(16))) out += alphabet[b & 31];
  return out;
}
