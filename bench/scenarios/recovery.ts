/**
 * Resume with missed-message recovery (SPEC section 10), tenant bench-recovery
 * (bench/policies/bench-recovery.yaml):
 *
 *  1. The cost of the log: ext relays by the built-in `broadcast` handler, in
 *     three modes that take turns in slices (mirrored order: ABC CBA …), each
 *     measured after a warm-up and drained before the next:
 *       - `norec`: the service without recovery, nothing logged;
 *       - `rec`: the same clients in the same rooms on the logged service, the
 *         log still under its byte cap (every relay is one INSERT);
 *       - `rec-full`: the logged service in other rooms (same sizes) whose log
 *         was first filled to its byte cap (`logBytes`, the tenant's max_bytes)
 *         with ~`fillBytes` relays from one socket, so that every relay also
 *         trims: the steady state of a busy room (or of any room older than
 *         window_s, where the window trims instead).
 *     After each slice: drained (every relay of the slice delivered, at most
 *     drainMs) and workerd idle again (at most drainMs more).
 *     Every relay carries its send time and is timed at every other member.
 *  2. The time to replay: a member drops (socket terminated, no close frame),
 *     `messages` relays of about `bytes` bytes each are sent while it is away,
 *     then it reconnects with `sid` and `resume=<epoch>.<off>`; timed from the
 *     upgrade (new WebSocket) to `authed` and to the last replayed frame.
 *     Repeated; the same member resumes from where its last replay ended.
 */
import WebSocket from "ws";
import { closeAll, connectAll, envelope, type Conn, type ConnectSpec } from "../lib/clients.ts";
import { sleep } from "../lib/proc.ts";
import { now, Samples, type Summary } from "../lib/stats.ts";
import { measuredSlice, newTally, tallied, type SliceCfg, type Tally } from "./slices.ts";
import { sliceOrder } from "../lib/storm.ts";
import { CONNECT_CONCURRENCY, connectNote, membersPerRoom, quiet, until, type BenchEnv, type LoadResult } from "./common.ts";

export const RECOVERY_TENANT = "bench-recovery";
export type RecoveryMode = "norec" | "rec" | "rec-full";
export const RECOVERY_MODES: readonly RecoveryMode[] = ["rec", "rec-full", "norec"];

export interface RecoveryCfg extends SliceCfg {
  /** Characters of padding in each relay (its data): the relayed frame is about this plus ~170 bytes. */
  padBytes: number;
  /** The tenant's recovery.max_bytes: what `rec-full` fills each room's log to, with relays of about `fillBytes`. */
  logBytes: number;
  fillBytes: number;
  replay: { repeats: number; messages: number; bytes: number; timeoutMs: number };
}

function url(env: BenchEnv, room: string, user: string, extra = ""): string {
  return `ws://${env.base}/v1/ws?tenant=${RECOVERY_TENANT}&room=${encodeURIComponent(room)}&ticket=dev:${encodeURIComponent(user)}${extra}`;
}

/** A client relay: `{svc, type: "m", data: {t: send time, m: measured 0|1, p: padding}}`, no seq, no ack. */
function relay(svc: string, t: number, measured: boolean, pad: string, extra = ""): string {
  return `{"v":1,"svc":"${svc}","type":"m"${extra},"data":{"t":${t},"m":${measured ? 1 : 0},"p":"${pad}"}}`;
}

interface ModeState extends Tally {
  mode: RecoveryMode;
  svc: string;
  /** Relays received with an `off`. */
  offs: number;
}

export interface RecoveryLoad extends LoadResult {
  mode: RecoveryMode;
  /** Relays received with an `off` (logged): all of `rec`'s, none of `norec`'s. */
  withOff: number;
  /** rec-full: relays sent to fill each room's log before the run, and how long that took (all rooms). */
  fill?: { perRoom: number; bytes: number; ms: number };
}

function result(k: ModeState, conns: number, note: string | null, connectMs: number): RecoveryLoad {
  return { ...tallied(k), kind: "gateway", mode: k.mode, ok: conns > 0, note, connected: conns, connectMs, withOff: k.offs };
}

/**
 * Fill the log of `room` to just past `logBytes`: a filler and a probe join (no
 * one else yet), the probe's first relay gives the row size, the filler sends the
 * rest as fast as the socket takes them, the last one acked (so all were handled).
 */
