/**
 * Idle connections with heartbeats: what a held connection costs in workerd's
 * RSS, and whether `ping` wakes the room (it must not: it is auto-answered).
 */
import { connectAll, type Conn, type ConnectSpec } from "../lib/clients.ts";
import { rssKiB, sleep } from "../lib/proc.ts";
import { now } from "../lib/stats.ts";
import { CONNECT_CONCURRENCY, connectNote, drive, until, wsUrl, type BenchEnv, type Kind, type RoomStatsView, type Sender } from "./common.ts";

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
