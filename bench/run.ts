/**
 * The performance harness: `npm run bench` (quick, under 2 minutes) or
 * `npm run bench -- --full` (longer, larger). See docs/performance.md.
 *
 *  1. compiles the policies and runs the microbenchmarks (bench/micro.ts);
 *  2. starts the example origin on 127.0.0.1:8788 (the demo tenant's chat URL;
 *     only when the ext scenario runs, so e.g. `--only storm` leaves 8788 alone)
 *     and the bench build of bench/wrangler.bench.toml (the real gateway plus the
 *     BaselineRoom object, the partyserver PartyRoom and counters, bench/entry.ts)
 *     served by workerd (or `wrangler dev`, --runtime) on a free port, with
 *     temporary storage;
 *  3. runs the scenarios against the gateway AND the baseline, alternating which
 *     goes first: idle connections, hot relay fan-out (four ways: the gateway,
 *     the gateway with `coalesce: true`, partyserver, the baseline), hot `state`
 *     mode, ext lane, recovery (ext relays with the log on vs off, and the
 *     replay of missed messages on resume), connection storm (against partyserver too); then events to
 *     origins, the gateway against Pushpin (bench/lib/origins.ts: the bench
 *     origin, bench/origin.ts, and Pushpin each on free ports; Pushpin skipped,
 *     with a note, when it is not installed);
 *  4. prints one table (gateway, baseline, gateway/baseline; partyserver,
 *     gateway/partyserver, gateway-coalesce and coalesce/partyserver where measured) and a verdict per target, writes
 *     bench/results/latest.json, and stops everything it started (whole process
 *     groups).
 *
 * Options:
 *   --full              longer and larger runs (2000 idle connections, 30 s windows)
 *   --only a,b          only these: micro, idle, fanout, state, ext, recovery, storm, origin
 *   --runtime workerd   (default) serve the bench build with workerd itself, as
 *                       production runs it (bench/lib/workerd.ts says why)
 *   --runtime wrangler  serve it with `wrangler dev` (its development harness:
 *                       an outbound interceptor worker and a streaming tail)
 *   --origin-rates a,b  events to origins at these rates (events/s) instead of
 *                       the profile's
 *   --via-proxy         with --runtime wrangler: connect through wrangler's proxy
 *                       port instead of the runtime's own port (an extra hop)
 *   --out <file>        JSON results (default bench/results/latest.json)
 *
 * Linux only (it reads /proc for RSS and CPU). Everything listens on 127.0.0.1.
 *
 * Layout: bench/run/ holds the options and profile, the processes (targets.ts),
 * the table (report.ts) and one module per part (parts/); bench/scenarios/ one
 * module per load scenario; bench/lib/ the clients, meters, storm and origins.
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { highestClean, type OriginTarget } from "./lib/origins.ts";
import { originTable } from "./lib/origins-report.ts";
import { workerdPids } from "./lib/proc.ts";
import { STORM_TENANT } from "./lib/storm.ts";
import type { BenchEnv, Kind, RelayTarget } from "./scenarios/common.ts";
import { RECOVERY_TENANT } from "./scenarios/recovery.ts";
import { settle, warmUp, type Ctx, type Results } from "./run/context.ts";
import { makeProfile, parseOptions, type Part, type Profile } from "./run/options.ts";
import { runExt } from "./run/parts/ext.ts";
import { runFanout } from "./run/parts/fanout.ts";
import { runIdle } from "./run/parts/idle.ts";
import { runMicro } from "./run/parts/micro.ts";
import { runOrigin } from "./run/parts/origin.ts";
import { runRecovery } from "./run/parts/recovery.ts";
import { runState } from "./run/parts/state.ts";
import { runStorm } from "./run/parts/storm.ts";
import { elapsedS, printTable, rows, say, verdicts } from "./run/report.ts";
import { checkBenchConfig, cleanup, gatewayStats, peerStats, startTargets, stopOnSignals, runtimeTail, wranglerVersion } from "./run/targets.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const NODE = process.execPath;

function emptyResults(profile: Profile): Results {
  return {
    date: new Date().toISOString(),
    profile: profile.name,
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? "unknown",
      memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      kernel: os.release(),
      node: process.version,
      wrangler: wranglerVersion(ROOT),
      loadavgAtStart: os.loadavg(),
    },
    target: { via: "", base: "", runtime: "" },
    config: profile,
    micro: null,
    idle: null,
    fanout: null,
    fanoutLight: null,
    fanoutHeavy: null,
    state: null,
    ext: null,
    recovery: null,
    storm: null,
    origin: null,
    verdicts,
    table: rows,
    durationS: 0,
  };
}

/** The load parts, in their order: storm and origin last (see their modules for why). */
async function runParts(ctx: Ctx, parts: Set<Part>): Promise<void> {
  if (parts.has("idle")) await runIdle(ctx);
  if (parts.has("fanout")) await runFanout(ctx);
  if (parts.has("state")) await runState(ctx);
  if (parts.has("ext")) await runExt(ctx);
  if (parts.has("recovery")) await runRecovery(ctx);
  if (parts.has("storm")) await runStorm(ctx);
  if (parts.has("origin") && ctx.targets.sinkPort !== null) await runOrigin(ctx, ctx.targets.sinkPort);
}

