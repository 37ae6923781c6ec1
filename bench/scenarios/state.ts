/**
 * Hot `state` mode (latest state wins): clients send faster than the room's
 * tick; the gateway sends one batch frame per member per tick, the baseline
 * relays every frame.
 */
import { closeAll, connectAll } from "../lib/clients.ts";
import { sleep } from "../lib/proc.ts";
import { now, Samples, type Summary } from "../lib/stats.ts";
import {
  CONNECT_CONCURRENCY,
  STATE_SVC,
  connectNote,
  countError,
  drain,
  drive,
  hotFrame,
  membersPerRoom,
  meterWindow,
  payloadOffset,
  roomName,
  specs,
  type BenchEnv,
  type DrainReport,
  type Kind,
  type LoadCfg,
  type LoadResult,
  type Sender,
} from "./common.ts";

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
