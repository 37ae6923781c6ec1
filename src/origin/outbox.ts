/**
 * The outbox: accepted ext events waiting for their origin. One stream per
 * service (SPEC section 6): a service's events go out in the order accepted,
 * independently of the room's other services. A batch is the first unsent events
 * of one stream, and keeps its webhook id across retries.
 *
 * Written when waiting, not on receipt. A message for a healthy stream that
 * sends at once is held in memory only while its POST is in flight (the object
 * cannot be evicted then: the run is a waitUntil task); the moment it must wait
 * for anything durable (a retry after a failure, `batch_ms`, a yield to the
 * alarm) the stream's memory rows are written to the object's SQLite storage, in
 * order, with their batch. `open`/`close` events are written before anything
 * else happens, after the stream's memory rows. So a stream's stored rows are
 * always older than its memory rows: a batch is sealed from the stored ones
 * while there are any, then from memory, never from both. What this trades
 * (docs/origins.md, "Durability"): a message whose first POST is in flight when
 * the object is reset (a deploy, a crash) is lost with the socket that sent it,
 * which had not been acknowledged; one commit per event is what it saves.
 */

import { BACKLOG_SHED_MS, DEFAULT_OUTBOX_LIMITS, StreamShares, utf8Length, type OutboxLimits, type Refusal } from "./shares.ts";

export { BACKLOG_SHED_MS, DEFAULT_OUTBOX_LIMITS, type OutboxLimits } from "./shares.ts";

/** `ok`, or why an event was refused. */
export type PushResult = "ok" | Refusal | "backlog";

export type EventKind = "open" | "close" | "message";

/** The event as the origin sees it (SPEC section 6). */
export interface OriginEvent {
  id: string;
  kind: EventKind;
  user: string;
  sid: string;
  svc: string;
  type: string;
  seq?: number;
  data?: unknown;
  ts: number;
  trace_id: string;
}

export type OutboxRow = {
  n: number;
  svc: string;
  event_id: string;
  kind: EventKind;
  sid: string;
  /** The sender (the event's `user`). Null on rows written before the column: read from `event` then. */
  user: string | null;
  seq: number | null;
  ack: number;
  event: string;
  bytes: number;
  created: number;
  batch: string | null;
  /** The sending session (its first connection's trace id): answers go to it only. Null on rows written before the column. */
  cid: string | null;
};

/** The batch in flight (or waiting for its retry). */
export interface BatchState {
  id: string;
  svc: string;
  /** ms of the first attempt; retries stop `retry_for_s` after it. */
  first: number;
  attempts: number;
}

/** Batch state per stream (service names come from the policy: bounded). */
const BATCH_PREFIX = "outbox:batch:";
/** Before streams, one batch per room lived here; read once and moved. */
const LEGACY_BATCH_KEY = "outbox:batch";

