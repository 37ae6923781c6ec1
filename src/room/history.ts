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
 * the floor, below which a resume is `too_old`. A row may name its owner (the
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

/** Rows addressed to a reader after an offset (exactly one of to_cid, to_sid, to_user, or none: the room). */
const ADDRESSED = `off > ? AND (to_cid = ? OR to_sid = ? OR to_user = ?
  OR (to_cid IS NULL AND to_sid IS NULL AND to_user IS NULL
      AND (excl IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(excl) WHERE value = ?))))`;

export class History {
  private readonly storage: DurableObjectStorage;
  private state: { epoch: string; head: number; floor: number; bytes: number; oldestAt: number | null; owners: Map<string, number> } | null = null;
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
    sql.exec("CREATE INDEX IF NOT EXISTS history_owner ON history (owner, off) WHERE owner IS NOT NULL");
    let epoch = this.storage.kv.get<string>(EPOCH_KEY);
    if (!epoch) {
      epoch = mintEpoch();
      this.storage.kv.put(EPOCH_KEY, epoch);
    }
    const floor = this.storage.kv.get<number>(FLOOR_KEY) ?? 0;
    const row = sql.exec<{ head: number | null; bytes: number | null; oldest: number | null }>(
      "SELECT MAX(off) AS head, SUM(bytes) AS bytes, MIN(at) AS oldest FROM history",
    ).one();
    // Owners' bytes are read when first needed, one owner at a time (by its index), not at every wake.
    this.state = { epoch, head: Math.max(row.head ?? 0, floor), floor, bytes: row.bytes ?? 0, oldestAt: row.oldest, owners: new Map() };
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
    const held = owner === undefined ? 0 : this.ownerBytes(owner); // before this row is in storage
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
    if (owner !== undefined) {
      s.owners.set(owner, held + bytes);
      this.trimOwner(owner, limits);
    }
    this.trim(limits, now);
    return stamped;
  }

  /** Bytes the log holds for `owner` (read once per owner and instance, then kept). */
  ownerBytes(owner: string): number {
    const owners = this.load().owners;
    let n = owners.get(owner);
    if (n === undefined) {
      n = this.storage.sql.exec<{ n: number | null }>("SELECT SUM(bytes) AS n FROM history WHERE owner = ?", owner).one().n ?? 0;
      owners.set(owner, n);
    }
    return n;
  }

  /** An owner over its share loses its own oldest rows (never the newest one it just logged). */
  private trimOwner(owner: string, limits: HistoryLimits): void {
    const s = this.load();
    const share = Math.floor(limits.max_bytes / OWNER_SHARE);
    let held = s.owners.get(owner) ?? 0;
    if (held <= share) return;
    const sql = this.storage.sql;
    let last = 0;
    let dropped = 0;
    for (let done = false; !done; ) {
      const page = sql.exec<{ off: number; bytes: number }>("SELECT off, bytes FROM history WHERE owner = ? AND off > ? AND off < ? ORDER BY off LIMIT ?", owner, last, s.head, TRIM_PAGE).toArray();
      this.trimReads += page.length;
      done = page.length < TRIM_PAGE;
      for (const r of page) {
        if (held <= share) {
          done = true;
          break;
        }
        held -= r.bytes;
        dropped += r.bytes;
        last = r.off;
      }
    }
    if (last === 0) return;
    sql.exec("DELETE FROM history WHERE owner = ? AND off <= ?", owner, last);
    s.owners.set(owner, held);
    s.bytes -= dropped;
    s.oldestAt = sql.exec<{ at: number }>("SELECT at FROM history ORDER BY off LIMIT 1").toArray()[0]?.at ?? null;
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
      const held = s.owners.get(owner);
      if (held === undefined) continue; // not read yet: read from storage when needed
      if (held - n > 0) s.owners.set(owner, held - n);
      else s.owners.delete(owner);
    }
    s.oldestAt = sql.exec<{ at: number }>("SELECT at FROM history ORDER BY off LIMIT 1").toArray()[0]?.at ?? null;
    this.storage.kv.put(FLOOR_KEY, last);
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
    const counted = sql.exec<{ off: number }>(`SELECT off FROM history WHERE ${ADDRESSED} ORDER BY off LIMIT ?`, after, ...args, maxMessages + 1);
    const count = counted.toArray().length;
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
