/** CPU while a scenario runs: workerd (the gateway or baseline), this load generator, everything else. */
import { cpuMs, machineCpu } from "./proc.ts";

export interface CpuReport {
  /** Wall time measured, ms. */
  wallMs: number;
  /** CPU of the workerd processes, in % of one core. */
  workerdPct: number;
  /** CPU of this load generator, in % of one core. */
  loadgenPct: number;
  /** CPU of every other process on the machine (other work sharing the 2 cores), in % of one core. */
  otherPct: number;
}

export class CpuMeter {
  private readonly pids: () => number[];
  private t0 = 0;
  private w0 = 0;
  private g0: NodeJS.CpuUsage = { user: 0, system: 0 };
  private m0 = { busyMs: 0, totalMs: 0 };

  constructor(pids: () => number[]) {
    this.pids = pids;
  }

  start(): void {
    this.t0 = performance.now();
    this.w0 = cpuMs(this.pids());
    this.g0 = process.cpuUsage();
    this.m0 = machineCpu();
  }

  stop(): CpuReport {
    const wallMs = performance.now() - this.t0;
    const w = cpuMs(this.pids()) - this.w0;
    const g = process.cpuUsage(this.g0);
    const gMs = (g.user + g.system) / 1000;
    const m = machineCpu();
    const busy = m.busyMs - this.m0.busyMs;
    const pct = (ms: number) => (wallMs > 0 ? (100 * ms) / wallMs : 0);
    return { wallMs, workerdPct: pct(w), loadgenPct: pct(gMs), otherPct: Math.max(0, pct(busy - w - gMs)) };
  }
}
