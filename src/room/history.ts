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
    // The newest offset to drop: everything before the cutoff (a row exactly window_s old is kept), then the oldest rows past the byte budget.
    let last = sql.exec<{ off: number | null }>("SELECT MAX(off) AS off FROM history WHERE at < ?", cutoff).one().off ?? s.floor;
    let kept = sql.exec<{ b: number | null }>("SELECT SUM(bytes) AS b FROM history WHERE off > ?", last).one().b ?? 0;
    if (kept > limits.max_bytes) {
      // (read whole: a cursor left open when the loop stops early keeps the table locked; the log is bounded)
      for (const r of sql.exec<{ off: number; bytes: number }>("SELECT off, bytes FROM history WHERE off > ? ORDER BY off", last).toArray()) {
        if (kept <= limits.max_bytes) break;
        kept -= r.bytes;
        last = r.off;
      }
    }
    if (last <= s.floor) return;
    sql.exec("DELETE FROM history WHERE off <= ?", last);
    s.floor = last;
    s.bytes = kept;
    s.oldestAt = sql.exec<{ at: number | null }>("SELECT MIN(at) AS at FROM history").one().at;
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
