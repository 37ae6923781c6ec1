/**
 * Interleaved measurement, shared by the scenarios whose targets take turns
 * sending (fanout.ts, recovery.ts): what one target's slices add up to, one
 * measured slice (warm-up, the metered window, the drain), and the result
 * fields computed from the tally.
 */
import { CpuMeter } from "../lib/meter.ts";
import { now, type Samples } from "../lib/stats.ts";
import { drain, drive, type BenchEnv, type DrainReport, type LoadResult, type Sender } from "./common.ts";

/** How interleaved targets take turns. */
export interface SliceCfg {
  rooms: number;
  clients: number;
  hz: number;
  /** Measured slices per target; the targets take turns, slice by slice (mirrored order). */
  slices: number;
  sliceMs: number;
  /** Sending before each slice is measured. */
  warmMs: number;
  /** After each slice: wait (at most this long) until its frames are delivered. */
  drainMs: number;
}

/** One target's counts over all its slices. */
export interface Tally {
  senders: Sender[];
  /** Members per room: a relay sent in room r is expected members[r] - 1 times. */
  members: number[];
  samples: Samples;
  errors: Record<string, number>;
  sent: number;
  expected: number;
  /** Frames sent in a measured slice that arrived (whenever), each timed. */
  received: number;
  /** Frames arriving during a measured slice (inner frames of a batch included). */
  arrived: number;
  skipped: number;
  measuredMs: number;
  cpuMs: number;
  loadgenMs: number;
  otherMs: number;
  drains: DrainReport[];
}

export function newTally(senders: Sender[], members: number[], samples: Samples): Tally {
  return { senders, members, samples, errors: {}, sent: 0, expected: 0, received: 0, arrived: 0, skipped: 0, measuredMs: 0, cpuMs: 0, loadgenMs: 0, otherMs: 0, drains: [] };
}

/**
 * One slice of one target: `warmMs` of warm-up, `sliceMs` measured (workerd's CPU
 * metered; `cur.measuring` is the target while it is), then the drain until every
 * relay of the window arrived. `send(s, t, measured)` sends one relay.
 */
export async function measuredSlice<T extends Tally>(
  env: BenchEnv,
  cfg: SliceCfg,
  k: T,
  cur: { measuring: T | null },
  send: (s: Sender, t: number, measured: boolean) => void,
): Promise<void> {
  const mStart = now() + cfg.warmMs;
  const mEnd = mStart + cfg.sliceMs;
  const meter = new CpuMeter(env.pids);
  const startTimer = setTimeout(() => {
    cur.measuring = k;
    meter.start();
  }, cfg.warmMs);
  k.skipped += await drive(k.senders, cfg.hz, mEnd, (s, t) => {
    const measured = t >= mStart && t < mEnd;
    send(s, t, measured);
    if (measured) {
      k.sent++;
      k.expected += k.members[s.conn.room]! - 1;
    }
  });
  clearTimeout(startTimer);
  if (cur.measuring === k) {
    const r = meter.stop();
    cur.measuring = null;
    k.measuredMs += r.wallMs;
    k.cpuMs += (r.workerdPct / 100) * r.wallMs;
    k.loadgenMs += (r.loadgenPct / 100) * r.wallMs;
    k.otherMs += (r.otherPct / 100) * r.wallMs;
  }
  k.drains.push(await drain(() => k.received >= k.expected, () => k.received, cfg.drainMs));
}

/** The LoadResult fields a tally gives (the caller adds who it was and how it connected). */
export function tallied(k: Tally): Omit<LoadResult, "kind" | "ok" | "note" | "connected" | "connectMs"> {
  const durS = k.measuredMs / 1000;
  const pct = (ms: number) => (k.measuredMs > 0 ? (100 * ms) / k.measuredMs : 0);
  const worst = k.drains.find((d) => d.outcome === "timeout") ?? k.drains.find((d) => d.outcome === "stalled") ?? k.drains.at(-1) ?? null;
  return {
    sentPerS: durS > 0 ? k.sent / durS : 0,
    deliveredPerS: durS > 0 ? k.arrived / durS : 0,
    expected: k.expected,
    received: k.received,
    drops: k.expected - k.received,
    drain: worst,
    latency: k.samples.summary(),
    errors: k.errors,
    skippedSends: k.skipped,
    cpu: { wallMs: k.measuredMs, workerdPct: pct(k.cpuMs), loadgenPct: pct(k.loadgenMs), otherPct: pct(k.otherMs) },
    cpuUsPerDelivered: k.arrived > 0 ? (k.cpuMs * 1000) / k.arrived : null,
    cpuUsPerSent: k.sent > 0 ? (k.cpuMs * 1000) / k.sent : null,
  };
}
