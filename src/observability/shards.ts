/**
 * Addressing the aggregator: METRICS_SHARDS objects named `metrics/<n>`. A
 * sender always goes to the shard its source id hashes to (so its seqs are
 * judged by one object), and a scrape sums every shard.
 */
import type { Env } from "../env.ts";
import { METRICS_SHARDS, type MetricsSink, type MetricsSnapshot } from "./batch.ts";
import type { MetricsObject } from "./metrics-object.ts";

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
