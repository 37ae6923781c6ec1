/**
 * The load scenarios. Each runs against one target kind, the gateway (the real
 * /v1/ws path: Worker checks, dev ticket, room object with policy) or the
 * baseline (/baseline/ws: a bare relaying Durable Object), with fresh rooms.
 *
 * Latency: every frame carries its send time (performance.now() of this process,
 * f64 LE) and is timed at the receivers. Only frames sent inside the measured
 * window count; frames are awaited for a bounded drain time after it.
 */
import { closeAll, connectAll, envelope, type Conn, type ConnectReport, type ConnectSpec } from "./clients.ts";
import { CpuMeter, type CpuReport } from "./meter.ts";
import { rssKiB, sleep } from "./proc.ts";
import { now, Samples, type Summary } from "./stats.ts";

export type Kind = "gateway" | "baseline";

export interface BenchEnv {
  /** host:port the clients connect to. */
  base: string;
  /** workerd pids (CPU, RSS). */
  pids: () => number[];
  runId: string;
  log: (line: string) => void;
}

const TENANT = "demo";
const RELAY_SVC = 1;
const STATE_SVC = 3;
const CONNECT_CONCURRENCY = 32;

function wsUrl(env: BenchEnv, kind: Kind, room: string, user: string): string {
  return kind === "gateway"
    ? `ws://${env.base}/v1/ws?tenant=${TENANT}&room=${encodeURIComponent(room)}&ticket=dev:${encodeURIComponent(user)}`
    : `ws://${env.base}/baseline/ws?room=${encodeURIComponent(room)}`;
}

function roomName(env: BenchEnv, scenario: string, kind: Kind, r: number): string {
  return `${scenario}-${env.runId}-${kind === "gateway" ? "g" : "b"}${r}`;
}

function specs(env: BenchEnv, scenario: string, kind: Kind, rooms: number, perRoom: number): ConnectSpec[] {
  const out: ConnectSpec[] = [];
  for (let r = 0; r < rooms; r++) {
    for (let i = 0; i < perRoom; i++) {
      out.push({ url: wsUrl(env, kind, roomName(env, scenario, kind, r), `${scenario}${r}x${i}`), idx: r * perRoom + i, room: r, authed: kind === "gateway" });
    }
  }
  return out;
}

function membersPerRoom(conns: Conn[], rooms: number): number[] {
  const m = new Array<number>(rooms).fill(0);
  for (const c of conns) m[c.room]!++;
  return m;
}

/** Offset of the payload in a hot frame, client form (baseline relays it as is) or gateway form. */
function payloadOffset(buf: Buffer): number {
  const flags = buf[3]!;
  const seq = flags & 0x01 ? 4 : 0;
  return 4 + seq + (flags & 0x80 ? 2 : 0);
}

