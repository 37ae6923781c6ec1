/**
 * The room's log of ext frames for missed-message recovery (SPEC section 10):
 * an append-only table in the object's SQLite storage, offsets 1, 2, … within
 * an epoch. A frame is written before it is sent (the runtime's output gate
 * holds the send until the write is durable), so no client can have seen an
 * offset the room later loses. The epoch is minted with the log and changes
 * only when the room's storage is deleted.
 *
 * Each row keeps who the frame was for (the whole room minus some sids, one
 * sid, or one user), so a resume replays exactly the frames addressed to that
 * session and never another session's private ones. Kept for `window_s`, at
 * most `max_bytes`; what is trimmed moves the floor, below which a resume is
 * `too_old`.
 */

/** Who a logged frame was sent to. */
export type Address = { room: true; except: readonly string[] } | { sid: string } | { user: string };

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

const EPOCH_KEY = "history:epoch";
/** Rows read per step when trimming. */
const TRIM_PAGE = 16;
const encoder = new TextEncoder();
const FLOOR_KEY = "history:floor";

type Row = {
  off: number;
  frame: string;
  to_sid: string | null;
  to_user: string | null;
  excl: string | null;
};

export class History {
  private readonly storage: DurableObjectStorage;
  private state: { epoch: string; head: number; floor: number; bytes: number; oldestAt: number | null } | null = null;
  /** Rows the trims of this instance read (a test keeps trimming cheap at the cap). */
  trimReads = 0;

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
    let epoch = this.storage.kv.get<string>(EPOCH_KEY);
    if (!epoch) {
      epoch = mintEpoch();
      this.storage.kv.put(EPOCH_KEY, epoch);
    }
    const floor = this.storage.kv.get<number>(FLOOR_KEY) ?? 0;
    const row = sql.exec<{ head: number | null; bytes: number | null; oldest: number | null }>(
      "SELECT MAX(off) AS head, SUM(bytes) AS bytes, MIN(at) AS oldest FROM history",
    ).one();
    this.state = { epoch, head: Math.max(row.head ?? 0, floor), floor, bytes: row.bytes ?? 0, oldestAt: row.oldest };
    return this.state;
  }

  position(): Position {
    const s = this.load();
    return { epoch: s.epoch, off: s.head };
  }

  /**
   * Log a frame (a JSON object text) for `to` and return it with its offset
   * added (`"off":N`): the text to send, to every recipient alike.
   */
  record(frame: string, to: Address, limits: HistoryLimits, now: number): string {
    const s = this.load();
    const off = s.head + 1;
    const stamped = `${frame.slice(0, -1)},"off":${off}}`;
    const bytes = encoder.encode(stamped).byteLength; // UTF-8 bytes, not UTF-16 code units
    this.storage.sql.exec(
      "INSERT INTO history (off, at, bytes, frame, to_sid, to_user, excl) VALUES (?, ?, ?, ?, ?, ?, ?)",
      off,
      now,
      bytes,
      stamped,
      "sid" in to ? to.sid : null,
      "user" in to ? to.user : null,
      "room" in to && to.except.length > 0 ? JSON.stringify(to.except) : null,
    );
    s.head = off;
    s.bytes += bytes;
    s.oldestAt ??= now;
    this.trim(limits, now);
    return stamped;
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
    for (let done = false; !done; ) {
      const page = sql.exec<{ off: number; at: number; bytes: number }>("SELECT off, at, bytes FROM history WHERE off > ? ORDER BY off LIMIT ?", last, TRIM_PAGE).toArray();
      this.trimReads += page.length;
      done = page.length < TRIM_PAGE;
      for (const r of page) {
        if (kept <= limits.max_bytes && r.at >= cutoff) {
          done = true;
          break;
        }
        kept -= r.bytes;
        last = r.off;
      }
    }
    if (last <= s.floor) return;
    sql.exec("DELETE FROM history WHERE off <= ?", last);
    s.floor = last;
    s.bytes = kept;
    s.oldestAt = sql.exec<{ at: number }>("SELECT at FROM history ORDER BY off LIMIT 1").toArray()[0]?.at ?? null;
    this.storage.kv.put(FLOOR_KEY, last);
  }

  /**
   * What a session that last saw `from` missed: every logged frame addressed to
   * it after that offset, in order; or why nothing is replayed. Whole or nothing.
   */
  replay(from: Position, who: { sid: string; user: string }, maxMessages: number): { frames: string[] } | { refused: ResumeRefusal } {
    const s = this.load();
    if (from.epoch !== s.epoch || from.off > s.head) return { refused: "epoch" };
    if (from.off < s.floor) return { refused: "too_old" };
    const frames: string[] = [];
    const rows = this.storage.sql.exec<Row>("SELECT off, frame, to_sid, to_user, excl FROM history WHERE off > ? ORDER BY off", from.off).toArray();
    for (const r of rows) {
      if (!addressed(r, who)) continue;
      if (frames.length >= maxMessages) return { refused: "too_many" };
      frames.push(r.frame);
    }
    return { frames };
  }
}

function addressed(r: Row, who: { sid: string; user: string }): boolean {
  if (r.to_sid !== null) return r.to_sid === who.sid;
  if (r.to_user !== null) return r.to_user === who.user;
  return r.excl === null || !(JSON.parse(r.excl) as string[]).includes(who.sid);
}

/** 16 random base32 characters: a fresh epoch for a fresh log. */
function mintEpoch(): string {
  const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
  let out = "";
  for (const b of crypto.getRandomValues(new Uint8Array(16))) out += alphabet[b & 31];
  return out;
}
