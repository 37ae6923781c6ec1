/**
 * The aggregator object: it keeps the gateway's counter totals and the
 * sources' gauge reports in SQLite, applies each source's batches exactly once
 * and in order (its last seq, in the same transaction as the totals), refuses
 * malformed series and caps their number. aggregator.ts has the whole design.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";
import { GAUGE_TTL_MS, MAX_BATCH_AGE_MS, SOURCE_TTL_MS, type AddResult, type FlushBatch, type MetricsSnapshot } from "./batch.ts";
import { parseSeriesKey, seriesKey } from "./prometheus.ts";

/** Most distinct counter series one aggregator shard keeps. */
export const MAX_SERIES = 20_000;
/** Most gauge series one source may report. */
const MAX_GAUGES_PER_SOURCE = 64;
/** How often `add` deletes forgotten sources and expired gauges. */
const PRUNE_EVERY_MS = 3600_000;

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
    isPairs(b.deltas) &&
    (b.gauges === undefined || isPairs(b.gauges))
  );
}

/** A list of [series key, number] pairs. */
function isPairs(list: unknown): boolean {
  return Array.isArray(list) && list.every((p) => Array.isArray(p) && typeof p[0] === "string" && typeof p[1] === "number");
}
