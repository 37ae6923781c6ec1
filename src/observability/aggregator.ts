/**
 * Gateway-wide metrics: every object keeps its counters in memory (`Counters`,
 * metrics.ts) and flushes the deltas into the `MetricsObject`, which keeps the
 * totals in SQLite; `GET /metrics` (src/worker/metrics.ts) reads them back.
 *
 *  - Sharding: METRICS_SHARDS objects named `metrics/<n>`; a sender always goes
 *    to the shard its source id hashes to, and a scrape sums every shard
 *    (shards.ts).
 *  - Exactly once: every sender has a random `source` id and numbers its
 *    batches 1, 2, 3… (`seq`). The aggregator applies a batch only when its seq
 *    is above the last one it applied for that source, in one transaction with
 *    the totals, so re-sending a batch whose answer was lost counts it once
 *    (metrics-object.ts; the senders' one send loop is sender.ts).
 *  - Nothing lost: a room writes the batch to its own storage before sending it
 *    and removes it only once acknowledged (room-flusher.ts); a batch that
 *    failed is retried on the room's alarm, one still pending after an eviction
 *    is re-sent on the next wake. Worker isolates keep theirs in memory
 *    (worker-flusher.ts).
 *  - Gauges (`wsprism_ws_sessions_active`) are absolute: each source reports its
 *    current values, which replace its previous report, and a report lives
 *    GAUGE_TTL_MS unless refreshed, so a room that died without reporting 0
 *    leaves no ghost sessions behind.
 *
 * Label values come from the compiled policy or fixed enums only (see
 * metrics.ts); the aggregator also refuses malformed series and caps their
 * number (MAX_SERIES per shard).
 *
 * This module is the entry point the rest of the gateway imports from.
 */
export {
  GAUGE_TTL_MS,
  MAX_BATCH_AGE_MS,
  METRICS_SHARDS,
  SESSIONS_GAUGE,
  SOURCE_TTL_MS,
  type AddResult,
  type FlushBatch,
  type MetricsSink,
  type MetricsSnapshot,
} from "./batch.ts";
export { MAX_SERIES, MetricsObject } from "./metrics-object.ts";
export {
  FLUSH_DELAY_MS,
  FLUSH_INTERVAL_MS,
  METRICS_ALARM,
  ROOM_STATE_KEY,
  RoomMetrics,
  type RetryScheduler,
  type RoomMetricsOptions,
  type SessionCounts,
} from "./room-flusher.ts";
export { collect, shardOf, shardStub, sinkFor } from "./shards.ts";
export { flushWorkerMetrics, recordWorkerMetric, WORKER_FLUSH_DELAY_MS } from "./worker-flusher.ts";