async function fillLog(env: BenchEnv, room: string, r: number, cfg: RecoveryCfg): Promise<{ n: number; len: number }> {
  const rep = await connectAll(
    [`rf${r}`, `rp${r}`].map((u, idx) => ({ url: url(env, room, u), idx, room: 0, authed: true })),
    { concurrency: 2, deadlineMs: 20_000 },
  );
  const [filler, probe] = rep.conns;
  if (!filler || !probe) throw new Error(`fill ${room}: ${rep.firstError}`);
  const pad = "z".repeat(Math.max(0, cfg.fillBytes - 170));
  let len = 0;
  probe.onMessage = (data) => void (len === 0 && envelope(data)?.svc === "rec" && (len = data.length));
  filler.ws.send(relay("rec", 0, false, pad));
  await until(() => len > 0, 10_000);
  const n = Math.ceil((1.02 * cfg.logBytes) / Math.max(1, len));
  let acked = false;
  filler.onMessage = (data) => void (envelope(data)?.type === "ack" && (acked = true));
  for (let i = 1; i < n - 1; i++) filler.ws.send(relay("rec", 0, false, pad));
  filler.ws.send(relay("rec", 0, false, pad, ',"flags":4,"seq":1'));
  if (!(await until(() => acked, 120_000))) throw new Error(`fill ${room}: no ack after ${n} relays`);
  await closeAll(rep.conns);
  return { n, len };
}

/** Part 1: the three modes in mirrored turns; `first` gives the first slice's order. */
export async function recoveryThroughput(env: BenchEnv, cfg: RecoveryCfg, first: readonly RecoveryMode[]): Promise<RecoveryLoad[]> {
  const wanted = cfg.rooms * cfg.clients;
  const room = (set: string, r: number) => `recov-${env.runId}-${set}${r}`;
  // rec-full's rooms first get their full log, before their members join.
  const t0 = now();
  let filled = { n: 0, len: 0 };
  for (let r = 0; r < cfg.rooms; r++) filled = await fillLog(env, room("f", r), r, cfg);
  const fill = { perRoom: filled.n, bytes: filled.len, ms: now() - t0 };
  const sets: Record<"a" | "f", Conn[]> = { a: [], f: [] };
  let connectMs = 0;
  const notes: string[] = [];
  for (const set of ["a", "f"] as const) {
    const specs: ConnectSpec[] = [];
    for (let r = 0; r < cfg.rooms; r++) {
      for (let i = 0; i < cfg.clients; i++) specs.push({ url: url(env, room(set, r), `rc${set}${r}x${i}`), idx: r * cfg.clients + i, room: r, authed: true });
    }
    const rep = await connectAll(specs, { concurrency: CONNECT_CONCURRENCY, deadlineMs: 60_000 });
    sets[set] = rep.conns;
    connectMs += rep.ms;
    const note = connectNote(rep, wanted);
    if (note) notes.push(`${set === "a" ? "rec/norec" : "rec-full"}: ${note}`);
  }
  const cap = Math.ceil(wanted * cfg.hz * ((cfg.slices * cfg.sliceMs) / 1000) * cfg.clients * 1.2);
  const states = first.map((mode): ModeState => {
    const conns = sets[mode === "rec-full" ? "f" : "a"];
    return {
      mode,
      svc: mode === "norec" ? "norec" : "rec",
      ...newTally(conns.map((conn) => ({ conn, next: 0, n: 0 })), membersPerRoom(conns, cfg.rooms), new Samples(cap)),
      offs: 0,
    };
  });
  const byMode = new Map(states.map((k) => [k.mode, k]));
  const cur: { measuring: ModeState | null } = { measuring: null };
  for (const set of ["a", "f"] as const) {
    for (const c of sets[set]) {
      c.onMessage = (data, isBinary) => {
        if (isBinary) return;
        const t = now();
        const m = envelope(data) as { svc?: string; type?: string; data?: any; off?: number } | null;
        const mode: RecoveryMode | null = m?.svc === "rec" ? (set === "f" ? "rec-full" : "rec") : m?.svc === "norec" ? "norec" : null;
        const k = mode ? byMode.get(mode) : undefined;
        if (k && m?.type === "m") {
          if (typeof m.off === "number") k.offs++;
          if (cur.measuring === k) k.arrived++;
          if (m.data?.m === 1) {
            k.received++;
            k.samples.push(t - m.data.t);
          }
        } else if (m?.svc === "sys" && m.type === "error") {
          const k2 = cur.measuring ?? states[0]!;
          const code = String(m.data?.code ?? "?");
          k2.errors[code] = (k2.errors[code] ?? 0) + 1;
        }
      };
    }
  }
  await sleep(300); // presence joins settle
  const pad = "x".repeat(cfg.padBytes);
  for (let i = 0; i < cfg.slices; i++) {
    for (const k of sliceOrder(states, i)) {
      await measuredSlice(env, cfg, k, cur, (s, t, measured) => s.conn.ws.send(relay(k.svc, t, measured, pad)));
      // Everything of this slice delivered (above), workerd idle again: a saturated slice's backlog is not the next mode's.
      await quiet(env, 0, cfg.drainMs);
    }
  }
  await closeAll([...sets.a, ...sets.f]);
  const note = notes.length > 0 ? notes.join("; ") : null;
  return states.map((k) => ({ ...result(k, k.senders.length, note, connectMs), ...(k.mode === "rec-full" ? { fill } : {}) }));
}

