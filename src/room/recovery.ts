/**
 * Resume with missed-message recovery (SPEC section 10), for the room object:
 * the log (history.ts), the sessions that may come back (roster.ts), and what a
 * connection's `authed` says about them.
 *
 * - Which frames are logged: ext frames of a service with `recovery` on (its
 *   own setting, else the tenant's `recovery.enabled`), with their address.
 * - Sessions, not sid strings (v1.2): a connection with `resume` and the sid of
 *   a session the roster still knows (same user, connected or a ghost within
 *   `window_s`) continues that session: its session id (`cid`, so origin
 *   answers find it), its `last_seq`, where it started. Without `resume` a
 *   connection starts a new session, and an old one under the sid ends.
 * - `resume=<epoch>.<off>` replays, in the same synchronous turn as the socket
 *   is registered (so no live frame can come between), every logged frame
 *   addressed to the session after that offset and after the session began,
 *   or nothing and a reason.
 */
import type { Counters } from "../observability/metrics.ts";
import type { TenantPolicy } from "../policy/index.ts";
import type { ConnectRequest } from "./handoff.ts";
import { History, type Address, type ResumeRefusal } from "./history.ts";
import { Roster, type SessionRow } from "./roster.ts";

export interface Joined {
  /** The session id answers are routed by. */
  cid: string;
  /** The highest ACK_REQUESTED seq accepted from the session. */
  lastSeq: number;
  /** Fields `authed` adds. */
  fields: Record<string, unknown>;
  /** Sends the replayed frames: call right after `authed`, in the same turn. */
  replay: (send: (frame: string) => void) => void;
}

/** What a connection's sid means in the room before it is placed. */
export interface Prepared {
  /** Its own ghost's slot, kept for its resume. */
  mine?: number;
  /** Slots and users kept for the other ghosts (they keep their place in the room). */
  others: Set<number>;
  users: Set<string>;
  /** Its session comes back within its grace: no presence event, no `open`/`close` webhook. */
  unannounced: boolean;
  /** Another user's ghost holds the sid (only if the directory lost it): refuse. */
  taken: boolean;
  /** A ghost under the sid that this new session ends once it is placed (`end`): nothing changes for a refused upgrade. */
  ended?: SessionRow;
}

/** A ghost as the room announces it when its grace ends. */
export type Departed = { sid: string; user: string; slot: number; trace: string };

/** The room's alarm that announces ghosts whose grace ends. */
export const GHOSTS_ALARM = "ghosts";
type Alarms = { schedule(name: string, at: number): void; clear(name: string): void };

const NOTHING: Prepared = { others: new Set(), users: new Set(), unannounced: false, taken: false };

export class Recovery {
  readonly history: History;
  readonly roster: Roster;
  private readonly counters: Counters;
  private readonly alarms: Alarms;

  constructor(storage: DurableObjectStorage, counters: Counters, alarms: Alarms) {
    this.history = new History(storage);
    this.roster = new Roster(storage);
    this.counters = counters;
    this.alarms = alarms;
  }

  /** Whether `svc`'s frames are logged (a service's own setting, else the tenant's). */
  static on(t: TenantPolicy, svc: string): boolean {
    const service = t.serviceMap.get(svc);
    return service ? service.recovery : t.recovery.enabled;
  }

  /** Log `frame` for `to` when `svc` keeps a log; the text to send (with `off`), else the frame unchanged. */
  record(t: TenantPolicy, frame: string, to: Address, svc: string, now: number, owner?: string): string {
    if (!Recovery.on(t, svc)) return frame;
    this.counters.inc("wsprism_log_rows_written_total", { tenant: t.id });
    return this.history.record(frame, to, t.recovery, now, owner);
  }

  /**
   * Before a connection is placed: the ghosts' slots and places, its own ghost
   * (continued by a resume), or the ghost its new session ends.
   */
  prepare(t: TenantPolicy, req: ConnectRequest, now: number): Prepared {
    if (!t.recovery.enabled) return NOTHING;
    const windowStart = now - t.recovery.window_s * 1000;
    this.roster.prune(windowStart);
    const row = this.roster.get(req.sid);
    const ghost = row !== undefined && row.left_at !== null;
    if (ghost && row.user !== req.user) return { ...NOTHING, taken: true };
    const continuing = ghost && req.resume != null;
    const ended = ghost && !continuing ? row : undefined; // a new session under the sid: the old one ends when it is placed
    const others = new Set<number>();
    const users = new Set<string>();
    for (const g of this.roster.ghosts(windowStart)) {
      if (g.sid === req.sid) continue;
      others.add(g.slot);
      users.add(g.user);
    }
    return {
      ...(continuing ? { mine: row.slot } : {}),
      others,
      users,
      unannounced: continuing && row.announced === 0,
      taken: false,
      ...(ended ? { ended } : {}),
    };
  }

  /** The ghost a new session replaces ends (after `prepare`, once the connection is placed). */
  end(sid: string): void {
    this.roster.end(sid);
  }

