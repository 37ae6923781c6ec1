/**
 * The connection storm (issue 9): how fast sockets get in when many arrive at
 * once. N sockets, C handshakes in flight, spread over R rooms, every socket its
 * own user (fresh ids every run, so no session of an earlier run is counted).
 *
 *   gateway   /v1/ws, tenant `bench-storm` (bench/policies/bench-storm.yaml): dev
 *             tickets, the default `max_sessions_per_user: 4` (multi, deny), no
 *             services, no presence; the bench build raises the handshake limits.
 *             A socket counts from the start of its upgrade to `sys.authed`.
 *   party     /parties/party-room/<room>: partyserver (bench/entry.ts PartyRoom),
 *             the reference of issue 9's targets. It sends nothing on connect
 *             either: upgrade to open.
 *   baseline  /baseline/ws: the bare object accepts and sends nothing, so a socket
 *             counts from the start of its upgrade to open.
 *
 * The targets take turns, one whole storm each (sliceOrder: A B C | C B A | B C A
 * | A C B …). After each storm every socket is closed and the rooms are polled
 * until they hold none, so a storm never runs next to the last one's sockets.
 */
import { closeAll, connectTimed, type ConnectSpec } from "./clients.ts";
import { CpuMeter } from "./meter.ts";
import { sleep } from "./proc.ts";
import type { BenchEnv, Kind, RoomStatsView } from "../scenarios/common.ts";
import { now, Samples, type Summary } from "./stats.ts";

export const STORM_TENANT = "bench-storm";

/** The storm's targets: the scenarios' two kinds plus partyserver. */
export type StormTarget = Kind | "party";

export interface StormCfg {
  /** Sockets per storm. */
  sockets: number;
  /** Handshakes in flight. */
  concurrency: number;
  rooms: number;
  /** Storms per target. */
  slices: number;
  /** One socket's limit, upgrade to ready. */
  timeoutMs: number;
  /** One storm's limit: sockets not started by then count as failures ("deadline"), so the bench stays bounded. */
  deadlineMs: number;
  /** After closing: how long to wait for the rooms to let go of every socket. */
  goneMaxMs: number;
}

export interface StormSlice {
  connected: number;
  wallMs: number;
  socketsPerS: number;
  p50: number | null;
  p99: number | null;
}

export interface StormResult {
  kind: StormTarget;
  attempted: number;
  connected: number;
  /** Failed sockets by HTTP status or by what happened (timeout, closed, error). */
  failures: Record<string, number>;
  firstError: string | null;
  /** Sum of the storms' wall times (first upgrade started to last settled). */
  wallMs: number;
  /** connected / wallMs. */
  socketsPerS: number;
  /** Upgrade start to sys.authed (gateway) or open (party, baseline), every storm's sockets. */
  ready: Summary;
  /** workerd CPU per socket opened, ms. */
  cpuMsPerSocket: number | null;
  /** Other processes' CPU during the storms, % of a core. */
  otherPct: number;
  /** Sockets the rooms still held when the wait after closing gave up (null: stats unreadable). */
  leftOpen: number | null;
  slices: StormSlice[];
}

function url(env: BenchEnv, kind: StormTarget, room: string, user: string): string {
  switch (kind) {
    case "gateway":
      return `ws://${env.base}/v1/ws?tenant=${STORM_TENANT}&room=${encodeURIComponent(room)}&ticket=dev:${encodeURIComponent(user)}`;
    case "party":
      return `ws://${env.base}/parties/party-room/${encodeURIComponent(room)}`;
    case "baseline":
      return `ws://${env.base}/baseline/ws?room=${encodeURIComponent(room)}`;
  }
}

/** Rooms of one storm: new names every storm and every run. */
function stormRooms(env: BenchEnv, kind: StormTarget, slice: number, rooms: number): string[] {
  return Array.from({ length: rooms }, (_, r) => `storm-${env.runId}-${kind[0]}${slice}-${r}`);
}

/**
 * The targets' order in storm number `slice`: mirrored pairs, each pair starting
 * one target later (A B C | C B A | B C A | A C B …; two targets: A B | B A | B A
 * | A B). Within a pair every target's mean position is the same, so a machine
 * that slowly gets busier (or calmer) weighs on all of them alike, as ABBA does
 * for two; the rotation lets each target go first in turn.
 */
export function sliceOrder<T>(targets: readonly T[], slice: number): T[] {
  const k = Math.floor(slice / 2) % targets.length;
  const rotated = [...targets.slice(k), ...targets.slice(0, k)];
  return slice % 2 === 0 ? rotated : rotated.reverse();
}

/**
 * Sockets still held by the rooms, polled until 0 or maxMs. After a gateway storm
 * workerd may be too busy (releasing a thousand sessions) to answer a stats read
 * in time: an unreadable poll is retried; null only when the last one failed.
 */