export interface ReplayResult {
  ok: boolean;
  note: string | null;
  messages: number;
  frameBytes: number;
  repeats: number;
  /** Upgrade (new WebSocket) → `authed`, and → the last replayed frame, ms. */
  toAuthed: Summary;
  toLast: Summary;
  /** Every resume said recovered with `count` = messages, and exactly that many frames came, in order. */
  allRecovered: boolean;
  answers: string[];
}

/** Open one socket and collect its text frames; resolves at `authed` (with the upgrade's start time). */
function open(u: string, timeoutMs: number): Promise<{ ws: WebSocket; t0: number; tAuthed: number; authed: any; frames: Array<{ t: number; m: any }> }> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const ws = new WebSocket(u, { perMessageDeflate: false });
    const frames: Array<{ t: number; m: any }> = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no authed within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      const t = now();
      const m = envelope(data);
      if (m?.svc === "sys" && m.type === "authed") {
        ws.send("ping"); // as clients do at open (SPEC v1.2 section 2): the session arrives
        clearTimeout(timer);
        resolve({ ws, t0, tAuthed: t, authed: m.data, frames });
      } else frames.push({ t, m });
    });
    ws.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Part 2: a member drops, `messages` relays are sent, it resumes; `repeats` times. */
export async function recoveryReplay(env: BenchEnv, cfg: RecoveryCfg["replay"]): Promise<ReplayResult> {
  const room = `replay-${env.runId}`;
  const toAuthed = new Samples(cfg.repeats);
  const toLast = new Samples(cfg.repeats);
  const answers: string[] = [];
  let allRecovered = true;
  // The sender, and a witness that sees every relay (so the room has logged them all before the resume).
  const rep = await connectAll(
    ["sender", "witness"].map((u, idx) => ({ url: url(env, room, u), idx, room: 0, authed: true })),
    { concurrency: 2, deadlineMs: 20_000 },
  );
  const [sender, witness] = rep.conns as [Conn | undefined, Conn | undefined];
  let note: string | null = null;
  let seen = 0;
  if (witness) witness.onMessage = (data) => void (envelope(data)?.svc === "rec" && seen++);
  const body = (i: number) => `{"v":1,"svc":"rec","type":"m","data":{"i":${i},"p":"${"y".repeat(Math.max(0, cfg.bytes - 150))}"}}`;
  let frameBytes = 0;
  try {
    if (!sender || !witness) throw new Error(`sender and witness did not connect: ${rep.firstError}`);
    let a = await open(url(env, room, "resumer"), cfg.timeoutMs);
    const sid = String(a.authed.sid);
    let pos = { epoch: String(a.authed.epoch), off: Number(a.authed.off) };
    for (let r = 0; r < cfg.repeats; r++) {
      for (const f of a.frames) if (typeof f.m?.off === "number") pos.off = Math.max(pos.off, f.m.off);
      a.ws.terminate(); // no close frame: the room sees an abnormal close (1006)
      await sleep(200);
      const target = seen + cfg.messages;
      for (let i = 0; i < cfg.messages; i++) sender.ws.send(body(i));
      if (!(await until(() => seen >= target, cfg.timeoutMs))) throw new Error(`the witness saw ${seen}/${target} relays`);
      a = await open(url(env, room, "resumer", `&sid=${encodeURIComponent(sid)}&resume=${pos.epoch}.${pos.off}`), cfg.timeoutMs);
      const d = a.authed;
      answers.push(d.recovered ? `recovered ${d.count}` : `resync ${d.reason}`);
      const replayed = () => a.frames.filter((f) => f.m?.svc === "rec").length;
      if (!(await until(() => replayed() >= cfg.messages, cfg.timeoutMs))) throw new Error(`${replayed()}/${cfg.messages} replayed frames (${answers.at(-1)})`);
      const rec = a.frames.filter((f) => f.m?.svc === "rec").slice(0, cfg.messages);
      const offs = rec.map((f) => f.m.off as number);
      const inOrder = offs.every((o, i) => i === 0 || o === offs[i - 1]! + 1);
      if (!(d.recovered === true && d.count === cfg.messages && inOrder && rec.every((f, i) => f.m.data?.i === i))) allRecovered = false;
      frameBytes = Buffer.byteLength(JSON.stringify(rec[0]!.m));
      toAuthed.push(a.tAuthed - a.t0);
      toLast.push(rec.at(-1)!.t - a.t0);
    }
    a.ws.terminate();
  } catch (err) {
    note = err instanceof Error ? err.message : String(err);
    allRecovered = false;
  }
  await closeAll(rep.conns);
  return { ok: note === null, note, messages: cfg.messages, frameBytes, repeats: toLast.n, toAuthed: toAuthed.summary(), toLast: toLast.summary(), allRecovered, answers };
}
