/**
 * The recovery part (SPEC section 10, tenant bench-recovery): ext relay
 * throughput and CPU with the log on and off, interleaved (bench/scenarios/
 * recovery.ts); then the time to replay missed messages on resume.
 *
 * In the table each logged mode is a block of rows against the unlogged relay:
 * the "gateway" column is recovery on (`rec`: log under its cap; `rec-full`: log
 * at its byte cap, every relay also trims), "baseline" recovery off (`norec`),
 * "gw/base" on/off.
 */
import { RECOVERY_MODES, recoveryReplay, recoveryThroughput, type RecoveryLoad, type RecoveryMode } from "../../scenarios/recovery.ts";
import type { Ctx } from "../context.ts";
import { fmt, latencyRows, ratio, row, say, textRow, verdicts } from "../report.ts";

const LABEL: Record<Exclude<RecoveryMode, "norec">, string> = { rec: "log under its cap", "rec-full": "log at its byte cap" };

/** A warning when other processes took a share of the 2 cores during either mode's windows. */
function busy(on: RecoveryLoad, off: RecoveryLoad): string {
  const pct = (r: RecoveryLoad) => r.cpu?.otherPct ?? 0;
  return pct(on) >= 25 || pct(off) >= 25 ? `; machine busy: other processes used ${pct(on).toFixed(0)}% / ${pct(off).toFixed(0)}% of a core during the ${on.mode} / ${off.mode} windows` : "";
}

function rows(sc: string, on: RecoveryLoad, off: RecoveryLoad): void {
  row(sc, "connected", on.connected, off.connected, 0, false);
  row(sc, "relays in/s (sent)", on.sentPerS, off.sentPerS, 0);
  row(sc, "relays delivered/s", on.deliveredPerS, off.deliveredPerS, 0);
  row(sc, "drops (expected - received)", on.drops, off.drops, 0, false);
  row(sc, "relays received with an off", on.withOff, off.withOff, 0, false);
  latencyRows(sc, "latency", on.latency, off.latency);
  row(sc, "workerd CPU (% of a core)", on.cpu?.workerdPct, off.cpu?.workerdPct, 0);
  row(sc, "workerd CPU per relay in (us)", on.cpuUsPerSent, off.cpuUsPerSent, 1);
  row(sc, "workerd CPU per delivered (us)", on.cpuUsPerDelivered, off.cpuUsPerDelivered, 2);
  row(sc, "load generator CPU (%)", on.cpu?.loadgenPct, off.cpu?.loadgenPct, 0, false);
  row(sc, "other processes CPU (%)", on.cpu?.otherPct, off.cpu?.otherPct, 0, false);
  if (on.fill) textRow(sc, "log filled before the run", `${fmt(on.fill.perRoom, 0)} relays of ~${on.fill.bytes} B per room, ${(on.fill.ms / 1000).toFixed(1)} s`);
  if (Object.keys(on.errors).length > 0) textRow(sc, "sys.error", JSON.stringify(on.errors), JSON.stringify(off.errors));
}

export async function runRecovery(ctx: Ctx): Promise<void> {
  const { env, profile, results } = ctx;
  const c = profile.recovery;
  const first = ctx.order()[0] === "gateway" ? RECOVERY_MODES : [...RECOVERY_MODES].reverse();
  await ctx.settle();
  say(`recovery: ${c.rooms} rooms x ${c.clients} clients x ${c.hz} Hz ext relays (broadcast handler, ~${c.padBytes + 170} B), ${first.join(", ")} in mirrored turns, ${c.slices} x ${c.sliceMs / 1000} s each (rec-full: each room's log first filled to ${c.logBytes} B with ~${c.fillBytes} B relays)`);
  const res = await recoveryThroughput(env, c, first);
  const off = res.find((r) => r.mode === "norec")!;
  if (res.some((r) => !r.ok)) ctx.fail();
  for (const mode of ["rec", "rec-full"] as const) {
    const on = res.find((r) => r.mode === mode)!;
    const sc = `recovery ${c.rooms}x${c.clients}x${c.hz}Hz, ${LABEL[mode]} (gw: ${mode}, base: norec)`;
    rows(sc, on, off);
    const thr = ratio(on.deliveredPerS, off.deliveredPerS);
    // Saturated: queued for more than 100 ms at the median; a generator that fell behind is said apart.
    const queued = (r: RecoveryLoad) => (r.latency.p50 ?? 0) > 100;
    const skipped = on.skippedSends + off.skippedSends;
    const sat = `${queued(on) || queued(off) ? `, saturated (${[on, off].filter(queued).map((r) => r.mode).join(", ")})` : ", below saturation"}${skipped > 0 ? `, the load generator skipped ${skipped} sends` : ""}`;
    verdicts.push({
      target: `recovery on >= 0.8 x recovery off throughput, ${LABEL[mode]} (${c.rooms}x${c.clients}x${c.hz}Hz${sat}${busy(on, off)})`,
      value: `${thr === null ? "-" : thr.toFixed(3)} (${fmt(on.deliveredPerS, 0)} vs ${fmt(off.deliveredPerS, 0)} relays/s delivered; workerd CPU per delivered ${fmt(on.cpuUsPerDelivered, 2)} vs ${fmt(off.cpuUsPerDelivered, 2)} us)`,
      met: thr === null || on.withOff === 0 ? null : thr >= 0.8,
    });
  }
  if (off.note) textRow("recovery", "note", off.note);

  await ctx.settle();
  const rc = c.replay;
  say(`recovery: replay of ${rc.messages} missed ~${rc.bytes} B relays on resume, ${rc.repeats} times`);
  const rp = await recoveryReplay(env, rc);
  const sr = `resume, ${rc.messages} missed x ~${rc.bytes} B`;
  row(sr, "frame size (B)", rp.frameBytes || null, undefined, 0);
  row(sr, "resumes measured", rp.repeats, undefined, 0);
  latencyRows(sr, "upgrade -> authed", rp.toAuthed, null);
  latencyRows(sr, `upgrade -> replayed frame ${rc.messages}`, rp.toLast, null);
  textRow(sr, "answers", [...new Set(rp.answers)].join(", ") || "-");
  if (rp.note) textRow(sr, "note", rp.note);
  if (!rp.ok) ctx.fail();
  verdicts.push({
    target: `resume replays ${rc.messages} missed ~${rc.bytes} B messages whole and in order (${rc.repeats} resumes)`,
    value: `${rp.allRecovered ? "all recovered" : "NOT all recovered"}; upgrade -> last replayed frame p50 ${fmt(rp.toLast.p50, 1)} ms (max ${fmt(rp.toLast.max, 1)}), -> authed p50 ${fmt(rp.toAuthed.p50, 1)} ms`,
    met: rp.repeats === 0 ? null : rp.allRecovered,
  });
  results.recovery = { throughput: res, replay: rp };
}
