/**
 * The ext lane through the example origin: `chat:send` with ACK_REQUESTED,
 * timed to `sys.ack` and to the origin's `chat:msg` broadcast at every member.
 * Gateway only (the baseline has no origin).
 */
import { closeAll, connectAll, envelope, type Conn } from "../lib/clients.ts";
import type { CpuReport } from "../lib/meter.ts";
import { sleep } from "../lib/proc.ts";
import { now, Samples, type Summary } from "../lib/stats.ts";
import { CONNECT_CONCURRENCY, connectNote, drain, drive, meterWindow, specs, type BenchEnv, type DrainReport, type LoadCfg, type Sender } from "./common.ts";

/** The ext lane's load: the shared shape (rooms x clients at hz, warm-up, window, drain). */
export type ExtCfg = LoadCfg;

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
