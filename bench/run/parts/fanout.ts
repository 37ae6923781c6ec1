/**
 * The relay fan-out part: the target's load point (20 Hz, saturating workerd on
 * the reference machine), a quarter of it (below saturation), and with --full
 * twice it; four targets interleaved (bench/scenarios/fanout.ts); rows and
 * verdicts.
 *
 * Verdicts (issue 12): the gateway with `coalesce: true` against partyserver,
 * CPU per delivered frame at saturation <= 0.8 x and p99 below saturation <=
 * 1.25 x; and the plain gateway against the bare object, as before, so that a
 * regression of the relay path shows.
 */
import type { LoadResult, RelayTarget } from "../../scenarios/common.ts";
import { fanoutInterleaved, type RelayCfg } from "../../scenarios/fanout.ts";
import type { Ctx } from "../context.ts";
import { busyNote, loadRows, saturated, split } from "../load-rows.ts";
import { fmt, ratio, say, verdicts, type Verdict } from "../report.ts";

/** The first slice's order; the next slices mirror and rotate it (sliceOrder). */
const GATEWAY_FIRST: RelayTarget[] = ["gateway", "coalesce", "party", "baseline"];

const SATURATED_TAG = ", saturated: the offered load exceeds what workerd delivers on this machine";

/** The plain gateway against the bare object (the relay's own cost; issue 4's targets). */
function baselineVerdicts(sc: string, g: LoadResult, b: LoadResult): Verdict[] {
  const thr = ratio(g.deliveredPerS, b.deliveredPerS);
  const p99 = ratio(g.latency.p99, b.latency.p99);
  const sat = saturated(g) || saturated(b);
  const tag = `${sc}${sat ? SATURATED_TAG : ""}${busyNote(g, b)}`;
  return [
    { target: `relay throughput >= 0.9 x baseline (${tag})`, value: thr === null ? "-" : `${thr.toFixed(3)} (${fmt(g.deliveredPerS, 0)} vs ${fmt(b.deliveredPerS, 0)} frames/s)`, met: thr === null ? null : thr >= 0.9 },
    // Saturated, latency is the time spent queued, which grows with the slice length: no verdict.
    {
      target: `relay p99 latency <= 1.25 x baseline (${tag})`,
      value: `${p99 === null ? "-" : p99.toFixed(2)} (${fmt(g.latency.p99, 2)} vs ${fmt(b.latency.p99, 2)} ms)${sat ? "; not judged: saturated, latency is queueing time" : ""}`,
      met: p99 === null || sat ? null : p99 <= 1.25,
    },
  ];
}

/** At the saturating point: what each delivered frame costs workerd, coalescing against partyserver. */
function cpuVerdict(sc: string, c: LoadResult, p: LoadResult): Verdict {
  const r = ratio(c.cpuUsPerDelivered, p.cpuUsPerDelivered);
  const sat = saturated(c) && saturated(p) ? "" : `; not both saturated (coalesce p50 ${fmt(c.latency.p50, 1)} ms, partyserver ${fmt(p.latency.p50, 1)} ms)`;
  return {
    target: `relay, coalesce: true: workerd CPU per delivered frame at saturation <= 0.8 x partyserver (${sc}${busyNote(c, p)})`,
    value: `${r === null ? "-" : r.toFixed(2)} (${fmt(c.cpuUsPerDelivered, 2)} vs ${fmt(p.cpuUsPerDelivered, 2)} us; ${fmt(c.framesPerMessage, 2)} frames per message${sat})`,
    met: r === null ? null : r <= 0.8,
  };
}

/** Below saturation: the tail, coalescing against partyserver. */
function p99Verdict(sc: string, c: LoadResult, p: LoadResult): Verdict {
  const r = ratio(c.latency.p99, p.latency.p99);
  const sat = saturated(c) || saturated(p);
  return {
    target: `relay, coalesce: true: p99 latency below saturation <= 1.25 x partyserver (${sc}${sat ? SATURATED_TAG : ""}${busyNote(c, p)})`,
    value: `${r === null ? "-" : r.toFixed(2)} (${fmt(c.latency.p99, 2)} vs ${fmt(p.latency.p99, 2)} ms)${sat ? "; not judged: saturated" : ""}`,
    met: r === null || sat ? null : r <= 1.25,
  };
}

export async function runFanout(ctx: Ctx): Promise<void> {
  const { env, profile, results } = ctx;
  const points: Array<{ key: "fanout" | "fanoutLight" | "fanoutHeavy"; cfg: RelayCfg; scenario: string }> = [
    { key: "fanout", cfg: profile.fanout, scenario: "fan" },
    { key: "fanoutLight", cfg: profile.fanoutLight, scenario: "fanl" },
    ...(profile.fanoutHeavy ? [{ key: "fanoutHeavy" as const, cfg: profile.fanoutHeavy, scenario: "fanh" }] : []),
  ];
  for (const pt of points) {
    const c = pt.cfg;
    const targets = ctx.order()[0] === "gateway" ? GATEWAY_FIRST : [...GATEWAY_FIRST].reverse();
    await ctx.settle();
    say(`fan-out: ${c.rooms} rooms x ${c.clients} clients x ${c.hz} Hz, ${targets.join(", ")} in mirrored turns, ${c.slices} x ${c.sliceMs / 1000} s each`);
    const res = await fanoutInterleaved(env, c, pt.scenario, targets);
    results[pt.key] = res;
    if (res.some((r) => r.connected === 0)) ctx.fail();
    const { g, b } = split(res);
    const p = res.find((r) => r.kind === "party");
    const co = res.find((r) => r.kind === "coalesce");
    const sc = `relay ${c.rooms}x${c.clients}x${c.hz}Hz`;
    loadRows(sc, g, b, p, co);
    if (pt.key === "fanoutHeavy") continue;
    verdicts.push(...baselineVerdicts(sc, g, b));
    if (p && co) verdicts.push(pt.key === "fanout" ? cpuVerdict(sc, co, p) : p99Verdict(sc, co, p));
  }
}
