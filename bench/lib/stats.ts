/** Latency samples (ms) with a fixed capacity, and their summary. */

export interface Summary {
  n: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

export class Samples {
  private buf: Float64Array;
  n = 0;
  /** Samples offered after the buffer was full (not kept: the summary is of the first `cap`). */
  overflow = 0;

  constructor(cap: number) {
    this.buf = new Float64Array(Math.max(16, Math.min(cap, 20_000_000)));
  }

  push(x: number): void {
    if (this.n < this.buf.length) this.buf[this.n++] = x;
    else this.overflow++;
  }

  summary(): Summary {
    if (this.n === 0) return { n: 0, p50: null, p99: null, max: null, mean: null };
    const s = this.buf.slice(0, this.n).sort();
    let sum = 0;
    for (let i = 0; i < s.length; i++) sum += s[i]!;
    const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
    return { n: this.n, p50: q(0.5), p99: q(0.99), max: s[s.length - 1]!, mean: sum / s.length };
  }
}

export const now = () => performance.now();

/** One microbenchmark (bench/micro.ts). */
export interface MicroResult {
  name: string;
  /** ns per operation: the fastest timed round. */
  ns: number;
  /** ns per operation: the median round. */
  medianNs: number;
  /** What one operation is. */
  per: string;
  /** Target in ns per operation, when there is one. */
  targetNs: number | null;
}
