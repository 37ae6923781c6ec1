/**
 * The one send loop both flushers use (a room's RoomMetrics, an isolate's
 * Worker-side counters): drained deltas become numbered batches in an outbox,
 * and the whole outbox is sent until the aggregator acknowledges it. A batch
 * keeps its seq across retries, so a re-sent batch whose answer was lost is
 * counted once (the aggregator skips seqs it applied already).
 */
import { log } from "./log.ts";
import { MAX_BATCH_AGE_MS, type FlushBatch, type MetricsSink } from "./batch.ts";
import type { Counters } from "./metrics.ts";

/** Most unacknowledged batches a sender keeps; beyond it new deltas wait in the counters. */
export const MAX_PENDING_BATCHES = 16;
/** A flush RPC that takes longer is treated as failed (and retried, idempotently). */
const SEND_TIMEOUT_MS = 10_000;

/** A sender's batches: a room keeps this in its storage, an isolate in memory. */
export interface Outbox {
  source: string;
  /** Last seq handed out. */
  seq: number;
  /** Batches made and not yet acknowledged, oldest first. */
  pending: FlushBatch[];
}

export function newOutbox(prefix: "r" | "w"): Outbox {
  return { source: `${prefix}_${crypto.randomUUID()}`, seq: 0, pending: [] };
}

/**
 * Turn what `counters` hold into the next batch, with `gauges` when given.
 * Nothing is drained while MAX_PENDING_BATCHES wait (the deltas keep adding up
 * in memory instead), and batches too old to be applied are dropped first.
 * True when a batch was made.
 */
export function queueBatch(box: Outbox, counters: Counters, now: number, gauges?: Array<[string, number]>): boolean {
  box.pending = box.pending.filter((b) => now - b.at <= MAX_BATCH_AGE_MS);
  if (box.pending.length >= MAX_PENDING_BATCHES) return false;
  const deltas: Array<[string, number]> = [];
  for (const [k, v] of counters.drain()) if (v !== 0) deltas.push([k, v]);
  if (deltas.length === 0 && gauges === undefined) return false;
  const batch: FlushBatch = { source: box.source, seq: ++box.seq, at: now, deltas };
  if (gauges) batch.gauges = gauges;
  box.pending.push(batch);
  return true;
}

export interface SenderHooks {
  /** The outbox changed (before a send, after an ack): a room writes it to storage here. */
  persist?(box: Outbox): void;
  /** A send failed; `attempts` counts the failures in a row. */
  failed?(attempts: number): void;
  /** A send succeeded after failures. */
  recovered?(): void;
}

/** Sends one outbox's pending batches; counts failures in a row for backoff and logs. */
export class BatchSender {
  private attempts = 0;
  private readonly hooks: SenderHooks;

  constructor(hooks: SenderHooks = {}) {
    this.hooks = hooks;
  }

  /** Send every pending batch at once. True when nothing is left unacknowledged. */
  async send(box: Outbox, sink: MetricsSink): Promise<boolean> {
    if (box.pending.length === 0) return true;
    // Durable before it leaves (for a room: storage writes complete before the runtime lets the request out).
    this.hooks.persist?.(box);
    const sending = box.pending.slice();
    try {
      await withTimeout(sink.add(sending), SEND_TIMEOUT_MS);
    } catch (err) {
      this.attempts += 1;
      this.hooks.failed?.(this.attempts);
      if (this.attempts === 1 || this.attempts % 10 === 0) {
        log("warn", "metrics.flush_failed", {
          trace_id: "-",
          source: box.source,
          batches: sending.length,
          attempt: this.attempts,
          error: String(err).slice(0, 200),
        });
      }
      return false;
    }
    // Only what was sent is acknowledged: batches queued meanwhile stay.
    const acked = new Set(sending.map((b) => b.seq));
    box.pending = box.pending.filter((b) => !acked.has(b.seq));
    this.hooks.persist?.(box);
    if (this.attempts > 0) {
      this.attempts = 0;
      this.hooks.recovered?.();
    }
    return box.pending.length === 0;
  }
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