export class Outbox {
  private readonly storage: DurableObjectStorage;
  private ready = false;
  private totals: { events: number; bytes: number } | null = null;
  /** Per stream, what it holds and who holds it (shares.ts), counted once per stream and wake, then kept. */
  private readonly shares = new Map<string, StreamShares>();
  /** Per stream: when its oldest waiting event was accepted (null: none; absent: not read yet). */
  private readonly oldest = new Map<string, number | null>();
  /** Rows of the batches this instance sealed, until finished (at most one per stream; after a wake they are read back). */
  private readonly sealed = new Map<string, OutboxRow[]>();
  /** Batch state per stream, cached (null: none). Keys are service names from the policy. */
  private readonly batches = new Map<string, BatchState | null>();
  /** Per stream, rows held in memory only (in order; a sealed batch first); all newer than the stream's stored rows. */
  private readonly mem = new Map<string, OutboxRow[]>();
  private memSeq = 0;
  /** Batches sealed from memory rows (their state is not in storage either). */
  private readonly memBatches = new Set<string>();
  /** Per stream, rows in storage (counted once per stream and instance, then kept). */
  private readonly storedCount = new Map<string, number>();
  /** Tests may lower them on a live object. */
  limits: OutboxLimits = DEFAULT_OUTBOX_LIMITS;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  private get sql(): SqlStorage {
    if (!this.ready) {
      this.storage.sql.exec(`CREATE TABLE IF NOT EXISTS outbox (
        n INTEGER PRIMARY KEY,
        svc TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        sid TEXT NOT NULL,
        seq INTEGER,
        ack INTEGER NOT NULL DEFAULT 0,
        event TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created INTEGER NOT NULL,
        batch TEXT,
        cid TEXT,
        user TEXT
      )`);
      // Tables made before the cid or user column: add it (its old rows keep null).
      const cols = this.storage.sql.exec<{ name: string }>("PRAGMA table_info(outbox)").toArray();
      if (!cols.some((c) => c.name === "cid")) this.storage.sql.exec("ALTER TABLE outbox ADD COLUMN cid TEXT");
      if (!cols.some((c) => c.name === "user")) this.storage.sql.exec("ALTER TABLE outbox ADD COLUMN user TEXT");
      this.storage.sql.exec("CREATE INDEX IF NOT EXISTS outbox_batch ON outbox(batch)");
      this.storage.sql.exec("CREATE INDEX IF NOT EXISTS outbox_stream ON outbox(svc, n)");
      const legacy = this.storage.kv.get<BatchState>(LEGACY_BATCH_KEY);
      if (legacy) {
        this.storage.kv.put(BATCH_PREFIX + legacy.svc, legacy);
        this.storage.kv.delete(LEGACY_BATCH_KEY);
      }
      this.ready = true;
    }
    return this.storage.sql;
  }

  /** Events and bytes waiting (computed once per wake, then kept up to date). */
  size(): { events: number; bytes: number } {
    if (!this.totals) {
      const row = this.sql.exec<{ c: number; b: number }>("SELECT COUNT(*) AS c, COALESCE(SUM(bytes), 0) AS b FROM outbox").one();
      this.totals = { events: row.c, bytes: row.b };
    }
    return this.totals;
  }

  /**
   * What a stream holds, per user: read from storage the first time the stream is
   * touched in this instance (its memory rows are all pushed after that), then kept.
   * A row from before the user column counts for the `user` of its event.
   */
  private sharesOf(svc: string): StreamShares {
    let sh = this.shares.get(svc);
    if (!sh) {
      sh = new StreamShares();
      const q = `SELECT kind = 'message' AS m, COALESCE(user, json_extract(event, '$.user'), sid) AS u, COUNT(*) AS c, SUM(bytes) AS b
        FROM outbox WHERE svc = ? GROUP BY m, u`;
      for (const r of this.sql.exec<{ m: number; u: string; c: number; b: number }>(q, svc)) sh.add(r.m === 1, String(r.u), r.c, r.b);
      this.shares.set(svc, sh);
    }
    return sh;
  }

  /** When the stream's oldest waiting event was accepted (null: none), cached per stream. */
  private oldestOf(svc: string): number | null {
    if (this.stored(svc) === 0) return this.mem.get(svc)?.[0]?.created ?? null; // no query per event
    let at = this.oldest.get(svc);
    if (at === undefined) {
      at = this.sql.exec<{ created: number }>("SELECT created FROM outbox WHERE svc = ? ORDER BY n LIMIT 1", svc).toArray()[0]?.created ?? null;
      this.oldest.set(svc, at);
    }
    return at;
  }

  /** Rows of a stream in storage. */
  private stored(svc: string): number {
    let c = this.storedCount.get(svc);
    if (c === undefined) {
      c = this.sql.exec<{ c: number }>("SELECT COUNT(*) AS c FROM outbox WHERE svc = ?", svc).one().c;
      this.storedCount.set(svc, c);
    }
    return c;
  }

