/**
 * The room side of the metrics: RoomMetrics flushes a room's `Counters` and
 * its session gauge to the aggregator, durably (the outbox lives in the room's
 * storage until acknowledged) and with retries on the room's alarm.
 */
import type { Env } from "../env.ts";
import { SESSIONS_GAUGE, type MetricsSink } from "./batch.ts";
import { log } from "./log.ts";
import type { Counters } from "./metrics.ts";
import { seriesKey } from "./prometheus.ts";
import { BatchSender, newOutbox, queueBatch, type Outbox } from "./sender.ts";
import { sinkFor } from "./shards.ts";

/** A room flushes this long after the first increment following a quiet period. */
export const FLUSH_DELAY_MS = 1_000;
/** …and at most once per this interval while it stays busy. */
export const FLUSH_INTERVAL_MS = 5_000;
/** AlarmMux deadline name of a room's metrics retry. */
export const METRICS_ALARM = "metrics";
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 5 * 60_000;

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

export const ROOM_STATE_KEY = "metrics:state";

/**
 * A room's flusher. It watches the room's `Counters` (every `inc` arms a short
 * timer, and a pending timer keeps the object from hibernating, so deltas are
 * always flushed before it can), reports the session gauge, and sends batches
 * exactly once (see aggregator.ts).
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
  private readonly sender: BatchSender;
  private state: Outbox | undefined;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<boolean> | null = null;
  private next: Promise<boolean> | null = null;
  private gaugeDirty = false;
  private lastFlush = 0;
  private retryAt = 0;

  constructor(ctx: DurableObjectState, env: Env, counters: Counters, sessions: SessionCounts, opts: RoomMetricsOptions = {}) {
    this.storage = ctx.storage;
    this.counters = counters;
    this.sessions = sessions;
    this.alarms = opts.alarms;
    this.sink = opts.sink ?? ((source) => sinkFor(env, source));
    this.delayMs = opts.delayMs ?? FLUSH_DELAY_MS;
    this.intervalMs = opts.intervalMs ?? FLUSH_INTERVAL_MS;
    this.sender = new BatchSender({
      persist: (box) => this.storage.kv.put(ROOM_STATE_KEY, box),
      failed: (attempts) => {
        this.retryAt = Date.now() + backoff(attempts);
        this.alarms?.scheduleBy(METRICS_ALARM, this.retryAt);
      },
      recovered: () => {
        this.retryAt = 0;
        this.alarms?.clear(METRICS_ALARM);
      },
    });
    // Every increment arms the flush timer: no code path can leave deltas behind.
    counters.onInc(() => this.touch());
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

  /** Lease renewal (every RENEW_MS while the room has sessions): refresh the gauge report now. */
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

  private load(): Outbox | undefined {
    return (this.state ??= this.storage.kv.get<Outbox>(ROOM_STATE_KEY));
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
    const box = (this.state = this.load() ?? newOutbox("r"));
    const gauges = this.gaugeReport();
    // Gauges go with every batch while the room has sessions (that refreshes them),
    // and once more after a change to 0 (that clears them).
    const withGauges = this.gaugeDirty || gauges.length > 0;
    if (queueBatch(box, this.counters, now, withGauges ? gauges : undefined)) this.gaugeDirty = false;
    if (box.pending.length > 0) this.lastFlush = now;
    return this.sender.send(box, this.sink(box.source));
  }
}

function backoff(attempts: number): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.5 + Math.random() * 0.5));
}
