/**
 * Resume with missed-message recovery (SPEC section 10), for the room object:
 * the log (history.ts), the sessions that may come back (roster.ts), and what a
 * connection's `authed` says about them.
 *
 * - Which frames are logged: ext frames of a service with `recovery` on (its
 *   own setting, else the tenant's `recovery.enabled`), with their address.
 * - A connection with the sid of a session the roster still knows (same user,
 *   connected or left within `window_s`) continues that session: it keeps its
 *   session id (`cid`, so origin answers find it) and its `last_seq`.
 * - `resume=<epoch>.<off>` replays, in the same synchronous turn as the socket
 *   is registered (so no live frame can come between), every logged frame
 *   addressed to the session after that offset, or nothing and a reason.
 */
import type { Counters } from "../observability/metrics.ts";
import type { TenantPolicy } from "../policy/index.ts";
import type { ConnectRequest } from "./handoff.ts";
import { History, type Address } from "./history.ts";
import { Roster } from "./roster.ts";

export interface Joined {
  /** The session id answers are routed by. */
  cid: string;
  /** The highest ACK_REQUESTED seq accepted from the session. */
  lastSeq: number;
  /** Fields `authed` adds. */
  fields: Record<string, unknown>;
  /** Replayed frames, to send right after `authed`. */
  frames: string[];
}

export class Recovery {
  readonly history: History;
  readonly roster: Roster;
  private readonly counters: Counters;

  constructor(storage: DurableObjectStorage, counters: Counters) {
    this.history = new History(storage);
    this.roster = new Roster(storage);
    this.counters = counters;
  }

  /** Whether `svc`'s frames are logged (a service's own setting, else the tenant's). */
  static on(t: TenantPolicy, svc: string): boolean {
    const service = t.serviceMap.get(svc);
    return service ? service.recovery : t.recovery.enabled;
  }

  /** Log `frame` for `to` when `svc` keeps a log; the text to send (with `off`), else the frame unchanged. */
  record(t: TenantPolicy, frame: string, to: Address, svc: string, now: number): string {
    if (!Recovery.on(t, svc)) return frame;
    this.counters.inc("wsprism_log_rows_written_total", { tenant: t.id });
    return this.history.record(frame, to, t.recovery, now);
  }

  /**
   * A connection joined: its session (continued or new), what `authed` adds, and
   * the frames to replay. `kept`: the session kept its slot and presence (its old
   * socket was replaced, or it comes back within its grace).
   */
  join(t: TenantPolicy, req: ConnectRequest, slot: number, kept: boolean, now: number): Joined {
    const rec = t.recovery;
    if (!rec.enabled) {
      const fields = req.resume ? { resumed: false, recovered: false, reason: "disabled" } : {};
      if (req.resume) this.counters.inc("wsprism_recovery_total", { tenant: t.id, result: "disabled" });
      return { cid: req.trace, lastSeq: 0, fields, frames: [] };
    }
    const windowStart = now - rec.window_s * 1000;
    this.roster.prune(windowStart);
    const known = this.roster.get(req.sid);
    const same = known !== undefined && known.user === req.user;
    const cid = same ? known.cid : req.trace;
    const lastSeq = same ? known.last_seq : 0;
    this.roster.join({ sid: req.sid, user: req.user, cid, slot, last_seq: lastSeq });
    const { epoch, off } = this.history.position();
    const fields: Record<string, unknown> = { epoch, off, last_seq: lastSeq };
    if (!req.resume) return { cid, lastSeq, fields, frames: [] };
    fields.resumed = same && kept;
    const r = same ? this.history.replay(req.resume, { sid: req.sid, user: req.user }, rec.max_messages) : { refused: "too_old" as const };
    if ("refused" in r) {
      this.counters.inc("wsprism_recovery_total", { tenant: t.id, result: r.refused });
      return { cid, lastSeq, fields: { ...fields, recovered: false, reason: r.refused }, frames: [] };
    }
    this.counters.inc("wsprism_recovery_total", { tenant: t.id, result: "recovered" });
    this.counters.inc("wsprism_recovery_frames_total", { tenant: t.id }, r.frames.length);
    return { cid, lastSeq, fields: { ...fields, recovered: true, count: r.frames.length }, frames: r.frames };
  }

  /** An ACK_REQUESTED message was accepted from this session. */
  accepted(sid: string, seq: number): void {
    this.roster.accepted(sid, seq);
  }

  /**
   * Slots to keep for sessions that may come back: this sid's own (a ghost or a
   * session that left within the window, same user) and everyone else's. Also
   * whether this sid's departure is still unannounced (a resume within `grace_s`:
   * no presence event, no `open`/`close` webhook).
   */
  reservations(t: TenantPolicy, sid: string, user: string, now: number): { mine?: number; others: Set<number>; unannounced: boolean } {
    if (!t.recovery.enabled) return { others: new Set(), unannounced: false };
    const windowStart = now - t.recovery.window_s * 1000;
    const others = this.roster.reservedSlots(windowStart);
    const row = this.roster.get(sid);
    const mine = row && row.user === user && row.left_at !== null && row.left_at > windowStart ? row : undefined;
    if (mine) others.delete(mine.slot);
    return { ...(mine ? { mine: mine.slot } : {}), others, unannounced: mine !== undefined && mine.announced === 0 };
  }

  /**
   * The session's socket went away. An abnormal disconnect (1001, 1006, 1011, or
   * a socket error) with recovery on leaves a ghost: returns true, and the caller
   * holds back the presence `leave` and the `close` webhooks until `ghostsDue`.
   * A deliberate leave (1000, room:leave, kick, 4004, any close by the gateway)
   * ends the session at once.
   */
  left(t: TenantPolicy, sid: string, code: number, byGateway: boolean, now: number): boolean {
    if (!t.recovery.enabled) return false;
    const ghost = !byGateway && (code === 1001 || code === 1006 || code === 1011) && t.recovery.grace_s > 0;
    this.roster.left(sid, now, ghost);
    return ghost;
  }

  /** Ghosts whose grace is over: announce their departure now (presence `leave`, `close` webhooks). */
  ghostsDue(t: TenantPolicy, now: number): Array<{ sid: string; user: string; slot: number; trace: string }> {
    return this.roster.takeDueGhosts(now - t.recovery.grace_s * 1000).map((r) => ({ sid: r.sid, user: r.user, slot: r.slot, trace: r.cid }));
  }

  /** When the next ghost's grace ends (null: none). */
  nextGhostAt(t: TenantPolicy): number | null {
    const at = t.recovery.enabled ? this.roster.nextGhost() : null;
    return at === null ? null : at + t.recovery.grace_s * 1000;
  }

  /**
   * After a replaced instance (a deploy, a crash) the sockets are gone but the
   * roster still says connected: those sessions become ghosts, as if they had
   * dropped when the instance went away.
   */
  reconcile(t: TenantPolicy, liveSids: ReadonlySet<string>, now: number): boolean {
    if (!t.recovery.enabled) return false;
    let any = false;
    for (const r of this.roster.connected()) {
      if (liveSids.has(r.sid)) continue;
      this.roster.left(r.sid, now, t.recovery.grace_s > 0);
      any = true;
    }
    return any;
  }
}
