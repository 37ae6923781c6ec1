/**
 * The microbenchmarks (bench/micro.ts) in this process, with a warning when
 * other processes took the CPU meanwhile.
 */
import os from "node:os";
import { machineCpu } from "../../lib/proc.ts";
import type { MicroResult } from "../../lib/stats.ts";
import type { Results } from "../context.ts";
import { fmt, say, textRow, verdicts } from "../report.ts";

export async function runMicro(results: Results): Promise<void> {
  say("microbenchmarks (Node, the real codec and compiled demo policy)");
  // Imported only now: it loads the compiled policy. (A variable path: the Node type
  // check does not follow it into src/, which is typed for workerd.)
  const microModule = "../../micro.ts";
  const { runMicro: micro } = (await import(microModule)) as { runMicro: () => MicroResult[] };
  const before = machineCpu();
  const g0 = process.cpuUsage();
  const res = micro();
  const after = machineCpu();
  const own = process.cpuUsage(g0);
  const wall = after.totalMs - before.totalMs; // jiffies of all cores
  const otherPct = wall > 0 ? (100 * (after.busyMs - before.busyMs - (own.user + own.system) / 1000)) / (wall / os.cpus().length) : 0;
  if (otherPct >= 25) say(`  other processes used ${otherPct.toFixed(0)}% of a core during the microbenchmarks: expect them slower than usual`);
  results.micro = res;
  for (const m of res) {
    textRow("micro (Node)", `${m.name} (ns/${m.per}, best round; median)`, `${fmt(m.ns)}; ${fmt(m.medianNs)}`);
    if (m.targetNs !== null) verdicts.push({ target: `${m.name} <= ${m.targetNs} ns/frame`, value: `${fmt(m.ns)} ns`, met: m.ns <= m.targetNs });
  }
}
