/**
 * What the load scenarios (bench/scenarios/*.ts, one module each) share. Each
 * runs against target kinds: the gateway (the real /v1/ws path: Worker checks,
 * dev ticket, room object with policy) or the baseline (/baseline/ws: a bare
 * relaying Durable Object), with fresh rooms.
 *
 * Latency: every frame carries its send time (performance.now() of this process,
 * f64 LE) and is timed at the receivers. Only frames sent inside the measured
 * window count; frames are awaited for a bounded drain time after it.
 */
import { envelope, type Conn, type ConnectReport, type ConnectSpec } from "../lib/clients.ts";
import { CpuMeter, type CpuReport } from "../lib/meter.ts";
import { sleep } from "../lib/proc.ts";
import { now, type Summary } from "../lib/stats.ts";

export type Kind = "gateway" | "baseline";

/**
 * The relay fan-out's four targets: the gateway's relay as the demo tenant has
 * it, the same with `coalesce: true` (tenant bench-relay), partyserver
 * (bench/entry.ts PartyRoom) and the bare object. The other scenarios use Kind.
 */
export type RelayTarget = Kind | "coalesce" | "party";

export interface BenchEnv {
  /** host:port the clients connect to. */
  base: string;
  /** workerd pids (CPU, RSS). */
  pids: () => number[];
  runId: string;
  log: (line: string) => void;
}

export const TENANT = "demo";
/** bench/policies/bench-relay.yaml: the demo tenant's relay, hot svc 1 with `coalesce: true`. */
export const COALESCE_TENANT = "bench-relay";
export const RELAY_SVC = 1;
export const STATE_SVC = 3;
export const CONNECT_CONCURRENCY = 32;

export function wsUrl(env: BenchEnv, kind: RelayTarget, room: string, user: string): string {
  const r = encodeURIComponent(room);
  switch (kind) {
    case "gateway":
    case "coalesce":
      return `ws://${env.base}/v1/ws?tenant=${kind === "gateway" ? TENANT : COALESCE_TENANT}&room=${r}&ticket=dev:${encodeURIComponent(user)}`;
    case "party":
      return `ws://${env.base}/parties/party-room/${r}`;
    case "baseline":
      return `ws://${env.base}/baseline/ws?room=${r}`;
  }
}

/** Ready at `sys.authed` (the gateway's targets) or at open (the peers, which send nothing on connect). */
export function authed(kind: RelayTarget): boolean {
  return kind === "gateway" || kind === "coalesce";
}

/** Fresh per run; the target's first letter keeps the targets' rooms apart (g, c, p, b). */
export function roomName(env: BenchEnv, scenario: string, kind: RelayTarget, r: number): string {
  return `${scenario}-${env.runId}-${kind[0]}${r}`;
}

export function specs(env: BenchEnv, scenario: string, kind: RelayTarget, rooms: number, perRoom: number): ConnectSpec[] {
  const out: ConnectSpec[] = [];
  for (let r = 0; r < rooms; r++) {
    for (let i = 0; i < perRoom; i++) {
      out.push({ url: wsUrl(env, kind, roomName(env, scenario, kind, r), `${scenario}${r}x${i}`), idx: r * perRoom + i, room: r, authed: authed(kind) });
    }
  }
  return out;
}

export function membersPerRoom(conns: Conn[], rooms: number): number[] {
  const m = new Array<number>(rooms).fill(0);
  for (const c of conns) m[c.room]!++;
  return m;
}

/** Offset of the payload in a hot frame, client form (baseline relays it as is) or gateway form. */
export function payloadOffset(buf: Buffer): number {
  const flags = buf[3]!;
  const seq = flags & 0x01 ? 4 : 0;
  return 4 + seq + (flags & 0x80 ? 2 : 0);
}

/** Client hot frame [1][svc][op][0] + [ts f64][idx u32][n u32]. */
export function hotFrame(svc: number, op: number, ts: number, idx: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(20);
  b[0] = 1;
  b[1] = svc;
  b[2] = op;
  b[3] = 0;
  b.writeDoubleLE(ts, 4);
  b.writeUInt32LE(idx, 12);
  b.writeUInt32LE(n >>> 0, 16);
  return b;
}

export interface Sender {
  next: number;
  conn: Conn;
  n: number;
}

/**
 * Fire `send` for every sender at `hz` until `until` (performance.now()), one timer
 * for all. A sender that fell more than a period behind skips ahead (counted), so
 * a slow generator shows up as `skipped` rather than as bursts.
 */
export function drive(senders: Sender[], hz: number, until: number, send: (s: Sender, t: number) => void, abort?: () => boolean): Promise<number> {
  const period = 1000 / hz;
  const t0 = now();
  for (const s of senders) s.next = t0 + Math.random() * period;
  let skipped = 0;
  return new Promise((resolve) => {
    const step = () => {
      const t = now();
      if (t >= until || abort?.()) {
        resolve(skipped);
        return;
      }
      for (const s of senders) {
        if (s.next > t || s.conn.closed) continue;
        send(s, now());
        s.n++;
        s.next += period;
        if (s.next < t) {
          skipped += Math.floor((t - s.next) / period) + 1;
          s.next = t + period;
        }
      }
      setTimeout(step, 1);
    };
    step();
  });
}