  /**
   * Append an event, or say why not (the rules: shares.ts). With `durable` (and
   * always when the stream has rows in storage) it is written before anyone is
   * answered; otherwise it is held in memory until persist(). With `shed`, a
   * message for a stream whose oldest event waited past BACKLOG_SHED_MS is refused
   * if its sender holds strictly more of the stream's waiting messages than any other user.
   */
  push(svc: string, event: OriginEvent, ack: boolean, now: number, shed = false, durable = true, cid = event.trace_id): PushResult {
    const message = event.kind === "message";
    const shares = this.sharesOf(svc);
    if (shed && message && shares.overPart(event.user)) {
      const oldest = this.oldestOf(svc);
      if (oldest !== null && now - oldest > BACKLOG_SHED_MS) return "backlog";
    }
    const json = JSON.stringify(event);
    const bytes = utf8Length(json);
    const refused = message ? shares.refuseMessage(event.user, bytes, this.limits) : shares.refuseLifecycle(bytes, this.limits);
    if (refused) return refused;
    const size = this.size();
    const row: OutboxRow = {
      n: ++this.memSeq,
      svc,
      event_id: event.id,
      kind: event.kind,
      sid: event.sid,
      user: event.user,
      seq: event.seq ?? null,
      ack: ack ? 1 : 0,
      event: json,
      bytes,
      created: now,
      batch: null,
      cid,
    };
    if (!durable) {
      const held = this.mem.get(svc);
      if (held) held.push(row);
      else this.mem.set(svc, [row]);
    } else {
      this.persist(svc); // rows held before this one go first
      const before = this.stored(svc);
      this.insert(row);
      this.storedCount.set(svc, before + 1);
      if (this.oldest.get(svc) === null) this.oldest.set(svc, now);
    }
    size.events += 1;
    size.bytes += bytes;
    shares.add(message, event.user, 1, bytes);
    return "ok";
  }

  private insert(r: OutboxRow): void {
    this.sql.exec(
      "INSERT INTO outbox (svc, event_id, kind, sid, seq, ack, event, bytes, created, batch, cid, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      r.svc,
      r.event_id,
      r.kind,
      r.sid,
      r.seq,
      r.ack,
      r.event,
      r.bytes,
      r.created,
      r.batch,
      r.cid,
      r.user,
    );
  }

  /**
   * Write a stream's memory rows (and the state of a batch sealed from them) to
   * storage, in order: from now on they survive eviction and restarts. Returns
   * whether anything was written.
   */
  persist(svc: string): boolean {
    const held = this.mem.get(svc);
    if (!held || held.length === 0) return false;
    this.mem.delete(svc);
    const before = this.stored(svc);
    for (const r of held) this.insert(r);
    this.storedCount.set(svc, before + held.length);
    this.oldest.delete(svc); // read again from storage
    const batch = this.batches.get(svc);
    if (batch && this.memBatches.delete(batch.id)) this.storage.kv.put(BATCH_PREFIX + svc, batch);
    return true;
  }

  /**
   * The highest `seq` of an ACK_REQUESTED message of session `cid` still waiting
   * here (in memory or in storage), 0 if none: a resume's `last_seq` covers it,
   * so its resend is not forwarded a second time.
   */
  highestSeq(cid: string): number {
    let max = this.sql.exec<{ m: number | null }>("SELECT MAX(seq) AS m FROM outbox WHERE cid = ? AND ack = 1", cid).one().m ?? 0;
    for (const held of this.mem.values()) for (const r of held) if (r.cid === cid && r.ack === 1 && r.seq !== null) max = Math.max(max, r.seq);
    return max;
  }

  /** Whether a batch's rows are in storage (false: held in memory only). */
  isStored(batchId: string): boolean {
    return !this.memBatches.has(batchId);
  }

  /** Services with events waiting (after a wake, every stream to resume). */
  streams(): string[] {
    const svcs = new Set(this.sql.exec<{ svc: string }>("SELECT DISTINCT svc FROM outbox").toArray().map((r) => r.svc));
    for (const [svc, held] of this.mem) if (held.length > 0) svcs.add(svc);
    return [...svcs];
  }

  /** The first unsent events of a stream, up to `max`, in order. */
  headRun(svc: string, max: number): OutboxRow[] {
    if (this.stored(svc) === 0) {
      const held = this.mem.get(svc) ?? [];
      const start = held.findIndex((r) => r.batch === null);
      return start < 0 ? [] : held.slice(start, start + max);
    }
    return this.sql.exec<OutboxRow>("SELECT * FROM outbox WHERE svc = ? AND batch IS NULL ORDER BY n LIMIT ?", svc, max).toArray();
  }