async function main(): Promise<number> {
  if (process.platform !== "linux") {
    console.error("bench/run.ts reads /proc (RSS, CPU): Linux only");
    return 2;
  }
  const opts = parseOptions(ROOT);
  const { parts } = opts;
  const profile = makeProfile(opts.full);
  if (opts.originRates) profile.origin.rates = opts.originRates;
  let exitCode = 0;
  const results = emptyResults(profile);
  say(`profile ${profile.name}; ${os.cpus().length} cores (${results.machine.cpuModel}), node ${process.version}`);

  // 1. Policies, then the microbenchmarks (they import the compiled policy).
  const build = spawnSync(NODE, ["scripts/compile-policies.ts"], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) {
    console.error(`the policies do not compile:\n${build.stderr}`);
    return 1;
  }
  if (parts.has("micro")) await runMicro(results);
  if (![...parts].some((p) => p !== "micro")) return finish(results, opts.out, exitCode);
  const configProblem = checkBenchConfig(ROOT);
  if (configProblem) {
    console.error(`\nERROR: ${configProblem}\n`);
    finish(results, opts.out, 1);
    return 1;
  }

  // 2. The example origin on 8788 (ext lane), the bench origin and Pushpin (events to origins), the bench gateway.
  const targets = await startTargets(ROOT, NODE, parts, opts);
  if (targets.extSkipped) exitCode = 1;
  results.target = { via: targets.via, base: targets.base, runtime: opts.runtime };
  results.machine.workerd = targets.workerd;
  say(`ready: workerd ${targets.workerd}; clients connect to ${targets.base} (${targets.via})`);
  const env: BenchEnv = { base: targets.base, pids: () => workerdPids(targets.pgid), runId: Date.now().toString(36), log: say };
  let flip = false;
  const ctx: Ctx = {
    opts,
    profile,
    results,
    targets,
    env,
    fail: () => void (exitCode = 1),
    settle: () => settle(env, profile),
    order: (): Kind[] => ((flip = !flip) ? ["gateway", "baseline"] : ["baseline", "gateway"]),
    gatewayStats: (room, tenant) => gatewayStats(targets.base, room, tenant),
    peerStats: (room, which) => peerStats(targets.base, room, which),
  };

  // Warm-up: every code path compiled before anything is measured. Through the
  // storm's (or the recovery scenario's) tenant when only those run: the demo tenant's open/close events
  // become webhooks to 127.0.0.1:8788, which may be someone else's server then.
  const demoScenarios = (["idle", "fanout", "state", "ext"] as const).some((p) => parts.has(p));
  // partyserver and the coalescing tenant only where they are measured.
  const warm: RelayTarget[] = ["gateway", "baseline"];
  if (parts.has("storm") || parts.has("fanout")) warm.push("party");
  if (parts.has("fanout")) warm.push("coalesce");
  await warmUp(env, demoScenarios ? "demo" : parts.has("recovery") ? RECOVERY_TENANT : STORM_TENANT, warm);

  // 3. The scenarios, each against its targets.
  await runParts(ctx, parts);
  return finish(results, opts.out, exitCode);
}

/** Print the table, the origin table and the verdicts; write the JSON; the exit code. */
function finish(results: Results, out: string, exitCode: number): number {
  results.durationS = elapsedS();
  console.log("");
  if (rows.length > 0) console.log(printTable());
  if (results.origin) {
    console.log("");
    console.log(`events to origins (gateway vs ${results.origin.pushpin.startsWith("not measured") ? `Pushpin, ${results.origin.pushpin}` : results.origin.pushpin}):`);
    console.log(originTable(results.origin.steps));
    const steps = results.origin.steps;
    const high = (t: OriginTarget) => (steps.some((s) => s.target === t) ? `${highestClean(steps, t).toLocaleString("en-US")} events/s` : "not measured");
    console.log(`highest clean rate (every event at the origin, p99 < 1 s, at this rate and every lower one): gateway ${high("gateway")}, Pushpin ${high("pushpin")}`);
  }
  console.log("");
  for (const v of verdicts) console.log(`${v.met === null ? "[ n/a ]" : v.met ? "[ met ]" : "[ NOT met ]"} ${v.target}: ${v.value}`);
  const m = results.machine;
  console.log("");
  console.log(
    `machine: ${m.cpus} cores (${m.cpuModel}), shared by the load generator and the gateway; node ${m.node}; wrangler ${m.wrangler}; workerd ${m.workerd ?? "-"}; profile ${results.profile}; ${results.durationS.toFixed(0)} s`,
  );
  if (results.target.via) console.log(`clients connected to ${results.target.via}`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results: ${out}`);
  return exitCode;
}

stopOnSignals();
let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  const tail = runtimeTail();
  if (tail.length > 0) console.error(`last runtime output:\n  ${tail.join("\n  ")}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