/** Client hot frame [1][svc][op][0] + [ts f64][idx u32][n u32]. */
function hotFrame(svc: number, op: number, ts: number, idx: number, n: number): Buffer {
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

/** Wait until pred() or the deadline. */
async function until(pred: () => boolean, ms: number): Promise<void> {
  const deadline = now() + ms;
  while (now() < deadline && !pred()) await sleep(20);
}

/** No new frame for this long after the window: what is missing is lost, not late. */
const STALL_MS = 1_000;

export interface DrainReport {
  /** complete: everything expected arrived; stalled: nothing new for STALL_MS; timeout: maxMs passed while frames still arrived. */
  outcome: "complete" | "stalled" | "timeout";
  ms: number;
}

/** Drain: wait until done(), or until progress() stops moving for STALL_MS, at most maxMs. */
async function drain(done: () => boolean, progress: () => number, maxMs: number): Promise<DrainReport> {
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

function countError(errors: Record<string, number>, data: Buffer): void {
  const m = envelope(data);
  if (m?.svc === "sys" && m.type === "error") {
    const code = String(m.data?.code ?? "?");
    errors[code] = (errors[code] ?? 0) + 1;
  }
}

/** Start the CPU meter at `from` and stop it at `to` (performance.now() times). */
function meterWindow(env: BenchEnv, from: number, to: number): Promise<CpuReport> {
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

// ---------------------------------------------------------------------------
// hot relay fan-out

export interface LoadCfg {
  rooms: number;
  clients: number;
  hz: number;
  warmMs: number;
  durMs: number;
  drainMs: number;
}

export interface LoadResult {
  kind: Kind;
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
}

export interface RelayCfg {
  rooms: number;
  clients: number;
  hz: number;
  /** Measured slices per target; the targets take turns, slice by slice. */
  slices: number;
  sliceMs: number;
  /** Sending before each slice is measured. */
  warmMs: number;
  /** After each slice: wait (at most this long) until its frames are delivered. */
  drainMs: number;
}

/** Set in a frame's idx field: sent inside a measured slice. */
const MEASURED = 0x80000000;

interface KindState {
  kind: Kind;
  conns: Conn[];
  rep: ConnectReport;
  senders: Sender[];
  members: number[];
  errors: Record<string, number>;
  samples: Samples;
  sent: number;
  expected: number;
  received: number;
  arrived: number;
  skipped: number;
  measuredMs: number;
  cpuMs: number;
  loadgenMs: number;
  otherMs: number;
  drains: DrainReport[];
}

/**
 * Hot relay fan-out, gateway and baseline interleaved: both client sets are
 * connected for the whole run and take turns sending, in slices (G B B G G B …),
 * each slice measured after a short warm-up and drained before the other target
 * starts. Both targets run in the same workerd thread, so a slice never overlaps
 * the other target's traffic, and whatever else the machine does is spread over
 * both targets' slices rather than landing in one target's single window.
 */
export async function fanoutInterleaved(env: BenchEnv, cfg: RelayCfg, scenario: string, first: Kind): Promise<LoadResult[]> {
  const wanted = cfg.rooms * cfg.clients;
  const states: KindState[] = [];
  for (const kind of ["gateway", "baseline"] as const) {
    const rep = await connectAll(specs(env, scenario, kind, cfg.rooms, cfg.clients), { concurrency: CONNECT_CONCURRENCY, deadlineMs: 60_000 });
    states.push({
      kind,
      conns: rep.conns,
      rep,
      senders: rep.conns.map((conn) => ({ conn, next: 0, n: 0 })),
      members: membersPerRoom(rep.conns, cfg.rooms),
      errors: {},
      samples: new Samples(Math.ceil(wanted * cfg.hz * ((cfg.slices * cfg.sliceMs) / 1000) * cfg.clients * 1.2)),
      sent: 0,
      expected: 0,
      received: 0,
      arrived: 0,
      skipped: 0,
      measuredMs: 0,
      cpuMs: 0,
      loadgenMs: 0,
      otherMs: 0,
      drains: [],
    });
  }
  /** The target whose slice is being measured (a holder: set from a timer). */
  const cur: { measuring: KindState | null } = { measuring: null };
  for (const k of states) {
    for (const c of k.conns) {
      c.onMessage = (data, isBinary) => {
        if (!isBinary) {
          countError(k.errors, data);
          return;
        }
        if (data.byteLength < 20) return;
        const t = now();
        if (cur.measuring === k) k.arrived++;
        const off = payloadOffset(data);
        if ((data.readUInt32LE(off + 8) & MEASURED) !== 0) {
          k.received++;
          k.samples.push(t - data.readDoubleLE(off));
        }
      };
    }
  }
  await sleep(300); // presence joins settle
  const second = states.find((k) => k.kind !== first)!;
  const firstState = states.find((k) => k.kind === first)!;
  for (let i = 0; i < cfg.slices; i++) {
    // ABBA: G B | B G | G B …
    for (const k of i % 2 === 0 ? [firstState, second] : [second, firstState]) {
      const mStart = now() + cfg.warmMs;
      const mEnd = mStart + cfg.sliceMs;
      const meter = new CpuMeter(env.pids);
      const startTimer = setTimeout(() => {
        cur.measuring = k;
        meter.start();
      }, cfg.warmMs);
      k.skipped += await drive(k.senders, cfg.hz, mEnd, (s, t) => {
        const measured = t >= mStart && t < mEnd;
        s.conn.ws.send(hotFrame(RELAY_SVC, 1, t, measured ? (s.conn.idx | MEASURED) >>> 0 : s.conn.idx, s.n));
        if (measured) {
          k.sent++;
          k.expected += k.members[s.conn.room]! - 1;
        }
      });
      clearTimeout(startTimer);
      if (cur.measuring === k) {
        const r = meter.stop();
        cur.measuring = null;
        k.measuredMs += r.wallMs;
        k.cpuMs += (r.workerdPct / 100) * r.wallMs;
        k.loadgenMs += (r.loadgenPct / 100) * r.wallMs;
        k.otherMs += (r.otherPct / 100) * r.wallMs;
      }
      k.drains.push(await drain(() => k.received >= k.expected, () => k.received, cfg.drainMs));
    }
  }
  for (const k of states) await closeAll(k.conns);
  return states.map((k): LoadResult => {
    const durS = k.measuredMs / 1000;
    const pct = (ms: number) => (k.measuredMs > 0 ? (100 * ms) / k.measuredMs : 0);
    const worst = k.drains.find((d) => d.outcome === "timeout") ?? k.drains.find((d) => d.outcome === "stalled") ?? k.drains[k.drains.length - 1] ?? null;
    return {
      kind: k.kind,
      ok: k.conns.length > 0,
      note: connectNote(k.rep, wanted),
      connected: k.conns.length,
      connectMs: k.rep.ms,
      sentPerS: durS > 0 ? k.sent / durS : 0,
      deliveredPerS: durS > 0 ? k.arrived / durS : 0,
      expected: k.expected,
      received: k.received,
      drops: k.expected - k.received,
      drain: worst,
      latency: k.samples.summary(),
      errors: k.errors,
      skippedSends: k.skipped,
      cpu: { wallMs: k.measuredMs, workerdPct: pct(k.cpuMs), loadgenPct: pct(k.loadgenMs), otherPct: pct(k.otherMs) },
      cpuUsPerDelivered: k.arrived > 0 ? (k.cpuMs * 1000) / k.arrived : null,
      cpuUsPerSent: k.sent > 0 ? (k.cpuMs * 1000) / k.sent : null,
    };
  });
}

// ---------------------------------------------------------------------------
// hot state mode

export interface StateCfg extends LoadCfg {
  /** The demo policy's tick_hz for svc 3. */
  tickHz: number;
}

export interface StateExtra {
  /** Gateway answered NOT_SUPPORTED: state mode is not in this build. */
  unsupported: boolean;
  /** Ticks seen (clusters of batch arrivals per room) per second, per room on average. */
  ticksPerS: number;
  /** Batch frames per member per tick (1 = exactly one). */
  batchesPerMemberPerTick: number | null;
  /** A member got two batch frames less than half a tick apart. */
  doubleBatches: number;
  innerPerBatch: { mean: number | null; max: number };
  /** Inner states delivered per second (all members). */
  statesPerS: number;
  /** now - send time of the newest inner state of each batch. */
  newestLatency: Summary;
  /** An inner state older than (or equal to) one the member already had from that sender. */
  supersededSent: number;
  /** Batches the rooms say they sent (bench counter) vs received by the clients, whole run. */
  batchesSent: number | null;
  batchesReceived: number;
}

export async function stateMode(env: BenchEnv, kind: Kind, cfg: StateCfg, statsOf: (room: string) => Promise<{ batchesSent: number | null } | null>): Promise<LoadResult & { state: StateExtra | null }> {
  const wanted = cfg.rooms * cfg.clients;
  const rep = await connectAll(specs(env, "state", kind, cfg.rooms, cfg.clients), { concurrency: CONNECT_CONCURRENCY, deadlineMs: 60_000 });
  const conns = rep.conns;
  const members = membersPerRoom(conns, cfg.rooms);
  const errors: Record<string, number> = {};
  const cap = Math.ceil(wanted * cfg.hz * (cfg.durMs / 1000) * cfg.clients * 1.2);
  const samples = new Samples(kind === "gateway" ? wanted * cfg.tickHz * (cfg.durMs / 1000) * 2 : cap);
  await sleep(300);
  const wStart = now() + cfg.warmMs;
  const wEnd = wStart + cfg.durMs;
  const tickMs = 1000 / cfg.tickHz;
  let received = 0; // baseline: frames sent in the window; gateway: batch frames arriving in the window
  let arrived = 0; // baseline: frames arriving in the window
  let expected = 0;
  let sent = 0;
  // gateway state bookkeeping
  let batchesAll = 0;
  let innerSum = 0;
  let innerMax = 0;
  let doubles = 0;
  let superseded = 0;
  let unexpected = 0;
  const roomTicks = new Array<number>(cfg.rooms).fill(0);
  const roomLast = new Array<number>(cfg.rooms).fill(-Infinity);
  const roomBatches = new Array<number>(cfg.rooms).fill(0);
  for (const c of conns) {
    let lastBatch = -Infinity;
    const lastN = new Map<number, number>();
    c.onMessage = (data, isBinary) => {
      if (!isBinary) {
        countError(errors, data);
        return;
      }
      const t = now();
      if (kind === "baseline") {
        if (data.byteLength < 20) return;
        if (t >= wStart && t < wEnd) arrived++;
        const ts = data.readDoubleLE(payloadOffset(data));
        if (ts >= wStart && ts < wEnd) {
          received++;
          samples.push(t - ts);
        }
        return;
      }
      if (data.byteLength < 6 || data[1] !== 0 || data[2] !== 1) {
        unexpected++;
        return;
      }
      batchesAll++;
      const count = data.readUInt16LE(4);
      let o = 6;
      let newest = -Infinity;
      for (let i = 0; i < count && o + 2 <= data.byteLength; i++) {
        const len = data.readUInt16LE(o);
        const inner = data.subarray(o + 2, o + 2 + len);
        o += 2 + len;
        if (inner.byteLength < 20) continue;
        const p = payloadOffset(inner);
        const ts = inner.readDoubleLE(p);
        const idx = inner.readUInt32LE(p + 8);
        const n = inner.readUInt32LE(p + 12);
        const prev = lastN.get(idx);
        if (prev !== undefined && n <= prev) superseded++;
        lastN.set(idx, n);
        if (ts > newest) newest = ts;
      }
      if (t < wStart || t >= wEnd) return;
      received++;
      roomBatches[c.room]!++;
      innerSum += count;
      if (count > innerMax) innerMax = count;
      if (t - lastBatch < tickMs / 2) doubles++;
      lastBatch = t;
      if (t - roomLast[c.room]! > tickMs / 2) roomTicks[c.room]!++;
      roomLast[c.room] = t;
      if (newest > -Infinity) samples.push(t - newest);
    };
  }
  const cpuP = meterWindow(env, wStart, wEnd);
  const senders: Sender[] = conns.map((conn) => ({ conn, next: 0, n: 0 }));
  // Until the gateway has state mode (or if the policy drops svc 3), it answers svc 3
  // frames with sys.error: stop at once and say so.
  const refusal = () => (errors.NOT_SUPPORTED ? "NOT_SUPPORTED" : errors.NOT_ALLOWED ? "NOT_ALLOWED" : null);
  const unsupported = () => refusal() !== null;
  const skipped = await drive(
    senders,
    cfg.hz,
    wEnd,
    (s, t) => {
      s.conn.ws.send(hotFrame(STATE_SVC, 1, t, s.conn.idx, s.n));
      if (t >= wStart && t < wEnd) {
        sent++;
        expected += members[s.conn.room]! - 1;
      }
    },
    kind === "gateway" ? unsupported : undefined,
  );
  const cpu = unsupported() ? null : await cpuP;
  let drained: DrainReport | null = null;
  if (kind === "baseline") drained = await drain(() => received >= expected, () => received, cfg.drainMs);
  else await sleep(Math.min(cfg.drainMs, 4 * tickMs + 300)); // the last ticks, then the tick stops
  let batchesSent: number | null = null;
  if (kind === "gateway" && !unsupported()) {
    batchesSent = 0;
    for (let r = 0; r < cfg.rooms; r++) {
      const st = await statsOf(roomName(env, "state", kind, r));
      if (st?.batchesSent == null) {
        batchesSent = null;
        break;
      }
      batchesSent += st.batchesSent;
    }
  }
  await closeAll(conns);
  const durS = cfg.durMs / 1000;
  const base: LoadResult = {
    kind,
    ok: conns.length > 0 && !unsupported(),
    note: unsupported()
      ? `gateway answered sys.error ${refusal()} for hot svc ${STATE_SVC}: ${refusal() === "NOT_SUPPORTED" ? "state mode is not in this build" : `svc ${STATE_SVC} is not in the demo tenant's hot_allowlist`}`
      : connectNote(rep, wanted),
    connected: conns.length,
    connectMs: rep.ms,
    sentPerS: sent / durS,
    deliveredPerS: (kind === "baseline" ? arrived : received) / durS,
    expected: kind === "baseline" ? expected : Math.round(cfg.tickHz * durS) * conns.length,
    received,
    drops: kind === "baseline" ? expected - received : batchesSent === null ? 0 : batchesSent - batchesAll,
    drain: drained,
    latency: samples.summary(),
    errors,
    skippedSends: skipped,
    cpu,
    cpuUsPerDelivered: cpu && (kind === "baseline" ? arrived : received) > 0 ? (cpu.workerdPct / 100) * cfg.durMs * 1000 / (kind === "baseline" ? arrived : received) : null,
    cpuUsPerSent: cpu && sent > 0 ? (cpu.workerdPct / 100) * cfg.durMs * 1000 / sent : null,
  };
  if (kind === "baseline") return { ...base, state: null };
  if (unexpected > 0) base.note = `${base.note ? `${base.note}; ` : ""}${unexpected} binary frames that are not state batches`;
  let ticks = 0;
  let perTickDen = 0;
  let batchesInRooms = 0;
  for (let r = 0; r < cfg.rooms; r++) {
    ticks += roomTicks[r]!;
    perTickDen += roomTicks[r]! * members[r]!;
    batchesInRooms += roomBatches[r]!;
  }
  return {
    ...base,
    state: {
      unsupported: unsupported(),
      ticksPerS: ticks / cfg.rooms / durS,
      batchesPerMemberPerTick: perTickDen > 0 ? batchesInRooms / perTickDen : null,
      doubleBatches: doubles,
      innerPerBatch: { mean: received > 0 ? innerSum / received : null, max: innerMax },
      statesPerS: innerSum / durS,
      newestLatency: samples.summary(),
      supersededSent: superseded,
      batchesSent,
      batchesReceived: batchesAll,
    },
  };
}

// ---------------------------------------------------------------------------
// ext lane through the example origin

export interface ExtCfg {
  rooms: number;
  clients: number;
  hz: number;
  warmMs: number;
  durMs: number;
  drainMs: number;
}

export interface ExtResult {
  ok: boolean;
  note: string | null;
  connected: number;
  sentPerS: number;
  /** Events acknowledged (sys.ack) per second, of those sent in the window. */
  ackedPerS: number;
  unacked: number;
  ackLatency: Summary;
  /** The origin's chat:msg broadcast, timed at every member of the room. */
  broadcastPerS: number;
  broadcastLatency: Summary;
  errors: Record<string, number>;
  skippedSends: number;
  cpu: CpuReport | null;
  drain: DrainReport;
}

export async function extLane(env: BenchEnv, cfg: ExtCfg): Promise<ExtResult> {
  const wanted = cfg.rooms * cfg.clients;
  const rep = await connectAll(specs(env, "ext", "gateway", cfg.rooms, cfg.clients), { concurrency: CONNECT_CONCURRENCY, deadlineMs: 60_000 });
  const conns = rep.conns;
  const errors: Record<string, number> = {};
  const n = Math.ceil(wanted * cfg.hz * (cfg.durMs / 1000) * 1.5);
  const ackLat = new Samples(n);
  const bcLat = new Samples(n * cfg.clients);
  await sleep(500); // open events reach the origin, "x joined" broadcasts
  const wStart = now() + cfg.warmMs;
  const wEnd = wStart + cfg.durMs;
  let sent = 0;
  let acked = 0;
  let bcast = 0;
  const pending = new Map<Conn, Map<number, number>>();
  for (const c of conns) {
    const mine = new Map<number, number>();
    pending.set(c, mine);
    c.onMessage = (data, isBinary) => {
      if (isBinary) return;
      const m = envelope(data);
      if (!m) return;
      const t = now();
      if (m.svc === "sys" && m.type === "ack" && typeof m.data?.seq === "number") {
        const ts = mine.get(m.data.seq);
        if (ts === undefined) return;
        mine.delete(m.data.seq);
        if (ts >= wStart && ts < wEnd) {
          acked++;
          ackLat.push(t - ts);
        }
      } else if (m.svc === "sys" && m.type === "error") {
        const code = String(m.data?.code ?? "?");
        errors[code] = (errors[code] ?? 0) + 1;
        if (typeof m.data?.seq === "number") mine.delete(m.data.seq);
      } else if (m.svc === "chat" && m.type === "msg" && typeof m.data?.msg === "string") {
        const ts = Number(m.data.msg.split(" ")[3]);
        if (ts >= wStart && ts < wEnd) {
          bcast++;
          bcLat.push(t - ts);
        }
      }
    };
  }
  const cpuP = meterWindow(env, wStart, wEnd);
  const senders: Sender[] = conns.map((conn) => ({ conn, next: 0, n: 0 }));
  const skipped = await drive(senders, cfg.hz, wEnd, (s, t) => {
    const seq = s.n + 1;
    pending.get(s.conn)!.set(seq, t);
    s.conn.ws.send(
      JSON.stringify({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { msg: `b ${s.conn.idx} ${seq} ${t.toFixed(3)}` } }),
    );
    if (t >= wStart && t < wEnd) sent++;
  });
  const cpu = await cpuP;
  const drained = await drain(() => acked >= sent, () => acked, cfg.drainMs);
  await closeAll(conns);
  const durS = cfg.durMs / 1000;
  return {
    ok: conns.length > 0,
    note: connectNote(rep, wanted),
    connected: conns.length,
    sentPerS: sent / durS,
    ackedPerS: acked / durS,
    unacked: sent - acked,
    ackLatency: ackLat.summary(),
    broadcastPerS: bcast / durS,
    broadcastLatency: bcLat.summary(),
    errors,
    skippedSends: skipped,
    cpu,
    drain: drained,
  };
}

// ---------------------------------------------------------------------------
// idle connections with heartbeats

export interface IdleCfg {
  conns: number;
  perRoom: number;
  pingEveryMs: number;
  holdMs: number;
  /** After the last connection opened, before RSS is read. */
  settleMs: number;
}

export interface IdleVariant {
  kind: Kind;
  /** Short tag, unique per variant (room names). */
  tag: string;
  label: string;
  /** Gateway: connections per user (1 = every connection its own user). */
  sessionsPerUser: number;
}

export interface IdleResult {
  kind: Kind;
  label: string;
  ok: boolean;
  note: string | null;
  connected: number;
  connectMs: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** (after - before) / connections. */
  kibPerConn: number | null;
  pings: number;
  pongs: number;
  /** webSocketMessage calls in the rooms (must stay 0: ping is auto-answered). */
  roomMessages: number | null;
  /** Object constructions (first start + wakes), the stats call's own wake included. */
  roomConstructions: number | null;
  /** Constructions after the first, not counting a wake caused by the stats read itself. */
  roomWakesWhileIdle: number | null;
  /** alarm() runs in the rooms (gateway: counted by the bench subclass). */
  roomAlarms: number | null;
  rooms: number;
  /** Frames other than pong received while idle. */
  otherFrames: number;
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

export interface IdleSet {
  variant: IdleVariant;
  result: IdleResult;
  conns: Conn[];
  rooms: string[];
}

function sumRss(env: BenchEnv): number {
  return env.pids().reduce((a, pid) => a + rssKiB(pid), 0);
}

/**
 * Open C idle connections of one variant and keep them open (the caller holds
 * and closes them). RSS of the workerd processes is read before the first and
 * `settleMs` after the last: the difference over C is the cost of a connection.
 */
export async function idleConnect(env: BenchEnv, v: IdleVariant, cfg: IdleCfg): Promise<IdleSet> {
  const nRooms = Math.ceil(cfg.conns / cfg.perRoom);
  const rooms = Array.from({ length: nRooms }, (_, r) => `idle-${env.runId}-${v.tag}${r}`);
  const all: ConnectSpec[] = [];
  for (let i = 0; i < cfg.conns; i++) {
    const r = Math.floor(i / cfg.perRoom);
    const user = v.sessionsPerUser > 1 ? `idle${v.tag}u${Math.floor(i / v.sessionsPerUser)}` : `idle${v.tag}x${i}`;
    all.push({ url: wsUrl(env, v.kind, rooms[r]!, user), idx: i, room: r, authed: v.kind === "gateway" });
  }
  await sleep(300);
  const before = sumRss(env);
  const rep = await connectAll(all, { concurrency: CONNECT_CONCURRENCY, deadlineMs: 120_000 });
  await sleep(cfg.settleMs);
  const after = sumRss(env);
  const conns = rep.conns;
  return {
    variant: v,
    conns,
    rooms,
    result: {
      kind: v.kind,
      label: v.label,
      ok: conns.length > 0,
      note: connectNote(rep, cfg.conns),
      connected: conns.length,
      connectMs: rep.ms,
      rssBeforeKiB: before,
      rssAfterKiB: after,
      kibPerConn: conns.length > 0 ? (after - before) / conns.length : null,
      pings: 0,
      pongs: 0,
      roomMessages: null,
      roomConstructions: null,
      roomWakesWhileIdle: null,
      roomAlarms: null,
      rooms: nRooms,
      otherFrames: 0,
    },
  };
}

/**
 * Every connection of every set pings every pingEveryMs (phases spread) for holdMs
 * and counts its pongs; then the rooms' counters are read (`statsOf`), which wakes
 * a hibernated room: the constructions count includes that read's own wake.
 */
export async function idleHold(
  env: BenchEnv,
  sets: IdleSet[],
  cfg: IdleCfg,
  statsOf: (kind: Kind, room: string) => Promise<RoomStatsView | null>,
): Promise<void> {
  const senders: Sender[] = [];
  for (const set of sets) {
    const r = set.result;
    for (const c of set.conns) {
      c.onMessage = (data, isBinary) => {
        if (!isBinary && data.byteLength === 4 && data.toString("latin1") === "pong") r.pongs++;
        else r.otherFrames++;
      };
      senders.push({ conn: c, next: 0, n: 0 });
    }
  }
  const byConn = new Map<Conn, IdleResult>();
  for (const set of sets) for (const c of set.conns) byConn.set(c, set.result);
  await drive(senders, 1000 / cfg.pingEveryMs, now() + cfg.holdMs, (s) => {
    s.conn.ws.send("ping");
    byConn.get(s.conn)!.pings++;
  });
  await until(() => sets.every((x) => x.result.pongs >= x.result.pings), 3_000);
  for (const set of sets) {
    let messages = 0;
    let constructed = 0;
    let wakes = 0;
    let alarms = 0;
    let ok = true;
    for (const room of set.rooms) {
      const st = await statsOf(set.variant.kind, room);
      if (!st) {
        ok = false;
        break;
      }
      messages += st.messages;
      constructed += st.constructed;
      alarms += st.alarms ?? 0;
      // An instance younger than the read was constructed for the read.
      wakes += st.constructed - 1 - (st.instanceAgeMs < 250 && st.constructed > 1 ? 1 : 0);
    }
    set.result.roomMessages = ok ? messages : null;
    set.result.roomConstructions = ok ? constructed : null;
    set.result.roomWakesWhileIdle = ok ? wakes : null;
    set.result.roomAlarms = ok ? alarms : null;
  }
}
