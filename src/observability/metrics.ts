/**
 * In-object counters. Label values only ever come from the compiled policy
 * (tenant ids, service names) or from fixed enums in the code, never from
 * client input, so the number of series is bounded by the policy.
 */
import { seriesKey as key } from "./prometheus.ts";

export type Labels = Record<string, string>;
/** Told of every increment, after it is counted. */
export type IncListener = (name: string, labels: Labels, by: number) => void;

export class Counters {
  readonly values = new Map<string, number>();
  private readonly listeners: IncListener[] = [];

  /**
   * Series keys by a raw key (name and label values in call order): escaping and
   * sorting once per series instead of once per increment. Bounded like the series.
   */
  private readonly keys = new Map<string, string>();

  private key(name: string, labels: Labels): string {
    let raw = name;
    for (const k in labels) raw += `\u0000${k}\u0001${labels[k]}`;
    let k = this.keys.get(raw);
    if (k === undefined) {
      k = key(name, labels);
      this.keys.set(raw, k);
    }
    return k;
  }

  inc(name: string, labels: Labels, by = 1): void {
    const k = this.key(name, labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
    for (const l of this.listeners) l(name, labels, by);
  }

  get(name: string, labels: Labels): number {
    return this.values.get(this.key(name, labels)) ?? 0;
  }

  /**
   * Be told of every increment (a flusher arms its timer there, so no code
   * path can leave deltas behind). Returns the unsubscribe function.
   */
  onInc(listener: IncListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Take the accumulated deltas and reset (for flushing to an aggregator). */
  drain(): Map<string, number> {
    const out = new Map(this.values);
    this.values.clear();
    return out;
  }
}
