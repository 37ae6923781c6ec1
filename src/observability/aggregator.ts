/**
 * Gateway-wide metrics: every object keeps its counters in memory (`Counters`,
 * metrics.ts) and flushes the deltas into the `MetricsObject`, which keeps the
 * totals in SQLite; `GET /metrics` (src/worker/metrics.ts) reads them back.
 *
 *  - Sharding: METRICS_SHARDS objects named `metrics/<n>`; a sender always goes
 *    to the shard its source id hashes to, and a scrape sums every shard.
 *  - Exactly once: every sender has a random `source` id and numbers its
 *    batches 1, 2, 3… (`seq`). The aggregator applies a batch only when its seq
 *    is above the last one it applied for that source, in one transaction with
 *    the totals, so re-sending a batch whose answer was lost counts it once.
 *  - Nothing lost: a room writes the batch to its own storage before sending it
 *    and removes it only once acknowledged (RoomMetrics below); a batch that
 *    failed is retried on the room's alarm, one still pending after an eviction
 *    is re-sent on the next wake.
 *  - Gauges (`wsprism_ws_sessions_active`) are absolute: each source reports its
 *    current values, which replace its previous report, and a report lives
 *    GAUGE_TTL_MS unless refreshed, so a room that died without reporting 0
 *    leaves no ghost sessions behind.
 *
 * Label values come from the compiled policy or fixed enums only (see
 * metrics.ts); the aggregator also refuses malformed series and caps their
 * number (MAX_SERIES per shard).
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";
import { log } from "./log.ts";
import { Counters, type Labels } from "./metrics.ts";
import { parseSeriesKey, seriesKey, type MetricName } from "./prometheus.ts";

/** Number of aggregator objects. Raise it when one object cannot take the flush rate (see docs/operations.md). */
export const METRICS_SHARDS = 1;
/** A room flushes this long after the first increment following a quiet period. */
export const FLUSH_DELAY_MS = 1_000;
/** …and at most once per this interval while it stays busy. */
export const FLUSH_INTERVAL_MS = 5_000;
/** The rooms' housekeeping period: a room with sessions refreshes its gauge at least this often. */
export const GAUGE_REFRESH_MS = 30_000;
/** A gauge report not refreshed for this long no longer counts (two missed refreshes plus slack). */
export const GAUGE_TTL_MS = 2 * GAUGE_REFRESH_MS + 10_000;
/** AlarmMux deadline name of a room's metrics retry. */
export const METRICS_ALARM = "metrics";
/** The aggregator forgets a source (its last seq) after this long without a batch. */
export const SOURCE_TTL_MS = 7 * 24 * 3600_000;
/** Batches older than this are dropped unsent/unapplied, so a forgotten source cannot be double counted. */
export const MAX_BATCH_AGE_MS = SOURCE_TTL_MS - 24 * 3600_000;
/** Most distinct counter series one aggregator shard keeps. */
export const MAX_SERIES = 20_000;
/** Most gauge series one source may report. */
const MAX_GAUGES_PER_SOURCE = 64;
/** Most unacknowledged batches a sender keeps; beyond it new deltas wait in memory. */
const MAX_PENDING_BATCHES = 16;
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 5 * 60_000;
/** A flush RPC that takes longer is treated as failed (and retried, idempotently). */
const SEND_TIMEOUT_MS = 10_000;
const PRUNE_EVERY_MS = 3600_000;

export const SESSIONS_GAUGE: MetricName = "wsprism_ws_sessions_active";

/** One flush from one sender. */
export interface FlushBatch {
  /** Random id of the sender (a room's metrics state, a Worker isolate). */
  source: string;
  /** 1, 2, 3… per source; applied once, in order. */
  seq: number;
  /** When the batch was made (ms since epoch). */
  at: number;
  /** Counter increments by series key. */
  deltas: Array<[string, number]>;
  /**
   * The source's current gauge values by series key, replacing its previous
   * report and refreshing it for GAUGE_TTL_MS (an empty list clears it).
   * Absent: the source's gauges are left as they are.
   */
  gauges?: Array<[string, number]>;
}

export interface AddResult {
  applied: number;
  duplicates: number;
}

export interface MetricsSnapshot {
  counters: Array<[string, number]>;
  gauges: Array<[string, number]>;
}

/** What a sender talks to: the aggregator's stub (or a test double). */
export interface MetricsSink {
  add(batches: FlushBatch[]): Promise<AddResult>;
}

