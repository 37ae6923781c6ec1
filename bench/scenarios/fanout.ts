/**
 * Hot relay fan-out: rooms of clients each sending hot frames on the relay
 * service at a fixed rate, every frame timed at every other member. Four
 * targets (RelayTarget): the gateway, the gateway with `coalesce: true`,
 * partyserver and the bare object.
 */
import { closeAll, connectAll, type Conn, type ConnectReport } from "../lib/clients.ts";
import { forEachHotFrame } from "../lib/hot-frames.ts";
import { CpuMeter } from "../lib/meter.ts";
import { sleep } from "../lib/proc.ts";
import { now, Samples } from "../lib/stats.ts";
import { sliceOrder } from "../lib/storm.ts";
import {
  CONNECT_CONCURRENCY,
  RELAY_SVC,
  connectNote,
  countError,
  drain,
  drive,
  hotFrame,
  membersPerRoom,
  specs,
  type BenchEnv,
  type DrainReport,
  type LoadResult,
  type RelayTarget,
  type Sender,
} from "./common.ts";

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
/** The bench's payload: send time f64, client idx u32, counter u32. */
const PAYLOAD = 16;

interface TargetState {
  kind: RelayTarget;
  conns: Conn[];
  rep: ConnectReport;
  senders: Sender[];
  members: number[];
  errors: Record<string, number>;
  samples: Samples;
  sent: number;
  expected: number;
  /** Frames sent in a measured slice that arrived (whenever), each timed. */
  received: number;
  /** Frames (inner frames of a batch included) arriving during a measured slice. */
  arrived: number;
  /** Binary messages arriving during a measured slice (a batch is one). */
  messages: number;
  skipped: number;
  measuredMs: number;
  cpuMs: number;
  loadgenMs: number;
  otherMs: number;
  drains: DrainReport[];
}

async function connectTarget(env: BenchEnv, cfg: RelayCfg, scenario: string, kind: RelayTarget): Promise<TargetState> {
  const wanted = cfg.rooms * cfg.clients;
  const rep = await connectAll(specs(env, scenario, kind, cfg.rooms, cfg.clients), { concurrency: CONNECT_CONCURRENCY, deadlineMs: 60_000 });
  const k: TargetState = {
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
    messages: 0,
    skipped: 0,
    measuredMs: 0,
    cpuMs: 0,
    loadgenMs: 0,
    otherMs: 0,
    drains: [],
  };
  return k;
}

/**
 * Count and time what reaches a client of target k: every frame of a message
 * counts, each inner frame of a batch timed from its own send time (its
 * payload), so a batch that waited for its last frame does not hide the wait
 * of its first.
 */
function listen(k: TargetState, cur: { measuring: TargetState | null }): void {
  for (const c of k.conns) {
    c.onMessage = (data, isBinary) => {
      if (!isBinary) {
        countError(k.errors, data);
        return;
      }
      const t = now();
      const n = forEachHotFrame(data, PAYLOAD, (buf, p) => {
        if ((buf.readUInt32LE(p + 8) & MEASURED) === 0) return;
        k.received++;
        k.samples.push(t - buf.readDoubleLE(p));
      });
      if (n > 0 && cur.measuring === k) {
        k.arrived += n;
        k.messages++;
      }
    };
  }
}

/** One slice of one target: warm-up, the measured window (CPU metered), then the drain. */
async function slice(env: BenchEnv, cfg: RelayCfg, k: TargetState, cur: { measuring: TargetState | null }): Promise<void> {
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

function result(k: TargetState, wanted: number): LoadResult {
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
    messagesPerS: durS > 0 ? k.messages / durS : 0,
    framesPerMessage: k.messages > 0 ? k.arrived / k.messages : null,
  };
}

/**
 * Hot relay fan-out, the targets interleaved: every client set is connected for
 * the whole run and the sets take turns sending, in slices in mirrored order
 * (sliceOrder: A B C D | D C B A | B C D A | A D C B …; two targets: ABBA), each
 * slice measured after a short warm-up and drained before the next target
 * starts. All targets run in the same workerd thread, so a slice never overlaps
 * another target's traffic, and whatever else the machine does is spread over
 * every target's slices rather than landing in one target's single window.
 * `targets` gives the order of the first slice.
 */
export async function fanoutInterleaved(env: BenchEnv, cfg: RelayCfg, scenario: string, targets: readonly RelayTarget[]): Promise<LoadResult[]> {
  const wanted = cfg.rooms * cfg.clients;
  const states: TargetState[] = [];
  for (const kind of targets) states.push(await connectTarget(env, cfg, scenario, kind));
  /** The target whose slice is being measured (a holder: set from a timer). */
  const cur: { measuring: TargetState | null } = { measuring: null };
  for (const k of states) listen(k, cur);
  await sleep(300); // presence joins settle
  for (let i = 0; i < cfg.slices; i++) {
    for (const k of sliceOrder(states, i)) await slice(env, cfg, k, cur);
  }
  for (const k of states) await closeAll(k.conns);
  return states.map((k) => result(k, wanted));
}
