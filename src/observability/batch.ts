/**
 * What senders (rooms, Worker isolates) and the aggregator agree on: the batch
 * format, the result of a flush, and the limits both sides apply. The design
 * (sharding, exactly once, gauges with a TTL) is described in aggregator.ts.
 */
import { RENEW_MS } from "../governance/directory.ts";
import type { MetricName } from "./prometheus.ts";

/** Number of aggregator objects. Raise it when one object cannot take the flush rate (see docs/operations.md). */
export const METRICS_SHARDS = 1;
/**
 * A gauge report not refreshed for this long no longer counts: two missed
 * refreshes plus slack. Rooms refresh theirs on every lease renewal (RENEW_MS,
 * RoomObject.renew), so the two periods are one constant.
 */
export const GAUGE_TTL_MS = 2 * RENEW_MS + 10_000;
/** The aggregator forgets a source (its last seq) after this long without a batch. */
export const SOURCE_TTL_MS = 7 * 24 * 3600_000;
/** Batches older than this are dropped unsent/unapplied, so a forgotten source cannot be double counted. */
export const MAX_BATCH_AGE_MS = SOURCE_TTL_MS - 24 * 3600_000;

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
