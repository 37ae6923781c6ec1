/**
 * Hot relay fan-out: rooms of clients each sending hot frames on the relay
 * service at a fixed rate, every frame timed at every other member.
 */
import { closeAll, connectAll, type Conn, type ConnectReport } from "../lib/clients.ts";
import { CpuMeter } from "../lib/meter.ts";
import { sleep } from "../lib/proc.ts";
import { now, Samples } from "../lib/stats.ts";
import {
  CONNECT_CONCURRENCY,
  RELAY_SVC,
  connectNote,
  countError,
  drain,
  drive,
  hotFrame,
  membersPerRoom,
  payloadOffset,
  specs,
  type BenchEnv,
  type DrainReport,
  type Kind,
  type LoadResult,
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
