/**
 * Hot relay fan-out: rooms of clients each sending hot frames on the relay
 * service at a fixed rate, every frame timed at every other member. Four
 * targets (RelayTarget): the gateway, the gateway with `coalesce: true`,
 * partyserver and the bare object.
 */
import { closeAll, connectAll, type Conn, type ConnectReport } from "../lib/clients.ts";
import { forEachHotFrame } from "../lib/hot-frames.ts";
import { sleep } from "../lib/proc.ts";
import { now, Samples } from "../lib/stats.ts";
import { measuredSlice, newTally, tallied, type SliceCfg, type Tally } from "./slices.ts";
import { sliceOrder } from "../lib/storm.ts";
import {
  CONNECT_CONCURRENCY,
  RELAY_SVC,
  connectNote,
  countError,
  hotFrame,
  membersPerRoom,
  specs,
  type BenchEnv,
  type LoadResult,
  type RelayTarget,
} from "./common.ts";

export type RelayCfg = SliceCfg;

/** Set in a frame's idx field: sent inside a measured slice. */
const MEASURED = 0x80000000;
/** The bench's payload: send time f64, client idx u32, counter u32. */
const PAYLOAD = 16;

interface TargetState extends Tally {
  kind: RelayTarget;
  conns: Conn[];
  rep: ConnectReport;
  /** Binary messages arriving during a measured slice (a batch is one). */
  messages: number;
}

async function connectTarget(env: BenchEnv, cfg: RelayCfg, scenario: string, kind: RelayTarget): Promise<TargetState> {
  const wanted = cfg.rooms * cfg.clients;
  const rep = await connectAll(specs(env, scenario, kind, cfg.rooms, cfg.clients), { concurrency: CONNECT_CONCURRENCY, deadlineMs: 60_000 });
  const k: TargetState = {
    ...newTally(
      rep.conns.map((conn) => ({ conn, next: 0, n: 0 })),
      membersPerRoom(rep.conns, cfg.rooms),
      new Samples(Math.ceil(wanted * cfg.hz * ((cfg.slices * cfg.sliceMs) / 1000) * cfg.clients * 1.2)),
    ),
    kind,
    conns: rep.conns,
    rep,
    messages: 0,
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
function slice(env: BenchEnv, cfg: RelayCfg, k: TargetState, cur: { measuring: TargetState | null }): Promise<void> {
  return measuredSlice(env, cfg, k, cur, (s, t, measured) =>
    s.conn.ws.send(hotFrame(RELAY_SVC, 1, t, measured ? (s.conn.idx | MEASURED) >>> 0 : s.conn.idx, s.n)),
  );
}

function result(k: TargetState, wanted: number): LoadResult {
  const durS = k.measuredMs / 1000;
  return {
    ...tallied(k),
    kind: k.kind,
    ok: k.conns.length > 0,
    note: connectNote(k.rep, wanted),
    connected: k.conns.length,
    connectMs: k.rep.ms,
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
