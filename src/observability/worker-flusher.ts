/**
 * The Worker side of the metrics: increments counted outside any room
 * (rejected upgrades, handshake defender refusals) wait in the isolate and go
 * out in one batch per WORKER_FLUSH_DELAY_MS, sent from inside the request that
 * scheduled it (`ctx.waitUntil`). A flood of rejected upgrades so costs the
 * aggregator one call per isolate per second, not one per request. An isolate
 * that dies loses its last second of Worker-side increments (it has no storage).
 */
import type { Env } from "../env.ts";
import type { MetricsSink } from "./batch.ts";
import { Counters, type Labels } from "./metrics.ts";
import type { MetricName } from "./prometheus.ts";
import { BatchSender, newOutbox, queueBatch, type Outbox } from "./sender.ts";
import { sinkFor } from "./shards.ts";

/** Worker isolates batch their increments for this long before sending. */
export const WORKER_FLUSH_DELAY_MS = 1_000;
/** Rounds one request's waitUntil sends at most (well inside the waitUntil time limit). */
const WORKER_MAX_ROUNDS = 5;

/** Per-isolate state: module scope lives as long as the isolate (the source id is made on the first flush). */
const worker = {
  counters: new Counters(),
  box: null as Outbox | null,
  sender: new BatchSender(),
  /** A request's waitUntil is already pumping. */
  scheduled: false,
};

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
  worker.counters.inc(name, labels, by);
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
      if (!ok || worker.counters.values.size === 0) break;
    }
  } catch {
    // flushWorkerMetrics keeps what it could not send; the next increment schedules a new round
  } finally {
    worker.scheduled = false;
  }
}

/** Send the isolate's pending Worker-side increments now. True when nothing is left unacknowledged. */
export async function flushWorkerMetrics(env: Env, sink?: MetricsSink): Promise<boolean> {
  const box = (worker.box ??= newOutbox("w"));
  queueBatch(box, worker.counters, Date.now());
  return worker.sender.send(box, sink ?? sinkFor(env, box.source));
}
