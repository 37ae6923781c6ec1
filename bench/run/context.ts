/**
 * What every part of a bench run shares: the results being filled in, the
 * started targets, the settle before each measured run, and the alternating
 * order of the two main targets.
 */
import { closeAll, connectAll } from "../lib/clients.ts";
import type { OriginStep } from "../lib/origins.ts";
import { sleep } from "../lib/proc.ts";
import type { MicroResult } from "../lib/stats.ts";
import type { StormResult } from "../lib/storm.ts";
import { authed, quiet, wsUrl, type BenchEnv, type Kind, type LoadResult, type RelayTarget, type RoomStatsView } from "../scenarios/common.ts";
import type { ExtResult } from "../scenarios/ext.ts";
import type { IdleResult } from "../scenarios/idle.ts";
import type { RecoveryLoad, ReplayResult } from "../scenarios/recovery.ts";
import type { StateExtra } from "../scenarios/state.ts";
import type { Options, Profile } from "./options.ts";
import { say, type Row, type Verdict } from "./report.ts";
import type { Targets } from "./targets.ts";

/** bench/results/latest.json. */
export interface Results {
  date: string;
  profile: string;
  machine: Record<string, unknown>;
  target: { via: string; base: string; runtime: string };
  config: Profile;
  micro: MicroResult[] | null;
  idle: IdleResult[] | null;
  fanout: LoadResult[] | null;
  fanoutLight: LoadResult[] | null;
  fanoutHeavy: LoadResult[] | null;
  state: Array<LoadResult & { state: StateExtra | null }> | null;
  ext: ExtResult | { skipped: string } | null;
  recovery: { throughput: RecoveryLoad[]; replay: ReplayResult } | null;
  storm: StormResult[] | null;
  origin: { pushpin: string; clockOffsetMs: number; steps: OriginStep[] } | null;
  verdicts: Verdict[];
  table: Row[];
  durationS: number;
}

export interface Ctx {
  opts: Options;
  profile: Profile;
  results: Results;
  targets: Targets;
  env: BenchEnv;
  /** A part could not run (nothing connected, a port busy): the run exits non-zero. */
  fail(): void;
  /** Before a measured run: see settle below. */
  settle(): Promise<void>;
  /** The two main targets, gateway first every other call: which goes first alternates scenario by scenario. */
  order(): Kind[];
  gatewayStats(room: string, tenant?: string): Promise<RoomStatsView | null>;
  peerStats(room: string, which: "baseline" | "party"): Promise<RoomStatsView | null>;
}

/** Before a measured run: the previous run's closes and backlog are done, the machine is calm (or we say it is not). */
export async function settle(env: BenchEnv, profile: Profile): Promise<void> {
  await sleep(500);
  const q = await quiet(env, profile.quietMaxMs, profile.settleMaxMs);
  if (q.settledMs > 2_000) say(`  waited ${(q.settledMs / 1000).toFixed(1)} s for workerd to work off the previous run's backlog`);
  if (q.workerdPct >= 15) say(`  workerd still busy (${q.workerdPct.toFixed(0)}% of a core) after ${(q.settledMs / 1000).toFixed(1)} s: running anyway`);
  if (q.otherPct >= 25) say(`  other processes use ${q.otherPct.toFixed(0)}% of a core (waited ${(q.waitedMs / 1000).toFixed(1)} s): running anyway`);
}

/** Run `run` for each kind in turn, settled before each. */
export async function pair<T>(ctx: Ctx, kinds: Kind[], run: (kind: Kind) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (const kind of kinds) {
    await ctx.settle();
    out.push(await run(kind));
  }
  return out;
}

/**
 * Warm-up: every measured code path compiled before anything is measured. The
 * gateway through `tenant` (the demo's, or the storm's when only the storm
 * runs); hot frames only through the demo tenant (the storm's allows none).
 */
export async function warmUp(env: BenchEnv, tenant: string, kinds: RelayTarget[]): Promise<void> {
  for (const kind of kinds) {
    const room = `warm-${env.runId}`;
    const url = (u: string) => (kind === "gateway" ? `ws://${env.base}/v1/ws?tenant=${tenant}&room=${room}&ticket=dev:${u}` : wsUrl(env, kind, room, u));
    const rep = await connectAll(
      ["w1", "w2", "w3"].map((u, idx) => ({ url: url(u), idx, room: 0, authed: authed(kind) })),
      { concurrency: 3, deadlineMs: 20_000 },
    );
    if (rep.conns.length === 0) throw new Error(`warm-up: cannot connect to the ${kind}: ${rep.firstError}`);
    const frame = Buffer.from([1, 1, 1, 0, ...new Array(16).fill(0)]);
    for (let i = 0; tenant === "demo" && i < 300; i++) {
      for (const c of rep.conns) c.ws.send(frame);
      if (i % 50 === 0) await sleep(5);
    }
    await sleep(300);
    await closeAll(rep.conns);
  }
}
