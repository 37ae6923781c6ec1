/**
 * The microbenchmarks (bench/micro.ts) in a child Node process with
 * `--single-threaded-gc`, with a warning when other processes took the CPU
 * meanwhile. Why the flag: the loops allocate a few small objects per frame, and
 * V8's default hands young-generation GC work to a helper thread on another CPU;
 * on a shared 2-CPU VM that hand-off made the same code 3-8x slower from run to
 * run (740-3,000 ns per frame instead of ~290), for the old commit and the new
 * alike. With the flag (or pinned to one CPU) every run gave 265-346 ns.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { machineCpu } from "../../lib/proc.ts";
import type { MicroResult } from "../../lib/stats.ts";
import type { Results } from "../context.ts";
import { fmt, say, textRow, verdicts } from "../report.ts";

export async function runMicro(results: Results): Promise<void> {
  say("microbenchmarks (Node, the real codec and compiled demo policy)");
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
  const before = machineCpu();
  const g0 = process.cpuUsage();
  const c0 = childrenCpuMs();
  const child = spawnSync(process.execPath, ["--single-threaded-gc", "bench/micro.ts", "--json"], { cwd: root, encoding: "utf8", timeout: 300_000 });
  if (child.status !== 0) throw new Error(`bench/micro.ts failed (${child.status ?? child.signal}): ${child.stderr.split("\n").slice(-10).join("\n")}`);
  const res = JSON.parse(child.stdout) as MicroResult[];
  const after = machineCpu();
  const own = process.cpuUsage(g0);
  const ownMs = (own.user + own.system) / 1000 + childrenCpuMs() - c0;
  const wall = after.totalMs - before.totalMs; // jiffies of all cores
  const otherPct = wall > 0 ? (100 * (after.busyMs - before.busyMs - ownMs)) / (wall / os.cpus().length) : 0;
  if (otherPct >= 25) say(`  other processes used ${otherPct.toFixed(0)}% of a core during the microbenchmarks: expect them slower than usual`);
  results.micro = res;
  for (const m of res) {
    textRow("micro (Node)", `${m.name} (ns/${m.per}, best round; median)`, `${fmt(m.ns)}; ${fmt(m.medianNs)}`);
    if (m.targetNs !== null) verdicts.push({ target: `${m.name} <= ${m.targetNs} ns/frame`, value: `${fmt(m.ns)} ns`, met: m.ns <= m.targetNs });
  }
}

/** CPU ms of this process's waited-for children (cutime + cstime of /proc/self/stat). */
function childrenCpuMs(): number {
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100; // USER_HZ is 100 on Linux
}