// --- the aggregator ----------------------------------------------------------

export class MetricsObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Series already in `counters` (loaded lazily). */
  private known: Set<string> | null = null;
  private lastPrune = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value REAL NOT NULL);
      CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, seq INTEGER NOT NULL, seen INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS sources_seen ON sources (seen);
      CREATE TABLE IF NOT EXISTS gauges (source TEXT NOT NULL, key TEXT NOT NULL, value REAL NOT NULL,
        expires INTEGER NOT NULL, PRIMARY KEY (source, key));
      CREATE INDEX IF NOT EXISTS gauges_expires ON gauges (expires);`);
  }

  /** Apply batches in order; a batch whose seq was applied already (a retry) is skipped. */
  async add(batches: FlushBatch[]): Promise<AddResult> {
    const now = Date.now();
    let applied = 0;
    let duplicates = 0;
    this.ctx.storage.transactionSync(() => {
      for (const b of batches) {
        if (!validBatch(b) || now - b.at > MAX_BATCH_AGE_MS) {
          this.dropped("malformed");
          continue;
        }
        const last = this.sql.exec<{ seq: number }>("SELECT seq FROM sources WHERE source = ?", b.source).toArray()[0];
        if (last && b.seq <= last.seq) {
          duplicates++;
          continue;
        }
        for (const [key, n] of b.deltas) this.addCounter(key, n);
        if (b.gauges) this.setGauges(b.source, b.gauges, now);
        this.sql.exec(
          `INSERT INTO sources (source, seq, seen) VALUES (?, ?, ?)
           ON CONFLICT (source) DO UPDATE SET seq = excluded.seq, seen = excluded.seen`,
          b.source,
          b.seq,
          now,
        );
        applied++;
      }
    });
    if (now - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = now;
      this.sql.exec("DELETE FROM sources WHERE seen < ?", now - SOURCE_TTL_MS);
      this.sql.exec("DELETE FROM gauges WHERE expires < ?", now);
    }
    return { applied, duplicates };
  }

  /** Counter totals, and gauges summed over the sources whose report is fresh. */
  async snapshot(): Promise<MetricsSnapshot> {
    const now = Date.now();
    this.sql.exec("DELETE FROM gauges WHERE expires < ?", now);
    const counters = this.sql
      .exec<{ key: string; value: number }>("SELECT key, value FROM counters")
      .toArray()
      .map((r): [string, number] => [r.key, r.value]);
    const gauges = this.sql
      .exec<{ key: string; value: number }>("SELECT key, SUM(value) AS value FROM gauges GROUP BY key")
      .toArray()
      .map((r): [string, number] => [r.key, r.value]);
    return { counters, gauges };
  }

  private knownSeries(): Set<string> {
    return (this.known ??= new Set(this.sql.exec<{ key: string }>("SELECT key FROM counters").toArray().map((r) => r.key)));
  }

  private addCounter(key: string, n: number): void {
    if (!(n > 0) || !Number.isFinite(n)) return; // counters only go up
    const known = this.knownSeries();
    if (!known.has(key)) {
      if (!parseSeriesKey(key)) return this.dropped("malformed");
      if (known.size >= MAX_SERIES) return this.dropped("series_cap");
      known.add(key);
    }
    this.bump(key, n);
  }

  private bump(key: string, n: number): void {
    this.sql.exec(
      "INSERT INTO counters (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
      key,
      n,
    );
  }

  private dropped(reason: "malformed" | "series_cap"): void {
    const key = seriesKey("wsprism_metrics_dropped_total", { reason });
    this.knownSeries().add(key);
    this.bump(key, 1);
  }

  private setGauges(source: string, values: Array<[string, number]>, now: number): void {
    this.sql.exec("DELETE FROM gauges WHERE source = ?", source);
    let n = 0;
    for (const [key, value] of values) {
      if (value === 0 || !Number.isFinite(value)) continue;
      if (n >= MAX_GAUGES_PER_SOURCE || !parseSeriesKey(key)) {
        this.dropped("malformed");
        continue;
      }
      n++;
      this.sql.exec(
        `INSERT INTO gauges (source, key, value, expires) VALUES (?, ?, ?, ?)
         ON CONFLICT (source, key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
        source,
        key,
        value,
        now + GAUGE_TTL_MS,
      );
    }
  }
}