  /** The stream's batch in flight (or waiting for its retry); read from storage once per stream and instance. */
  current(svc: string): BatchState | undefined {
    if (!this.batches.has(svc)) {
      void this.sql; // runs the schema setup (and the legacy batch's move) first
      this.batches.set(svc, this.storage.kv.get<BatchState>(BATCH_PREFIX + svc) ?? null);
    }
    return this.batches.get(svc) ?? undefined;
  }

  /** Seal a stream's head run into a batch with a stable webhook id. */
  seal(rows: OutboxRow[], id: string, now: number): BatchState {
    const svc = rows[0]!.svc;
    if (this.stored(svc) === 0) {
      // Memory rows: sealed in place; written (with this state) only if they must wait.
      for (const r of rows) r.batch = id;
      const state: BatchState = { id, svc, first: now, attempts: 0 };
      this.batches.set(svc, state);
      this.memBatches.add(id);
      this.sealed.set(id, rows);
      return state;
    }
    const last = rows[rows.length - 1]!;
    this.sql.exec("UPDATE outbox SET batch = ? WHERE svc = ? AND batch IS NULL AND n BETWEEN ? AND ?", id, svc, rows[0]!.n, last.n);
    const state: BatchState = { id, svc, first: now, attempts: 0 };
    this.storage.kv.put(BATCH_PREFIX + svc, state);
    this.batches.set(svc, state);
    this.sealed.set(id, rows.map((r) => ({ ...r, batch: id })));
    return state;
  }

  /** Persist a batch's attempt count (before a retry: a lost count only restarts the backoff). */
  update(state: BatchState): void {
    this.persist(state.svc); // a batch that waits for a retry is durable
    this.storage.kv.put(BATCH_PREFIX + state.svc, state);
  }

  rows(batchId: string): OutboxRow[] {
    const sealed = this.sealed.get(batchId);
    if (sealed) return sealed; // sealed by this instance: no need to read them back
    return this.sql.exec<OutboxRow>("SELECT * FROM outbox WHERE batch = ? ORDER BY n", batchId).toArray();
  }

  /** Drop a finished batch (delivered, rejected or given up): `rows` are its rows, as read for the attempt. */
  finish(svc: string, batchId: string, rows: readonly OutboxRow[]): void {
    const shares = this.shares.get(svc);
    for (const r of rows) {
      if (this.totals) {
        this.totals.events -= 1;
        this.totals.bytes -= r.bytes;
      }
      shares?.add(r.kind === "message", rowUser(r), 1, r.bytes, -1);
    }
    const stored = !this.memBatches.delete(batchId);
    if (stored) {
      this.sql.exec("DELETE FROM outbox WHERE batch = ?", batchId);
      const c = this.storedCount.get(svc);
      if (c !== undefined) this.storedCount.set(svc, Math.max(0, c - rows.length));
    } else {
      // A memory batch is the head of its stream's memory rows (sealed from the
      // head, finished before the next is sealed): drop that many from the front,
      // not a scan of the whole backlog per batch.
      const held = this.mem.get(svc) ?? [];
      let k = 0;
      while (k < held.length && held[k]!.batch === batchId) k++;
      if (k > 0) held.splice(0, k);
      else if (held.some((r) => r.batch === batchId)) this.mem.set(svc, held.filter((r) => r.batch !== batchId));
      if ((this.mem.get(svc) ?? []).length === 0) this.mem.delete(svc);
    }
    this.sealed.delete(batchId);
    this.oldest.delete(svc); // read again when next needed
    if (this.current(svc)?.id === batchId) {
      if (stored) this.storage.kv.delete(BATCH_PREFIX + svc);
      this.batches.set(svc, null);
    }
  }
}

/** A row's sender: its column, or (rows from before the column) its event's `user`, or its sid. */
function rowUser(r: OutboxRow): string {
  if (r.user !== null && r.user !== undefined) return r.user;
  try {
    const u = (JSON.parse(r.event) as { user?: unknown }).user;
    if (typeof u === "string") return u;
  } catch {
    // not JSON: count it for its sid, as the query does
  }
  return r.sid;
}
