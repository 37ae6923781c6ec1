import type { TenantPolicy } from "../policy/index.ts";
import type { Attachment, Members } from "./members.ts";

/**
 * Token bucket as plain data, so it can live in a WebSocket attachment (and so
 * survive hibernation) or in storage. `tokens` may be fractional.
 */
export interface Bucket {
  tokens: number;
  /** ms timestamp of the last refill. */
  ts: number;
}

export function fullBucket(burst: number, now: number): Bucket {
  return { tokens: burst, ts: now };
}

/** Refill for the time elapsed, then take one token. Mutates `b`. */
export function take(b: Bucket, now: number, rps: number, burst: number): boolean {
  const elapsed = now - b.ts;
  if (elapsed > 0) {
    b.tokens = Math.min(burst, b.tokens + (elapsed * rps) / 1000);
    b.ts = now;
  } else if (elapsed < 0) {
    // Clock went backwards (or a restored bucket from another machine): never refill negatively.
    b.ts = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return true;
  }
  return false;
}

/** Seconds until one token is available. */
export function retryAfterSeconds(b: Bucket, rps: number): number {
  return Math.max(1, Math.ceil((1 - b.tokens) / rps));
}

const SHARED_BUCKET_KEY = "rl:tenant";
const SAVE_SHARED_EVERY_MS = 1_000;

/**
 * Where the inbound pipeline's buckets live: a session's in its attachment, the
 * room's shared one (`rate_limit_scope: tenant`) in storage, read once per instance.
 */
export class RateStore {
  private readonly storage: DurableObjectStorage;
  private readonly members: Pick<Members, "save" | "saveSoon">;
  private bucket: Bucket | null = null;

  constructor(storage: DurableObjectStorage, members: Pick<Members, "save" | "saveSoon">) {
    this.storage = storage;
    this.members = members;
  }

  private bucketsReady = false;
  /** Rows in the buckets table (read once per instance): an accept reads nothing while it is 0. */
  private kept: number | null = null;

  private get sql(): SqlStorage {
    if (!this.bucketsReady) {
      this.storage.sql.exec(`CREATE TABLE IF NOT EXISTS buckets (
        sid TEXT PRIMARY KEY, user TEXT NOT NULL, tokens REAL NOT NULL, ts INTEGER NOT NULL, full_at INTEGER NOT NULL)`);
      this.storage.sql.exec("CREATE INDEX IF NOT EXISTS buckets_full ON buckets (full_at)");
      this.bucketsReady = true;
    }
    return this.storage.sql;
  }

  /**
   * The bucket a new connection starts with (SPEC section 10: the bucket belongs
   * to the session, a resume or a reconnect continues it): the one its sid left
   * behind in this room, if that is not full again yet; else a full one.
   */
  resumed(t: TenantPolicy, sid: string, user: string, now: number): Bucket {
    const sql = this.sql;
    this.kept ??= sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM buckets").one().n;
    if (this.kept === 0) return fullBucket(t.policy.rate_limit_burst, now);
    this.kept -= sql.exec("DELETE FROM buckets WHERE full_at <= ? RETURNING sid", now).toArray().length;
    const row = sql.exec<{ user: string; tokens: number; ts: number }>("SELECT user, tokens, ts FROM buckets WHERE sid = ?", sid).toArray()[0];
    if (!row) return fullBucket(t.policy.rate_limit_burst, now);
    this.kept -= sql.exec("DELETE FROM buckets WHERE sid = ? RETURNING sid", sid).toArray().length;
    return row.user === user ? { tokens: row.tokens, ts: row.ts } : fullBucket(t.policy.rate_limit_burst, now);
  }

  /** A socket left: keep its bucket until it would be full again (nothing is written for a full one). */
  left(t: TenantPolicy, att: Attachment, now: number): void {
    const { rate_limit_rps: rps, rate_limit_burst: burst } = t.policy;
    const b = { ...att.rl };
    const tokens = Math.min(burst, b.tokens + (Math.max(0, now - b.ts) * rps) / 1000);
    if (tokens >= burst || rps <= 0) return;
    const fullAt = now + Math.ceil(((burst - tokens) * 1000) / rps);
    this.kept = null; // an insert or an update: counted again when next needed
    this.sql.exec(
      "INSERT INTO buckets (sid, user, tokens, ts, full_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(sid) DO UPDATE SET user = excluded.user, tokens = excluded.tokens, ts = excluded.ts, full_at = excluded.full_at",
      att.sid,
      att.user,
      tokens,
      now,
      fullAt,
    );
  }

  /** When the shared bucket was last written (this instance). */
  private sharedSavedAt = 0;

  /**
   * The shared bucket lives in memory and is written at most once a second (SPEC v1.2
   * section 12), without holding this turn's sends for the commit (`allowUnconfirmed`):
   * a wake reads back at most a second's worth of tokens too many.
   */
  private saveShared(now: number): void {
    if (!this.bucket || now - this.sharedSavedAt < SAVE_SHARED_EVERY_MS) return;
    this.sharedSavedAt = now;
    this.storage.put(SHARED_BUCKET_KEY, { ...this.bucket }, { allowUnconfirmed: true }).catch(() => {
      this.sharedSavedAt = 0; // try again with the next frame
    });
  }

  shared(t: TenantPolicy, now: number): Bucket {
    return (this.bucket ??= this.storage.kv.get<Bucket>(SHARED_BUCKET_KEY) ?? fullBucket(t.policy.rate_limit_burst, now));
  }

  /**
   * Persist what the pipeline changed: the shared bucket, and the session's bucket
   * and idle clock (an exhausted bucket at once, so that a wake does not hand a
   * sender at its limit a fresh burst; otherwise at most once a second).
   */
  save(s: { ws: WebSocket; att: Attachment }, shared: boolean, now: number): void {
    if (shared) this.saveShared(now);
    if (!shared && s.att.rl.tokens < 1) this.members.save(s.ws, s.att, now);
    else this.members.saveSoon(s.ws, s.att, now);
  }
}
