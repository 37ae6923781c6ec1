/**
 * The idle part: three connection sets (gateway, gateway with 8 sessions per
 * user, baseline) opened one after the other and held together while they ping.
 */
import { closeAll } from "../../lib/clients.ts";
import { idleConnect, idleHold, type IdleSet, type IdleVariant } from "../../scenarios/idle.ts";
import type { Ctx } from "../context.ts";
import { row, say, textRow, verdicts } from "../report.ts";

// Idle connections. The sets are opened one after the other and all held
// open together, so each RSS delta is that set's own.
export async function runIdle(ctx: Ctx): Promise<void> {
  const { env, profile, results } = ctx;
  const c = profile.idle;
  const g: IdleVariant = { kind: "gateway", tag: "g", label: "gateway", sessionsPerUser: 1 };
  const gs: IdleVariant = { kind: "gateway", tag: "s", label: "gateway, 8 sessions per user", sessionsPerUser: 8 };
  const b: IdleVariant = { kind: "baseline", tag: "b", label: "baseline", sessionsPerUser: 1 };
  const sets: IdleSet[] = [];
  for (const v of ctx.order()[0] === "gateway" ? [g, gs, b] : [b, g, gs]) {
    say(`idle: ${c.conns} connections, ${v.label}`);
    sets.push(await idleConnect(env, v, c));
  }
  say(`idle: every connection pings every ${c.pingEveryMs} ms for ${c.holdMs} ms`);
  await idleHold(env, sets, c, (kind, room) => (kind === "gateway" ? ctx.gatewayStats(room) : ctx.peerStats(room, "baseline")));
  for (const set of sets) await closeAll(set.conns, 5_000);
  const res = sets.map((x) => x.result);
  results.idle = res;
  const rg = sets.find((x) => x.variant === g)!.result;
  const rs = sets.find((x) => x.variant === gs)!.result;
  const rb = sets.find((x) => x.variant === b)!.result;
  const sc = `idle ${c.conns} conns`;
  row(sc, "connected", rg.connected, rb.connected, 0, false);
  row(sc, "workerd RSS growth per conn (KiB)", rg.kibPerConn, rb.kibPerConn, 1);
  row(sc, "  same, 8 sessions per user (KiB)", rs.kibPerConn, rb.kibPerConn, 1);
  row(sc, "pings sent", rg.pings + rs.pings, rb.pings, 0, false);
  row(sc, "pongs received", rg.pongs + rs.pongs, rb.pongs, 0, false);
  row(sc, "webSocketMessage calls in the rooms", (rg.roomMessages ?? NaN) + (rs.roomMessages ?? NaN), rb.roomMessages, 0, false);
  row(sc, "rooms", rg.rooms + rs.rooms, rb.rooms, 0, false);
  row(sc, "room wakes while idle (constructions after the first)", (rg.roomWakesWhileIdle ?? NaN) + (rs.roomWakesWhileIdle ?? NaN), rb.roomWakesWhileIdle, 0, false);
  row(sc, "alarm() runs in the rooms", (rg.roomAlarms ?? NaN) + (rs.roomAlarms ?? NaN), undefined, 0, false);
  for (const r of res) if (r.note) textRow(sc, `${r.label}: note`, r.note);
  const msgs = (rg.roomMessages ?? NaN) + (rs.roomMessages ?? NaN);
  verdicts.push({
    target: "idle: heartbeats do not wake the room (webSocketMessage stays 0 while every ping gets its pong)",
    value: `${Number.isNaN(msgs) ? "?" : msgs} calls, ${rg.pongs + rs.pongs}/${rg.pings + rs.pings} pongs`,
    met: msgs === 0 && rg.pings > 0 && rg.pongs === rg.pings && rs.pongs === rs.pings && rg.connected === c.conns,
  });
}
