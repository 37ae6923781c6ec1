/**
 * "Events to origins: gateway vs Pushpin" (issue 11): the same clients send
 * chat:send open loop at stepped rates, once through the gateway (tenant
 * bench-origin, an origin service posting to the bench origin) and once through
 * Pushpin's WebSocket-over-HTTP mode (posting to the same origin), the order
 * alternating at each step. The origin (bench/origin.ts) records when each event
 * arrived; this module drives the clients and reads the origin's counts.
 *
 * Per step and target: fresh connections and rooms; warm-up, then the measured
 * window; then a drain, bounded, while the origin still receives window events;
 * then the connections close. Every phase is time-boxed, so a wedged target costs
 * at most connect + warm + window + drain + settle.
 */
import { closeAll, connectAll, envelope, type ConnectSpec } from "./clients.ts";
import { cpuMs, foreignConnections, machineCpu, sleep } from "./proc.ts";
import { connectNote, drive, quiet, type BenchEnv, type Sender } from "../scenarios/common.ts";
import { now, type Summary } from "./stats.ts";

/** baseline: a bare Durable Object that POSTs each message, nothing else (bench/entry.ts, BaselineForwarder): the platform's limit. */
export type OriginTarget = "gateway" | "pushpin" | "baseline";
/** One letter per target in room names and tags. */
const LETTER: Record<OriginTarget, string> = { gateway: "g", pushpin: "p", baseline: "b" };
/** Targets served by the bench build's workerd (the others: Pushpin). */
const inWorkerd = (t: OriginTarget) => t !== "pushpin";
export const ORIGIN_TENANT = "bench-origin";
const CONNECT_CONCURRENCY = 32;
/** A step is clean when every event arrived, p99 below this, at the offered rate. */
export const CLEAN_P99_MS = 1_000;

export interface OriginCfg {
  rates: number[];
  clients: number;
  rooms: number;
  /** The bare forwarding object runs only at rates up to this. */
  baselineMaxRate: number;
  warmMs: number;
  windowMs: number;
  /**
   * After the window, at most this long for the rest to arrive. No "stalled" cut:
   * the gateway delivers in bursts with pauses of seconds when it falls behind.
   */
  drainMs: number;
  connectMs: number;
  /** Before each step: wait at most this long for workerd and Pushpin to go idle. */
  settleMaxMs: number;
}

export interface OriginEnv {
  runId: string;
  log: (line: string) => void;
  /** host:port of the bench origin, the gateway (runtime port), Pushpin (null: not measured). */
  sinkBase: string;
  gatewayBase: string;
  pushpinBase: string | null;
  pids: { gateway: () => number[]; pushpin: () => number[]; sink: () => number[] };
  /** Every process of each target (wrangler's too): their connections to the target are not foreign. */
  family: { gateway: () => number[]; pushpin: () => number[] };
  /** The target's output lines so far (a bounded buffer: Proc.lines), to keep what it said during a step. */
  logs: { gateway: () => string[]; pushpin: () => string[] };
  /* The baseline runs in the gateway's workerd: its pids, family and logs are the gateway's. */
  /** Origin clock minus generator clock, ms (measureClockOffset). */
  clockOffsetMs: number;
}

