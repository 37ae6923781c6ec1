/**
 * Events to origins: the gateway against Pushpin, rate by rate (bench/lib/origins.ts).
 */
import { measureClockOffset, originSteps, type OriginTarget } from "../../lib/origins.ts";
import { originVerdicts } from "../../lib/origins-report.ts";
import { groupPids, workerdPids } from "../../lib/proc.ts";
import type { Ctx } from "../context.ts";
import { say, verdicts } from "../report.ts";

// Events to origins, the gateway against Pushpin and the bare forwarding object. Last: a wedged gateway
// leaves a durable backlog that workerd keeps working off after the step.
export async function runOrigin(ctx: Ctx, sinkPort: number): Promise<void> {
  const { env, profile, results } = ctx;
  const { base, pgid, pushpin, pushpinMissing } = ctx.targets;
  const c = profile.origin;
  const sinkBase = `127.0.0.1:${sinkPort}`;
  const clock = await measureClockOffset(sinkBase);
  // The bare forwarding object (bench/entry.ts) runs in the gateway's workerd: the platform's floor for this path.
  const targets: OriginTarget[] = pushpin ? ["gateway", "baseline", "pushpin"] : ["gateway", "baseline"];
  const first = ctx.order()[0]!;
  say(
    `origin: ${c.clients} clients in ${c.rooms} rooms send chat:send open loop at ${c.rates.map((r) => r.toLocaleString("en-US")).join(", ")} events/s; ` +
      `${targets.join(", ")} in turns (mirrored at every other step, ${first === "gateway" ? targets[0] : targets.at(-1)} first), ${c.windowMs / 1000} s windows; ` +
      `clock offset to the origin ${clock.offsetMs.toFixed(3)} ms (rtt ${clock.rttMs.toFixed(2)} ms)`,
  );
  const pp = pushpin;
  const steps = await originSteps(
    {
      runId: env.runId,
      log: say,
      sinkBase,
      gatewayBase: base,
      pushpinBase: pp?.base ?? null,
      pids: { gateway: () => workerdPids(pgid), pushpin: () => pp?.pids() ?? [], sink: ctx.targets.sinkPids },
      family: { gateway: () => groupPids(pgid).map((s) => s.pid), pushpin: () => pp?.pids() ?? [] },
      logs: { gateway: ctx.targets.runtimeLines, pushpin: () => pp?.proc.lines ?? [] },
      clockOffsetMs: clock.offsetMs,
    },
    c,
    targets,
    first === "gateway",
  );
  results.origin = { pushpin: pp ? pp.version : `not measured: ${pushpinMissing}`, clockOffsetMs: clock.offsetMs, steps };
  if (steps.some((s) => s.target === "gateway" && s.connected === 0)) ctx.fail();
  verdicts.push(...originVerdicts(steps, pp ? null : pushpinMissing));
}