function validBatch(b: FlushBatch): boolean {
  return (
    typeof b === "object" &&
    b !== null &&
    typeof b.source === "string" &&
    b.source.length > 0 &&
    b.source.length <= 128 &&
    Number.isSafeInteger(b.seq) &&
    b.seq > 0 &&
    typeof b.at === "number" &&
    Array.isArray(b.deltas) &&
    b.deltas.every((d) => Array.isArray(d) && typeof d[0] === "string" && typeof d[1] === "number") &&
    (b.gauges === undefined ||
      (Array.isArray(b.gauges) && b.gauges.every((g) => Array.isArray(g) && typeof g[0] === "string" && typeof g[1] === "number")))
  );
}

// --- addressing --------------------------------------------------------------

/** Shard of a source id (FNV-1a). */
export function shardOf(source: string, shards = METRICS_SHARDS): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < source.length; i++) {
    h ^= source.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

export function shardStub(env: Env, shard: number): DurableObjectStub<MetricsObject> {
  return env.METRICS.get(env.METRICS.idFromName(`metrics/${shard}`));
}

/** The aggregator shard a source sends to. */
export function sinkFor(env: Env, source: string): MetricsSink {
  return shardStub(env, shardOf(source)) as unknown as MetricsSink;
}

/** Everything the aggregator holds: counters and fresh gauges, summed over all shards. Throws if a shard fails. */
export async function collect(env: Env): Promise<MetricsSnapshot> {
  const parts = (await Promise.all(
    Array.from({ length: METRICS_SHARDS }, (_, i) => shardStub(env, i).snapshot()),
  )) as MetricsSnapshot[];
  const counters = new Map<string, number>();
  const gauges = new Map<string, number>();
  for (const p of parts) {
    for (const [k, v] of p.counters) counters.set(k, (counters.get(k) ?? 0) + v);
    for (const [k, v] of p.gauges) gauges.set(k, (gauges.get(k) ?? 0) + v);
  }
  return { counters: [...counters], gauges: [...gauges] };
}

function newSource(prefix: string): string {
  return `${prefix}_${crypto.randomUUID()}`;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`metrics flush timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
}

function backoff(attempts: number): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.5 + Math.random() * 0.5));
}

function nonZero(m: Map<string, number>): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const [k, v] of m) if (v !== 0) out.push([k, v]);
  return out;
}

// --- the room side -----------------------------------------------------------

/** The part of the room's AlarmMux the flusher uses (durable retries). */
export interface RetryScheduler {
  scheduleBy(name: string, at: number): void;
  clear(name: string): void;
}

/** The room's current sessions per tenant (a room has one tenant; 0 or absent = none). */
export type SessionCounts = () => Iterable<readonly [tenant: string, sessions: number]>;

export interface RoomMetricsOptions {
  /** The room's AlarmMux: failed flushes are retried on METRICS_ALARM (the room's alarm() must call flush()). */
  alarms?: RetryScheduler;
  /** Where batches go; default: the aggregator shard of this room's source. For tests. */
  sink?: (source: string) => MetricsSink;
  delayMs?: number;
  intervalMs?: number;
}

interface RoomState {
  source: string;
  /** Last seq handed out. */
  seq: number;
  /** Batches written before sending and not yet acknowledged, oldest first. */
  pending: FlushBatch[];
}

export const ROOM_STATE_KEY = "metrics:state";

/**
 * A room's flusher. It watches the room's `Counters` (every `inc` arms a short
 * timer, and a pending timer keeps the object from hibernating, so deltas are
 * always flushed before it can), reports the session gauge, and sends batches
 * exactly once (see the top of this file).
 *
 * Storage: one kv entry (ROOM_STATE_KEY), written before each send and after
 * each acknowledgement: two row writes per flush, at most one flush per
 * FLUSH_INTERVAL_MS while the room is busy.
 */
export class RoomMetrics {
  private readonly storage: DurableObjectStorage;
  private readonly counters: Counters;
  private readonly sessions: SessionCounts;
  private readonly alarms: RetryScheduler | undefined;
  private readonly sink: (source: string) => MetricsSink;
  private readonly delayMs: number;
  private readonly intervalMs: number;
  private state: RoomState | undefined;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<boolean> | null = null;
  private next: Promise<boolean> | null = null;
  private gaugeDirty = false;
  private lastFlush = 0;
  private attempts = 0;
  private retryAt = 0;

  constructor(ctx: DurableObjectState, env: Env, counters: Counters, sessions: SessionCounts, opts: RoomMetricsOptions = {}) {
    this.storage = ctx.storage;
    this.counters = counters;
    this.sessions = sessions;
    this.alarms = opts.alarms;
    this.sink = opts.sink ?? ((source) => sinkFor(env, source));
    this.delayMs = opts.delayMs ?? FLUSH_DELAY_MS;
    this.intervalMs = opts.intervalMs ?? FLUSH_INTERVAL_MS;
    // Every increment arms the flush timer: no code path can leave deltas behind.
    const inc = counters.inc.bind(counters);
    counters.inc = (name: string, labels: Labels, by?: number) => {
      inc(name, labels, by);
      this.touch();
    };
    // Batches left unacknowledged by an earlier incarnation (eviction mid-send): re-send soon.
    if ((this.load()?.pending.length ?? 0) > 0) this.arm(this.delayMs);
  }

  /** Arm the flush timer when there is something to send. Cheap; called on every increment. */
  touch(): void {
    if (this.timer !== null || this.running !== null) return;
    // Unacknowledged batches alone need no timer when the alarm retries them (the object may sleep).
    const pendingOnly = !this.alarms && (this.state?.pending.length ?? 0) > 0;
    if (this.counters.values.size === 0 && !this.gaugeDirty && !pendingOnly) return;
    const now = Date.now();
    this.arm(Math.max(this.delayMs, this.lastFlush + this.intervalMs - now, this.retryAt - now));
  }

  /**
   * The room's session count changed (a member joined or left). Reported with
   * the next flush, or at once when the room has no sessions left (its last
   * socket left: the object may go idle right after).
   */
  sessionsChanged(): Promise<boolean> {
    this.gaugeDirty = true;
    if (this.totalSessions() === 0) return this.flush();
    this.touch();
    return Promise.resolve(true);
  }

  /** Housekeeping (every GAUGE_REFRESH_MS while the room has sessions): refresh the gauge report now. */
  touchGauge(): Promise<boolean> {
    this.gaugeDirty = true;
    return this.flush();
  }

  /** Send everything now (also the METRICS_ALARM handler). True when nothing is left unacknowledged. */
  flush(): Promise<boolean> {
    // One send at a time; a flush asked for meanwhile runs right after it.
    if (this.running) return (this.next ??= this.running.then(() => {
      this.next = null;
      return this.flush();
    }));
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const run = this.run()
      .catch((err: unknown) => {
        log("error", "metrics.flush_error", { trace_id: "-", error: String(err).slice(0, 200) });
        return false;
      })
      .finally(() => {
        this.running = null;
        this.touch();
      });
    this.running = run;
    return run;
  }

  /** Unacknowledged batches in storage (tests, diagnostics). */
  pendingBatches(): number {
    return this.load()?.pending.length ?? 0;
  }

  private arm(ms: number): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, Math.max(0, ms));
  }

  private load(): RoomState | undefined {
    return (this.state ??= this.storage.kv.get<RoomState>(ROOM_STATE_KEY));
  }

  private totalSessions(): number {
    let n = 0;
    for (const [, c] of this.sessions()) n += c;
    return n;
  }

  private gaugeReport(): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    for (const [tenant, n] of this.sessions()) if (n > 0) out.push([seriesKey(SESSIONS_GAUGE, { tenant }), n]);
    return out;
  }

  private async run(): Promise<boolean> {
    const now = Date.now();
    const st: RoomState = this.load() ?? { source: newSource("r"), seq: 0, pending: [] };
    st.pending = st.pending.filter((b) => now - b.at <= MAX_BATCH_AGE_MS);
    const gauges = this.gaugeReport();
    // Gauges go with every batch while the room has sessions (that refreshes them),
    // and once more after a change to 0 (that clears them).
    const withGauges = this.gaugeDirty || gauges.length > 0;
    if (st.pending.length < MAX_PENDING_BATCHES) {
      const deltas = nonZero(this.counters.drain());
      if (deltas.length > 0 || withGauges) {
        st.seq += 1;
        const batch: FlushBatch = { source: st.source, seq: st.seq, at: now, deltas };
        if (withGauges) batch.gauges = gauges;
        st.pending.push(batch);
        this.gaugeDirty = false;
      }
    }
    if (st.pending.length === 0) {
      this.state = st;
      return true;
    }
    // Durable before it leaves: storage writes complete before the runtime lets the request out.
    this.state = st;
    this.storage.kv.put(ROOM_STATE_KEY, st);
    const sending = st.pending.slice();
    this.lastFlush = now;
    try {
      await withTimeout(this.sink(st.source).add(sending), SEND_TIMEOUT_MS);
    } catch (err) {
      this.attempts += 1;
      this.retryAt = Date.now() + backoff(this.attempts);
      this.alarms?.scheduleBy(METRICS_ALARM, this.retryAt);
      if (this.attempts === 1 || this.attempts % 10 === 0) {
        log("warn", "metrics.flush_failed", { trace_id: "-", source: st.source, batches: sending.length, attempt: this.attempts, error: String(err).slice(0, 200) });
      }
      return false;
    }
    const acked = new Set(sending.map((b) => b.seq));
    st.pending = st.pending.filter((b) => !acked.has(b.seq));
    this.storage.kv.put(ROOM_STATE_KEY, st);
    if (this.attempts > 0) {
      this.attempts = 0;
      this.retryAt = 0;
      this.alarms?.clear(METRICS_ALARM);
    }
    return st.pending.length === 0;
  }
}

// --- the Worker side ---------------------------------------------------------

/** Worker isolates batch their increments for this long before sending. */
export const WORKER_FLUSH_DELAY_MS = 1_000;
/** Rounds one request's waitUntil sends at most (well inside the waitUntil time limit). */
const WORKER_MAX_ROUNDS = 5;

/**
 * Per-isolate state: increments wait here and go out in one batch per
 * WORKER_FLUSH_DELAY_MS, sent from inside the request that scheduled it
 * (`ctx.waitUntil`), so a flood of rejected upgrades costs the aggregator one
 * call per isolate per second, not one per request. An isolate that dies
 * loses its last second of Worker-side increments.
 */
const worker = {
  counters: null as Counters | null,
  source: "",
  seq: 0,
  pending: [] as FlushBatch[],
  scheduled: false,
  attempts: 0,
};

function workerCounters(): Counters {
  return (worker.counters ??= new Counters());
}

/**
 * Count something that happens in the Worker (not in a room): rejected
 * upgrades, handshake defender refusals. Label values must come from the
 * compiled policy or fixed enums (use tenantLabel() for a tenant id).
 */
export function recordWorkerMetric(
  env: Env,
  ctx: Pick<ExecutionContext, "waitUntil"> | undefined,
  name: MetricName,
  labels: Labels,
  by = 1,
): void {
  workerCounters().inc(name, labels, by);
  if (worker.scheduled) return;
  worker.scheduled = true;
  const p = pumpWorker(env);
  if (ctx) ctx.waitUntil(p);
}

/** Inside one request's waitUntil: send every WORKER_FLUSH_DELAY_MS while increments keep coming (a few rounds at most). */
async function pumpWorker(env: Env): Promise<void> {
  try {
    for (let round = 0; round < WORKER_MAX_ROUNDS; round++) {
      await new Promise((resolve) => setTimeout(resolve, WORKER_FLUSH_DELAY_MS));
      const ok = await flushWorkerMetrics(env);
      if (!ok || workerCounters().values.size === 0) break;
    }
  } catch {
    // flushWorkerMetrics keeps what it could not send; the next increment schedules a new round
  } finally {
    worker.scheduled = false;
  }
}

/** Send the isolate's pending Worker-side increments now. True when nothing is left unacknowledged. */
export async function flushWorkerMetrics(env: Env, sink?: MetricsSink): Promise<boolean> {
  const now = Date.now();
  worker.source ||= newSource("w");
  if (worker.pending.length < MAX_PENDING_BATCHES) {
    const deltas = nonZero(workerCounters().drain());
    if (deltas.length > 0) worker.pending.push({ source: worker.source, seq: ++worker.seq, at: now, deltas });
  }
  if (worker.pending.length === 0) return true;
  const sending = worker.pending.slice();
  try {
    await withTimeout((sink ?? sinkFor(env, worker.source)).add(sending), SEND_TIMEOUT_MS);
  } catch (err) {
    worker.attempts += 1;
    if (worker.attempts === 1 || worker.attempts % 10 === 0) {
      log("warn", "metrics.flush_failed", { trace_id: "-", source: worker.source, batches: sending.length, attempt: worker.attempts, error: String(err).slice(0, 200) });
    }
    return false;
  }
  worker.attempts = 0;
  const acked = new Set(sending.map((b) => b.seq));
  worker.pending = worker.pending.filter((b) => !acked.has(b.seq));
  return worker.pending.length === 0;
}
