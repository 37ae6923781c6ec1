/**
 * The relay fan-out part: the target's load point, a quarter of it (below
 * saturation), and with --full twice it; its rows and verdicts.
 */
import { fanoutInterleaved } from "../../scenarios/fanout.ts";
import type { Ctx } from "../context.ts";
import { busyNote, loadRows, saturated, split } from "../load-rows.ts";
import { fmt, ratio, say, verdicts } from "../report.ts";

// Hot relay fan-out: the target's load point, then a quarter of it.
export async function runFanout(ctx: Ctx): Promise<void> {
  const { env, profile, results } = ctx;
  const points = [
    { key: "fanout" as const, cfg: profile.fanout, scenario: "fan" },
    { key: "fanoutLight" as const, cfg: profile.fanoutLight, scenario: "fanl" },
    ...(profile.fanoutHeavy ? [{ key: "fanoutHeavy" as const, cfg: profile.fanoutHeavy, scenario: "fanh" }] : []),
  ];
  for (const p of points) {
    const c = p.cfg;
    const first = ctx.order()[0]!;
    await ctx.settle();
    say(
      `fan-out: ${c.rooms} rooms x ${c.clients} clients x ${c.hz} Hz, gateway and baseline in turns, ${c.slices} x ${c.sliceMs / 1000} s each, ${first} first`,
    );
    const res = await fanoutInterleaved(env, c, p.scenario, first);
    results[p.key] = res;
    const { g, b } = split(res);
    const sc = `relay ${c.rooms}x${c.clients}x${c.hz}Hz`;
    loadRows(sc, g, b);
    if (p.key === "fanoutHeavy") continue;
    const thr = ratio(g.deliveredPerS, b.deliveredPerS);
    const p99 = ratio(g.latency.p99, b.latency.p99);
    const sat = saturated(g) || saturated(b);
    const tag = `${sc}${sat ? ", saturated: the offered load exceeds what workerd delivers on this machine" : ""}${busyNote(g, b)}`;
    verdicts.push({ target: `relay throughput >= 0.9 x baseline (${tag})`, value: thr === null ? "-" : `${thr.toFixed(3)} (${fmt(g.deliveredPerS, 0)} vs ${fmt(b.deliveredPerS, 0)} frames/s)`, met: thr === null ? null : thr >= 0.9 });
    // Saturated, latency is the time spent queued, which grows with the slice length: no verdict.
    verdicts.push({
      target: `relay p99 latency <= 1.25 x baseline (${tag})`,
      value: `${p99 === null ? "-" : p99.toFixed(2)} (${fmt(g.latency.p99, 2)} vs ${fmt(b.latency.p99, 2)} ms)${sat ? "; not judged: saturated, latency is queueing time" : ""}`,
      met: p99 === null || sat ? null : p99 <= 1.25,
    });
  }
}