/** Wait until pred() or the deadline: whether pred() held. */
export async function until(pred: () => boolean, ms: number): Promise<boolean> {
  const deadline = now() + ms;
  while (now() < deadline && !pred()) await sleep(20);
  return pred();
}

/** No new frame for this long after the window: what is missing is lost, not late. */
const STALL_MS = 1_000;

export interface DrainReport {
  /** complete: everything expected arrived; stalled: nothing new for STALL_MS; timeout: maxMs passed while frames still arrived. */
  outcome: "complete" | "stalled" | "timeout";
  ms: number;
}

/** Drain: wait until done(), or until progress() stops moving for STALL_MS, at most maxMs. */
export async function drain(done: () => boolean, progress: () => number, maxMs: number): Promise<DrainReport> {
  const t0 = now();
  const deadline = t0 + maxMs;
  let last = progress();
  let lastMove = now();
  while (!done()) {
    if (now() >= deadline) return { outcome: "timeout", ms: now() - t0 };
    await sleep(25);
    const p = progress();
    if (p !== last) {
      last = p;
      lastMove = now();
    } else if (now() - lastMove > STALL_MS) return { outcome: "stalled", ms: now() - t0 };
  }
  return { outcome: "complete", ms: now() - t0 };
}

/**
 * Before a measured run: wait until workerd has worked off what the previous run
 * left queued (a saturated run leaves a backlog that workerd keeps processing
 * after the clients closed), at most settleMaxMs; then wait (at most quietMaxMs)
 * until other processes use less than `threshold` % of a core, so another job on
 * the 2 shared cores does not land in one target's window only.
 */
export async function quiet(
  env: BenchEnv,
  quietMaxMs: number,
  settleMaxMs: number,
  threshold = 25,
): Promise<{ otherPct: number; waitedMs: number; workerdPct: number; settledMs: number }> {
  const sample = async () => {
    const m = new CpuMeter(env.pids);
    m.start();
    await sleep(400);
    return m.stop();
  };
  const t0 = now();
  let r = await sample();
  while (r.workerdPct >= 15 && now() - t0 < settleMaxMs) r = await sample();
  const settledMs = now() - t0;
  const t1 = now();
  while (r.otherPct >= threshold && now() - t1 < quietMaxMs) r = await sample();
  return { otherPct: r.otherPct, waitedMs: now() - t1, workerdPct: r.workerdPct, settledMs };
}

export function countError(errors: Record<string, number>, data: Buffer): void {
  const m = envelope(data);
  if (m?.svc === "sys" && m.type === "error") {
    const code = String(m.data?.code ?? "?");
    errors[code] = (errors[code] ?? 0) + 1;
  }
}

/** Start the CPU meter at `from` and stop it at `to` (performance.now() times). */
export function meterWindow(env: BenchEnv, from: number, to: number): Promise<CpuReport> {
  const meter = new CpuMeter(env.pids);
  return new Promise((resolve) => {
    setTimeout(() => {
      meter.start();
      setTimeout(() => resolve(meter.stop()), Math.max(0, to - now()));
    }, Math.max(0, from - now()));
  });
}

export function connectNote(rep: ConnectReport, wanted: number): string | null {
  if (rep.conns.length === wanted) return null;
  const refused = Object.entries(rep.refused).map(([s, n]) => `${n}×${s}`).join(", ");
  return `${rep.conns.length}/${wanted} connected${refused ? ` (refused: ${refused})` : ""}${rep.firstError ? `; first error: ${rep.firstError}` : ""}`;
}

/** A load scenario's shape: rooms x clients sending at hz, a warm-up, a measured window, a drain. */
export interface LoadCfg {
  rooms: number;
  clients: number;
  hz: number;
  warmMs: number;
  durMs: number;
  drainMs: number;
}

export interface LoadResult {
  kind: RelayTarget;
  ok: boolean;
  note: string | null;
  connected: number;
  connectMs: number;
  /** Frames sent per second inside the window. */
  sentPerS: number;
  /**
   * Throughput: frames (or batch frames) arriving at the receivers per second
   * during the window. Below saturation it equals the offered load; above it, it
   * is what the target can deliver.
   */
  deliveredPerS: number;
  /** Receipts expected for the frames sent in the window, and how many arrived (after the drain). */
  expected: number;
  received: number;
  /** expected - received: lost, or still queued when the drain gave up (see drain). */
  drops: number;
  drain: DrainReport | null;
  latency: Summary;
  errors: Record<string, number>;
  /** Sends the generator could not make on time (it was late by a period or more). */
  skippedSends: number;
  cpu: CpuReport | null;
  /** workerd CPU µs per delivered frame. */
  cpuUsPerDelivered: number | null;
  /** workerd CPU µs per frame sent by the clients. */
  cpuUsPerSent: number | null;
  /**
   * Relay fan-out only: binary messages arriving per second during the window,
   * and delivered frames per message (1 for plain relays; above 1 when the
   * target packs frames into batch frames).
   */
  messagesPerS?: number;
  framesPerMessage?: number | null;
}

/** What bench/entry.ts's stats RPCs return. */
export interface RoomStatsView {
  constructed: number;
  messages: number;
  alarms?: number;
  sockets: number;
  batchesSent: number | null;
  instanceAgeMs: number;
}