export interface OriginStep {
  target: OriginTarget;
  rate: number;
  wanted: number;
  connected: number;
  /** Events the generator sent in the window, and what the rate asked for. */
  sent: number;
  offered: number;
  /** Unique window events at the origin when the drain ended. */
  delivered: number;
  duplicates: number;
  /** Delivered per second of window + drain. */
  deliveredPerS: number;
  /** Client → origin, ms (clock offset removed). */
  latency: Summary;
  /** POSTs that carried window events, per delivered event. */
  postsPerEvent: number | null;
  /** CPU of the target's processes from the window's start to the drain's end, per delivered event. */
  cpuUsPerDelivered: number | null;
  targetPct: number;
  sinkPct: number;
  loadgenPct: number;
  otherPct: number;
  drain: { outcome: "complete" | "timeout"; ms: number };
  errors: Record<string, number>;
  /** Connections that closed before the step ended (the target closed them), by close code. */
  closedEarly: number;
  closeCodes: Record<string, number>;
  /** What the target printed during the step (warnings and errors; at most 50 lines, ANSI colours removed). */
  log: string[];
  /** Connections to the target from other processes (someone else's load on it), most seen. */
  foreignConns: number;
  /** The origin's counters during the step: events not ours, requests it could not parse (400). */
  foreign: number;
  badRequests: number;
  clean: boolean;
  note: string | null;
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

const epoch = (t: number) => performance.timeOrigin + t;

/** The origin's clock minus ours (both epoch ms), from the round trip with the smallest RTT. */
export async function measureClockOffset(sinkBase: string, samples = 15): Promise<{ offsetMs: number; rttMs: number }> {
  let best = { offsetMs: 0, rttMs: Infinity };
  for (let i = 0; i < samples; i++) {
    const t0 = now();
    const { now: theirs } = await getJson<{ now: number }>(`http://${sinkBase}/clock`);
    const t1 = now();
    if (t1 - t0 < best.rttMs) best = { offsetMs: theirs - epoch((t0 + t1) / 2), rttMs: t1 - t0 };
  }
  return best;
}

function specs(env: OriginEnv, target: OriginTarget, rate: number, cfg: OriginCfg): ConnectSpec[] {
  const perRoom = Math.ceil(cfg.clients / cfg.rooms);
  const out: ConnectSpec[] = [];
  for (let i = 0; i < cfg.clients; i++) {
    const r = Math.floor(i / perRoom);
    const room = `o-${env.runId}-${rate}-${LETTER[target]}${r}`;
    const url =
      target === "gateway"
        ? `ws://${env.gatewayBase}/v1/ws?tenant=${ORIGIN_TENANT}&room=${room}&ticket=dev:u${i}`
        : target === "baseline"
          ? `ws://${env.gatewayBase}/baseline/forward?room=${room}`
          : `ws://${env.pushpinBase}/pp/${room}?user=u${i}`;
    out.push({ url, idx: i, room: r, authed: target === "gateway" });
  }
  return out;
}

/** CPU of the target, the origin, this generator and everything else, between start() and stop(). */
class StepMeter {
  private t0 = 0;
  private c0 = 0;
  private s0 = 0;
  private g0: NodeJS.CpuUsage = { user: 0, system: 0 };
  private m0 = { busyMs: 0, totalMs: 0 };
  started = false;
  private readonly target: () => number[];
  private readonly sink: () => number[];

  constructor(target: () => number[], sink: () => number[]) {
    this.target = target;
    this.sink = sink;
  }

  start(): void {
    this.started = true;
    this.t0 = now();
    this.c0 = cpuMs(this.target());
    this.s0 = cpuMs(this.sink());
    this.g0 = process.cpuUsage();
    this.m0 = machineCpu();
  }