async function waitGone(rooms: string[], kind: StormTarget, statsOf: StatsOf, maxMs: number): Promise<number | null> {
  const deadline = now() + maxMs;
  for (;;) {
    let held: number | null = 0;
    for (const room of rooms) {
      const st = await statsOf(kind, room);
      if (!st) {
        held = null;
        break;
      }
      held += st.sockets;
    }
    if (held === 0 || now() >= deadline) return held;
    await sleep(250);
  }
}

export type StatsOf = (kind: StormTarget, room: string) => Promise<RoomStatsView | null>;

interface Acc {
  kind: StormTarget;
  samples: Samples;
  attempted: number;
  connected: number;
  failures: Record<string, number>;
  firstError: string | null;
  wallMs: number;
  /** The CPU meter's wall time (a little longer than wallMs), workerd's and other processes' CPU in it. */
  meterMs: number;
  cpuMs: number;
  otherMs: number;
  leftOpen: number | null;
  slices: StormSlice[];
}

async function oneStorm(env: BenchEnv, acc: Acc, slice: number, cfg: StormCfg, statsOf: StatsOf): Promise<void> {
  const rooms = stormRooms(env, acc.kind, slice, cfg.rooms);
  const specs: ConnectSpec[] = [];
  for (let i = 0; i < cfg.sockets; i++) {
    // Round-robin over the rooms: they fill side by side, as in a real storm.
    specs.push({ url: url(env, acc.kind, rooms[i % cfg.rooms]!, `storm-${env.runId}-${slice}-${i}`), idx: i, room: i % cfg.rooms, authed: acc.kind === "gateway" });
  }
  const meter = new CpuMeter(env.pids);
  meter.start();
  const rep = await connectTimed(specs, { concurrency: cfg.concurrency, timeoutMs: cfg.timeoutMs, deadlineMs: cfg.deadlineMs });
  const cpu = meter.stop();
  const s = new Samples(rep.times.length);
  for (const t of rep.times) {
    s.push(t);
    acc.samples.push(t);
  }
  const sum = s.summary();
  acc.attempted += cfg.sockets;
  acc.connected += rep.conns.length;
  for (const [k, n] of Object.entries(rep.failures)) acc.failures[k] = (acc.failures[k] ?? 0) + n;
  acc.firstError ??= rep.firstError;
  acc.wallMs += rep.wallMs;
  acc.meterMs += cpu.wallMs;
  acc.cpuMs += (cpu.workerdPct / 100) * cpu.wallMs;
  acc.otherMs += (cpu.otherPct / 100) * cpu.wallMs;
  acc.slices.push({ connected: rep.conns.length, wallMs: rep.wallMs, socketsPerS: rep.wallMs > 0 ? (1000 * rep.conns.length) / rep.wallMs : 0, p50: sum.p50, p99: sum.p99 });
  await closeAll(rep.conns, 10_000);
  const left = await waitGone(rooms, acc.kind, statsOf, cfg.goneMaxMs);
  if (left !== 0) {
    acc.leftOpen = left === null || acc.leftOpen === null ? null : acc.leftOpen + left;
    env.log(`  storm: ${left === null ? "could not read the rooms' socket counts" : `${left} sockets still held by the ${acc.kind}'s rooms ${cfg.goneMaxMs / 1000} s after closing`}`);
  }
}

/** Every target, `cfg.slices` storms each, in sliceOrder from `targets`' order; `settle` runs before every storm. */
export async function stormInterleaved(
  env: BenchEnv,
  cfg: StormCfg,
  targets: readonly StormTarget[],
  settle: () => Promise<void>,
  statsOf: StatsOf,
): Promise<StormResult[]> {
  const accs = targets.map(
    (kind): Acc => ({
      kind,
      samples: new Samples(cfg.sockets * cfg.slices),
      attempted: 0,
      connected: 0,
      failures: {},
      firstError: null,
      wallMs: 0,
      meterMs: 0,
      cpuMs: 0,
      otherMs: 0,
      leftOpen: 0,
      slices: [],
    }),
  );
  for (let i = 0; i < cfg.slices; i++) {
    for (const acc of sliceOrder(accs, i)) {
      await settle();
      env.log(`storm ${i + 1}/${cfg.slices}: ${acc.kind}, ${cfg.sockets} sockets, ${cfg.concurrency} in flight, ${cfg.rooms} rooms`);
      await oneStorm(env, acc, i, cfg, statsOf);
    }
  }
  return accs.map((x) => ({
    kind: x.kind,
    attempted: x.attempted,
    connected: x.connected,
    failures: x.failures,
    firstError: x.firstError,
    wallMs: x.wallMs,
    socketsPerS: x.wallMs > 0 ? (1000 * x.connected) / x.wallMs : 0,
    ready: x.samples.summary(),
    cpuMsPerSocket: x.connected > 0 ? x.cpuMs / x.connected : null,
    otherPct: x.meterMs > 0 ? (100 * x.otherMs) / x.meterMs : 0,
    leftOpen: x.leftOpen,
    slices: x.slices,
  }));
}