  /**
   * A connection joined: its session (continued or new), what `authed` adds, and
   * the frames to replay. `kept`: the session kept its slot and presence (its old
   * socket was replaced, or it comes back within its grace).
   */
  join(t: TenantPolicy, req: ConnectRequest, slot: number, kept: boolean, now: number, pending: (cid: string) => number): Joined {
    const rec = t.recovery;
    const none = () => {};
    if (!rec.enabled) {
      const fields = req.resume ? { resumed: false, recovered: false, reason: "disabled" } : {};
      if (req.resume) this.counters.inc("wsprism_recovery_total", { tenant: t.id, result: "disabled" });
      return { cid: req.trace, lastSeq: 0, fields, replay: none };
    }
    const known = this.roster.get(req.sid);
    const same = known !== undefined && known.user === req.user && req.resume != null;
    const { epoch, off } = this.history.position();
    // last_seq: what was relayed or answered, and what still waits in the outbox (held in memory, a message
    // is lost with a reset instance: then it is not counted, and its resend is forwarded).
    const session = same ? { ...known, last_seq: Math.max(known.last_seq, pending(known.cid)) } : { cid: req.trace, last_seq: 0, start_off: off, since: now };
    this.roster.join({ sid: req.sid, user: req.user, slot, cid: session.cid, last_seq: session.last_seq, start_off: session.start_off, since: session.since });
    const fields: Record<string, unknown> = { epoch, off, last_seq: session.last_seq };
    const joined = { cid: session.cid, lastSeq: session.last_seq, fields };
    if (!req.resume) return { ...joined, replay: none };
    fields.resumed = same && kept;
    const refuse = (reason: ResumeRefusal): Joined => {
      this.counters.inc("wsprism_recovery_total", { tenant: t.id, result: reason });
      Object.assign(fields, { recovered: false, reason });
      return { ...joined, replay: none };
    };
    if (!same) return refuse(req.resume.epoch !== epoch || req.resume.off > off ? "epoch" : "too_old");
    const who = { sid: req.sid, user: req.user, cid: session.cid, start: session.start_off };
    const counted = this.history.replay(req.resume, who, rec.max_messages);
    if ("refused" in counted) return refuse(counted.refused);
    this.counters.inc("wsprism_recovery_total", { tenant: t.id, result: "recovered" });
    this.counters.inc("wsprism_recovery_frames_total", { tenant: t.id }, counted.count);
    Object.assign(fields, { recovered: true, count: counted.count });
    return { ...joined, replay: counted.stream };
  }

  /** An ACK_REQUESTED message of session `cid` was accepted for good (relayed and logged, or answered). */
  accepted(t: TenantPolicy | undefined, cid: string, seq: number): void {
    if (t?.recovery.enabled) this.roster.accepted(cid, seq);
  }

  /**
   * The session's socket went away. An abnormal disconnect (anything but a
   * client's 1000, v1.2: 4000-4999 from a client too) with recovery on leaves a
   * ghost for `window_s`; its departure is announced when `grace_s` ends
   * (returns "ghost"), or at once with no grace ("announce"). A deliberate leave
   * (1000, room:leave, kick, 4004, any close by the gateway) ends the session.
   */
  left(t: TenantPolicy, sid: string, code: number, byGateway: boolean, now: number): "ghost" | "announce" | "ended" {
    if (!t.recovery.enabled) return "ended";
    if (byGateway || code === 1000) {
      this.roster.end(sid);
      return "ended";
    }
    const announceNow = t.recovery.grace_s <= 0;
    this.roster.ghost(sid, now, announceNow);
    if (!announceNow) this.scheduleGhosts(t);
    return announceNow ? "announce" : "ghost";
  }

  /** Ghosts whose grace is over (the ghosts alarm fired): announce their departure now (presence `leave`, `close` webhooks). */
  ghostsDue(t: TenantPolicy, now: number): Departed[] {
    const due = this.roster.takeDueGhosts(now - t.recovery.grace_s * 1000).map(departed);
    this.scheduleGhosts(t);
    return due;
  }

  /** The alarm at the end of the next ghost's grace. */
  private scheduleGhosts(t: TenantPolicy): void {
    const at = this.nextGhostAt(t);
    if (at === null) this.alarms.clear(GHOSTS_ALARM);
    else this.alarms.schedule(GHOSTS_ALARM, at);
  }

  /** Ghosts still listed in presence, for the `sync` and the presence API. */
  listed(t: TenantPolicy): SessionRow[] {
    return t.recovery.enabled ? this.roster.unannounced() : [];
  }

  /** The room's sockets for the tenant's directory, plus the ghosts that may still come back (their sids stay theirs). */
  withGhosts<S extends { sid: string; user: string; trace: string; since: number }>(t: TenantPolicy | undefined, live: S[], now: number): Array<S | Pick<S, "sid" | "user" | "trace" | "since">> {
    if (!t?.recovery.enabled) return live;
    const listed = new Set(live.map((m) => m.sid));
    const ghosts = this.roster.ghosts(now - t.recovery.window_s * 1000).filter((g) => !listed.has(g.sid));
    return [...live, ...ghosts.map((g) => ({ sid: g.sid, user: g.user, trace: g.cid, since: g.since }))];
  }

  /** End the ghosts of a sid or of a user (a kick): their rows go, so nothing resumes them. */
  endGhosts(t: TenantPolicy, target: { sid: string } | { user: string }): SessionRow[] {
    if (!t.recovery.enabled) return [];
    const ended = this.roster.unconnected().filter((g) => ("sid" in target ? g.sid === target.sid : g.user === target.user));
    for (const g of ended) this.roster.end(g.sid);
    if (ended.length > 0) this.scheduleGhosts(t);
    return ended;
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
  reconcile(t: TenantPolicy | undefined, liveSids: () => ReadonlySet<string>, now: number): boolean {
    if (!t?.recovery.enabled) return false;
    let any = false;
    const live = liveSids();
    for (const r of this.roster.connected()) {
      if (live.has(r.sid)) continue;
      this.roster.ghost(r.sid, now, t.recovery.grace_s <= 0);
      any = true;
    }
    if (any) this.scheduleGhosts(t);
    return any;
  }
}

export const departed = (r: SessionRow): Departed => ({ sid: r.sid, user: r.user, slot: r.slot, trace: r.cid });