  stop(): { targetMs: number; wallMs: number; targetPct: number; sinkPct: number; loadgenPct: number; otherPct: number } {
    const wallMs = now() - this.t0;
    const targetMs = cpuMs(this.target()) - this.c0;
    const sinkMs = cpuMs(this.sink()) - this.s0;
    const g = process.cpuUsage(this.g0);
    const genMs = (g.user + g.system) / 1000;
    const m = machineCpu();
    const pct = (ms: number) => (wallMs > 0 ? (100 * ms) / wallMs : 0);
    const other = m.busyMs - this.m0.busyMs - targetMs - sinkMs - genMs;
    return { targetMs, wallMs, targetPct: pct(targetMs), sinkPct: pct(sinkMs), loadgenPct: pct(genMs), otherPct: Math.max(0, pct(other)) };
  }
}

interface SinkStats {
  unique: number;
  duplicates: number;
  posts: number;
  latency: Summary;
  foreign: number;
  badRequests: number;
}

/** One rate, one target. */
export async function originStep(env: OriginEnv, target: OriginTarget, rate: number, cfg: OriginCfg): Promise<OriginStep> {
  const tag = `o${env.runId}-${rate}-${LETTER[target]}`;
  const side = inWorkerd(target) ? "gateway" : "pushpin";
  const warmTag = `${tag}-w`;
  const wanted = cfg.clients;
  const offered = Math.round((rate * cfg.windowMs) / 1000);
  const before = await getJson<SinkStats>(`http://${env.sinkBase}/stats`).catch(() => null);
  const rep = await connectAll(specs(env, target, rate, cfg), { concurrency: CONNECT_CONCURRENCY, deadlineMs: cfg.connectMs });
  const conns = rep.conns;
  const errors: Record<string, number> = {};
  const closeCodes: Record<string, number> = {};
  let stepOver = false;
  const lastLine = env.logs[side]().at(-1);
  let wsError: string | null = null;
  for (const c of conns) {
    c.ws.on("close", (code: number) => {
      if (!stepOver) closeCodes[code] = (closeCodes[code] ?? 0) + 1;
    });
    c.ws.on("error", (err: Error) => {
      if (!stepOver) wsError ??= err.message;
    });
    c.onMessage = (data, isBinary) => {
      if (isBinary) return;
      const m = envelope(data);
      if (m?.svc === "sys" && m.type === "error") {
        const code = String(m.data?.code ?? "?");
        errors[code] = (errors[code] ?? 0) + 1;
      }
    };
  }
  const base: Pick<OriginStep, "target" | "rate" | "wanted" | "connected" | "sent" | "offered" | "errors" | "note"> = {
    target,
    rate,
    wanted,
    connected: conns.length,
    sent: 0,
    offered,
    errors,
    note: connectNote(rep, wanted),
  };
  if (conns.length === 0) {
    return {
      ...base,
      delivered: 0,
      duplicates: 0,
      deliveredPerS: 0,
      latency: { n: 0, p50: null, p99: null, max: null, mean: null },
      postsPerEvent: null,
      cpuUsPerDelivered: null,
      targetPct: 0,
      sinkPct: 0,
      loadgenPct: 0,
      otherPct: 0,
      drain: { outcome: "timeout", ms: 0 },
      closedEarly: 0,
      closeCodes: {},
      log: [],
      foreignConns: 0,
      foreign: 0,
      badRequests: 0,
      clean: false,
    };
  }
  // The rate is the total: each connected client sends its share.
  const hz = rate / conns.length;
  const targetPort = Number((side === "gateway" ? env.gatewayBase : env.pushpinBase ?? "").split(":")[1]);
  let foreignConns = 0;
  const lookForeign = () => {
    if (Number.isInteger(targetPort)) foreignConns = Math.max(foreignConns, foreignConnections(targetPort, env.family[side]()));
  };
  const meter = new StepMeter(env.pids[side], env.pids.sink);
  const wStart = now() + cfg.warmMs;
  const wEnd = wStart + cfg.windowMs;
  let sent = 0;
  const senders: Sender[] = conns.map((conn) => ({ conn, next: 0, n: 0 }));
  const skipped = await drive(senders, hz, wEnd, (s, t) => {
    const inWindow = t >= wStart;
    if (inWindow && !meter.started) {
      meter.start();
      lookForeign();
    }
    const n = s.n + 1;
    // The same bytes to both targets: the gateway posts `data`, Pushpin the whole text.
    s.conn.ws.send(
      `{"v":1,"svc":"chat","type":"send","seq":${n},"data":{"r":"${inWindow ? tag : warmTag}","c":${s.conn.idx},"n":${n},"t":${epoch(t).toFixed(3)}}}`,
    );
    if (inWindow) sent++;
  });
  if (!meter.started) meter.start();
  base.sent = sent;
  // Drain: until every window event arrived, or drainMs.
  const d0 = now();
  let delivered = 0;
  let outcome: OriginStep["drain"]["outcome"] = "complete";
  for (;;) {
    try {
      delivered = (await getJson<{ unique: number[] }>(`http://${env.sinkBase}/count?tag=${tag}`)).unique[0] ?? 0;
    } catch {
      // the origin is busy: try again
    }
    if (delivered >= sent) break;
    if (now() - d0 >= cfg.drainMs) {
      outcome = "timeout";
      break;
    }
    await sleep(100);
  }
  const drainMs = now() - d0;
  const cpu = meter.stop();
  lookForeign();
  const st = await getJson<SinkStats>(`http://${env.sinkBase}/stats?tag=${tag}`).catch(() => null);
  const closedEarly = conns.filter((c) => c.closed).length;
  stepOver = true;
  await closeAll(conns, 3_000);
  const lines = env.logs[side]();
  const log = lines
    .slice(lastLine === undefined ? 0 : lines.lastIndexOf(lastLine) + 1)
    .slice(0, 50)
    .map((l) => l.replace(/\x1b\[[0-9;]*m/g, "").trim());
  delivered = st?.unique ?? delivered;
  const shift = (x: number | null) => (x === null ? null : x - env.clockOffsetMs);
  const latency: Summary = st
    ? { n: st.latency.n, p50: shift(st.latency.p50), p99: shift(st.latency.p99), max: shift(st.latency.max), mean: shift(st.latency.mean) }
    : { n: 0, p50: null, p99: null, max: null, mean: null };
  const notes = [base.note];
  if (foreignConns > 0) notes.push(`${foreignConns} connections to the ${target} from other processes`);
  if (closedEarly > 0) {
    const codes = Object.entries(closeCodes).map(([k, n]) => `${n}x ${k}`).join(", ");
    notes.push(`${closedEarly} connections closed by the target (${codes}${wsError ? `; first client error: ${wsError}` : ""})`);
  }
  if (skipped > 0) notes.push(`generator skipped ${skipped} late sends`);
  if (!st) notes.push("could not read the origin's stats");
  const clean =
    conns.length === wanted && sent >= 0.99 * offered && delivered >= sent && latency.p99 !== null && latency.p99 < CLEAN_P99_MS;
  return {
    ...base,
    delivered,
    duplicates: st?.duplicates ?? 0,
    deliveredPerS: delivered / ((cfg.windowMs + drainMs) / 1000),
    latency,
    postsPerEvent: st && delivered > 0 ? st.posts / delivered : null,
    cpuUsPerDelivered: delivered > 0 ? (cpu.targetMs * 1000) / delivered : null,
    targetPct: cpu.targetPct,
    sinkPct: cpu.sinkPct,
    loadgenPct: cpu.loadgenPct,
    otherPct: cpu.otherPct,
    drain: { outcome, ms: drainMs },
    closedEarly,
    closeCodes,
    log,
    foreignConns,
    foreign: st && before ? st.foreign - before.foreign : 0,
    badRequests: st && before ? st.badRequests - before.badRequests : 0,
    clean,
    note: notes.filter(Boolean).join("; ") || null,
  };
}

/**
 * Every rate, both targets, the first one alternating (gateway first at the first
 * step when `gatewayFirst`). Before each measurement: workerd and Pushpin idle
 * (a saturated step leaves a backlog: the gateway's outbox is durable), bounded.
 */
export async function originSteps(env: OriginEnv, cfg: OriginCfg, targets: OriginTarget[], gatewayFirst: boolean): Promise<OriginStep[]> {
  const out: OriginStep[] = [];
  const both = () => [...env.pids.gateway(), ...env.pids.pushpin()];
  const calm: BenchEnv = { base: env.gatewayBase, pids: both, runId: env.runId, log: env.log };
  for (let i = 0; i < cfg.rates.length; i++) {
    const rate = cfg.rates[i]!;
    const here = targets.filter((t) => t !== "baseline" || rate <= cfg.baselineMaxRate);
    const order = (i % 2 === 0) === gatewayFirst ? here : [...here].reverse();
    for (const target of order) {
      await sleep(300);
      const q = await quiet(calm, 1_200, cfg.settleMaxMs);
      const busy: string[] = [];
      if (q.settledMs > 2_000) busy.push(`waited ${(q.settledMs / 1000).toFixed(1)} s for the previous step's backlog`);
      if (q.workerdPct >= 15) busy.push(`workerd/Pushpin still at ${q.workerdPct.toFixed(0)}% of a core`);
      if (q.otherPct >= 25) busy.push(`other processes at ${q.otherPct.toFixed(0)}% of a core`);
      env.log(`origin: ${rate.toLocaleString("en-US")} events/s, ${target}${busy.length ? ` (${busy.join("; ")})` : ""}`);
      const r = await originStep(env, target, rate, cfg);
      if (busy.length) r.note = [r.note, `before: ${busy.join("; ")}`].filter(Boolean).join("; ");
      env.log(
        `  ${r.delivered}/${r.sent} delivered, p50 ${fmtMs(r.latency.p50)} p99 ${fmtMs(r.latency.p99)}, ` +
          `${r.postsPerEvent?.toFixed(2) ?? "-"} POSTs/event, ${r.cpuUsPerDelivered?.toFixed(0) ?? "-"} us CPU/event, drain ${r.drain.outcome} ${(r.drain.ms / 1000).toFixed(1)} s`,
      );
      out.push(r);
    }
  }
  return out;
}

function fmtMs(x: number | null): string {
  return x === null ? "-" : x >= 100 ? `${x.toFixed(0)} ms` : `${x.toFixed(1)} ms`;
}

/** Highest rate at which this step and every lower one were clean (0: none). */
export function highestClean(steps: OriginStep[], target: OriginTarget): number {
  let best = 0;
  for (const s of steps.filter((x) => x.target === target).sort((a, b) => a.rate - b.rate)) {
    if (!s.clean) break;
    best = s.rate;
  }
  return best;
}
