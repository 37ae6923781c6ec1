/**
 * The ext lane part, through the example origin on 8788 (gateway only).
 */
import { extLane } from "../../scenarios/ext.ts";
import type { Ctx } from "../context.ts";
import { latencyRows, row, say, textRow, verdicts } from "../report.ts";
import { ORIGIN_PORT } from "../targets.ts";

// Ext lane through the example origin (gateway only: the baseline has no origin).
export async function runExt(ctx: Ctx): Promise<void> {
  const { env, profile, results } = ctx;
  const { extSkipped } = ctx.targets;
  const c = profile.ext;
  const sc = `ext ${c.rooms}x${c.clients}x${c.hz}Hz`;
  if (extSkipped) {
    results.ext = { skipped: extSkipped };
    textRow(sc, "not run", `port ${ORIGIN_PORT} busy`);
    verdicts.push({ target: "ext lane: every event acknowledged", value: "not run", met: null });
  } else {
    say(`ext: ${c.rooms} rooms x ${c.clients} clients x ${c.hz} Hz chat:send with ACK_REQUESTED, through the example origin`);
    await ctx.settle();
    const e = await extLane(env, c);
    results.ext = e;
    row(sc, "events sent/s", e.sentPerS, undefined, 0);
    row(sc, "events acked/s", e.ackedPerS, undefined, 0);
    row(sc, "unacked after drain", e.unacked, undefined, 0);
    latencyRows(sc, "send -> sys.ack", e.ackLatency, null);
    row(sc, "chat:msg broadcasts received/s", e.broadcastPerS, undefined, 0);
    latencyRows(sc, "send -> chat:msg broadcast", e.broadcastLatency, null);
    row(sc, "workerd CPU (% of a core)", e.cpu?.workerdPct, undefined, 0);
    if (Object.keys(e.errors).length > 0) textRow(sc, "sys.error", JSON.stringify(e.errors));
    if (e.note) textRow(sc, "note", e.note);
    verdicts.push({ target: "ext lane: every event acknowledged", value: `${e.unacked} unacked`, met: e.unacked === 0 && e.connected > 0 });
  }
}
