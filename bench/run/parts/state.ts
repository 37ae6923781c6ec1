/**
 * The `state` mode part: one batch frame per member per tick, against the
 * baseline relaying every frame.
 */
import { stateMode } from "../../scenarios/state.ts";
import { pair, type Ctx } from "../context.ts";
import { busyNote, cpuRows, errorRows, split } from "../load-rows.ts";
import { fmt, latencyRows, row, say, textRow, verdicts } from "../report.ts";

// Hot state mode.
export async function runState(ctx: Ctx): Promise<void> {
  const { env, profile, results } = ctx;
  const c = profile.state;
  const res = await pair(ctx, ctx.order(), (kind) => {
    say(`state: ${kind}, ${c.rooms} rooms x ${c.clients} clients sending svc 3 at ${c.hz} Hz (tick ${c.tickHz} Hz), ${c.durMs / 1000} s`);
    return stateMode(env, kind, c, (room) => ctx.gatewayStats(room));
  });
  results.state = res;
  const { g, b } = split(res);
  const sc = `state ${c.rooms}x${c.clients}x${c.hz}Hz`;
  const st = g.state;
  if (!g.ok && st?.unsupported) {
    textRow(sc, "gateway", g.note ?? "refused");
    verdicts.push({ target: "state: exactly one batch frame per member per tick", value: `not measured: ${g.note}`, met: null });
  } else {
    row(sc, "connected", g.connected, b.connected, 0, false);
    row(sc, "frames in/s (sent)", g.sentPerS, b.sentPerS, 0);
    row(sc, "frames out/s (gw: batch frames)", g.deliveredPerS, b.deliveredPerS, 0);
    row(sc, "states delivered/s", st?.statesPerS, b.deliveredPerS, 0);
    row(sc, "ticks/s per room", st?.ticksPerS, undefined, 2);
    row(sc, "batch frames / member / tick", st?.batchesPerMemberPerTick, undefined, 3);
    row(sc, "inner states / batch (mean)", st?.innerPerBatch.mean, undefined, 2);
    row(sc, "inner states / batch (max)", st?.innerPerBatch.max, undefined, 0);
    row(sc, "superseded states sent", st?.supersededSent, undefined, 0);
    row(sc, "drops (gw: batches sent - received)", g.drops, b.drops, 0, false);
    latencyRows(sc, "latency (gw: newest state)", g.latency, b.latency);
    cpuRows(sc, g, b);
    errorRows(sc, g, b);
    const per = st?.batchesPerMemberPerTick ?? null;
    verdicts.push({
      target: `state: exactly one batch frame per member per tick, whatever the input rate${busyNote(g, b)}`,
      value: `${fmt(per, 3)} per member per tick (${c.hz} Hz in, ${c.tickHz} Hz tick), ${st?.doubleBatches ?? "?"} doubled, ${st?.supersededSent ?? "?"} superseded sent`,
      met: per === null || !st ? null : Math.abs(per - 1) < 0.01 && st.doubleBatches === 0 && st.supersededSent === 0,
    });
  }
  for (const r of res) if (r.note && !(r.kind === "gateway" && st?.unsupported)) textRow(sc, `${r.kind}: note`, r.note);
}
