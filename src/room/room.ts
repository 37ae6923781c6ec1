/**
 * One Durable Object per (tenant, room): `idFromName("<tenant>/<room>")`. Sockets
 * are held through the hibernatable WebSocket API (an idle room costs nothing;
 * `ping` is answered by the runtime). Frames go through the inbound pipeline
 * (inbound.ts) and `apply`; no handler lets an exception escape.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";
import { configureLogs, log } from "../observability/log.ts";
import { Counters } from "../observability/metrics.ts";
import { METRICS_ALARM, RoomMetrics } from "../observability/aggregator.ts";
import { dueStreams, OriginBridge, type RoomMeta, type Settled } from "../origin/bridge.ts";
import { getTenant, type TenantPolicy } from "../policy/index.ts";
import { CLOSE, type ErrorCode } from "../protocol/codes.ts";
import { errorFrame, sysFrame } from "../protocol/envelope.ts";
import { jsonError } from "../protocol/http.ts";
import { releaseGhost, releaseSession, renewSessions } from "../governance/sessions.ts";
import { AlarmMux } from "./alarms.ts";
import { settle } from "./answers.ts";
import { HOUSEKEEPING_ALARM, runHousekeeping, scheduleFor } from "./housekeeping.ts";
import { StateTable } from "./state.ts";
import { deliverMessage, kick, presence, presenceSync, relayFromOrigin, type OutboundMessage, type PresenceEntry, type Target } from "./deliver.ts";
import { Coalescer } from "./coalesce.ts";
import { originVerdict } from "./ext.ts";
import { stateVerdict } from "./hot.ts";
import { checkRefresh } from "./lifecycle.ts";
import { inbound } from "./inbound.ts";
import type { Address } from "./history.ts";
import { departed, GHOSTS_ALARM, Recovery } from "./recovery.ts";
import { Announcer } from "./announce.ts";
import { Arrivals } from "./arrival.ts";
import { closeAnswer, Members, safeClose, safeSend, type Attachment } from "./members.ts";
import { RateStore } from "./ratelimit.ts";
import type { Session, Verdict } from "./verdict.ts";
import { attachmentFor, CONNECT_HEADER, RoomMetaStore, type ConnectRequest } from "./handoff.ts";

const RETRY_AFTER_FULL_S = 5;

export class RoomObject extends DurableObject<Env> {
  readonly members: Members;
  readonly counters = new Counters();
  readonly alarms: AlarmMux;
  readonly metrics: RoomMetrics;
  readonly bridge: OriginBridge;
  readonly state: StateTable;
  readonly recovery: Recovery;
  private readonly announce: Announcer;
  readonly arrivals: Arrivals;
  private readonly rates: RateStore;
  /** Batches coalesced relays while the room is busy (hot `relay` with `coalesce: true`). */
  readonly coalescer: Coalescer;
  private readonly roomMeta = new RoomMetaStore(this.ctx);

  /** With recovery: the log's position, for `sys.joined` (one function per instance, not one per frame). */
  private readonly position = () => (getTenant(this.meta()?.tenant ?? "")?.recovery.enabled ? this.recovery.history.position() : undefined);

  /** Instances constructed in this isolate (each wake constructs one): lets tests prove heartbeats wake nothing. */
  static constructed = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    configureLogs(env.WSPRISM_LOG_LEVEL);
    RoomObject.constructed++;
    this.members = new Members(ctx);
    this.alarms = new AlarmMux(ctx.storage);
    const gauges = (): Array<[string, number]> => (this.meta() ? [[this.meta()!.tenant, this.members.size()]] : []);
    this.metrics = new RoomMetrics(ctx, env, this.counters, gauges, { alarms: this.alarms });
    const [meta, keepAlive] = [() => this.meta(), (p: Promise<unknown>) => ctx.waitUntil(p)];
    const onSettled = (s: Settled) => settle(this, s);
    this.bridge = new OriginBridge({ storage: ctx.storage, env, meta, counters: this.counters, deadlines: this.alarms, keepAlive, onSettled });
    this.coalescer = new Coalescer(this.counters);
    this.recovery = new Recovery(ctx.storage, this.counters, this.alarms);
    this.announce = new Announcer(this.members, this.bridge, this.counters);
    this.rates = new RateStore(ctx.storage, this.members);
    this.state = new StateTable(ctx.storage, (err) => this.failed("state.save_failed", undefined, err));
    this.arrivals = new Arrivals(ctx, this.members, this.announce); // sets the runtime's answer to `ping`
    // After a replaced instance: sessions whose sockets vanished with it become ghosts (SPEC section 10).
    const live = () => new Set([...this.members.all().values()].map((a) => a.sid));
    this.guard("room.reconcile_failed", () => void this.recovery.reconcile(getTenant(this.meta()?.tenant ?? ""), live, Date.now()));
  }

  /** The object's state, for helpers that take the room as their host. */
  get roomState(): DurableObjectState { return this.ctx; } // prettier-ignore

  /** Health probe for /readyz. */
  async ping(): Promise<string> { return "pong"; } // prettier-ignore

  // --- RPC for the origin-facing HTTP API (inputs validated by the Worker) ---

  async apiMessage(room: string, msg: OutboundMessage): Promise<{ delivered: number }> {
    return { delivered: deliverMessage(this, room, msg) };
  }

  /** Relay a hot frame to every member, with sender slot 0 (the origin). */
  async apiFrame(frame: ArrayBuffer): Promise<{ ok: true; delivered: number } | { ok: false; code: ErrorCode; msg: string }> {
    return relayFromOrigin(this.members, frame);
  }

  async apiPresence(): Promise<{ members: PresenceEntry[] }> {
    const t = getTenant(this.meta()?.tenant ?? "");
    return { members: presence(this, t ? this.recovery.listed(t) : []) };
  }

  /** Kicks end sessions: connected ones (4003) and ghosts alike (no resume after a kick). */
  async apiKick(target: Target, reason: string): Promise<{ kicked: number }> {
    return { kicked: kick(this, target, reason) + this.endGhosts(target) };
  }

  /** Ghosts matching `target` end now: nothing can resume them; a departure still due is announced. */
  endGhosts(target: Target): number {
    const t = getTenant(this.meta()?.tenant ?? "");
    const ended = t ? this.recovery.endGhosts(t, target) : [];
    for (const g of ended) {
      if (g.announced === 0) this.announce.departed(t!, { ...departed(g), room: this.meta()!.room }, null);
      this.ctx.waitUntil(releaseGhost(this.env, t!.id, this.meta()!.room, g.sid, g.user));
    }
    return ended.length;
  }

  /** `kick_oldest` (close 4004): only the named user's socket (or ghost), never one another user now holds under that sid. */
  async replaceSession(sid: string, user: string): Promise<boolean> {
    const found = this.members.bySid(sid);
    if (!found || found[1].user !== user) return this.endGhosts({ sid }) > 0;
    safeSend(found[0], sysFrame("kicked", { reason: "session replaced" }));
    this.closeMember(found[0], CLOSE.SESSION_REPLACED, "session replaced", false);
    return true;
  }

  override async fetch(request: Request): Promise<Response> {
    try {
      const raw = request.headers.get(CONNECT_HEADER);
      if (!raw || request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
        return jsonError(400, "BAD_REQUEST", "room objects only accept upgrades from the gateway");
      }
      return this.accept(JSON.parse(raw) as ConnectRequest);
    } catch (err) {
      log("error", "room.connect_failed", { trace_id: "-", error: String(err) });
      return jsonError(500, "INTERNAL", "internal error");
    }
  }

  private accept(req: ConnectRequest): Response {
    const t = getTenant(req.tenant);
    if (!t) return jsonError(400, "UNKNOWN_TENANT", "unknown tenant");

    const now = Date.now();
    const kept = this.recovery.prepare(t, req, now);
    if (kept.taken) return jsonError(400, "BAD_REQUEST", "sid is held by another user");
    const place = this.members.place(req.sid, req.user, t.limits.max_users_per_room, kept);
    if (!place.ok) {
      if (place.code === "RESOURCE_EXHAUSTED") {
        this.counters.inc("wsprism_handshake_rejections_total", { tenant: t.id, reason: "room_full" });
        return jsonError(503, "RESOURCE_EXHAUSTED", "room is full", RETRY_AFTER_FULL_S);
      }
      return jsonError(400, "BAD_REQUEST", "sid is in use by another session in this room");
    }
    const slot = place.slot;
    // A new session under a ghost's sid ends the ghost: its departure (if still due) first, then the arrival.
    if (kept.ended) this.recovery.end(req.sid);
    if (kept.ended?.announced === 0) this.announce.departed(t, { ...departed(kept.ended), room: req.room }, null);
    // With recovery, a resume that replaces its session's socket continues the session: no presence flap.
    const continued = t.recovery.enabled && place.replaces !== undefined && req.resume != null;
    // Announced at its first frame (arrival.ts): a new session, or one whose first socket had not arrived yet.
    const announce = (!kept.unannounced && !continued) || (continued && this.members.get(place.replaces!)?.wait === "join");
    if (place.replaces) {
      safeSend(place.replaces, sysFrame("kicked", { reason: "session replaced" }));
      // The new connection keeps the sid's place in the directories: do not release it.
      this.closeMember(place.replaces, CLOSE.SESSION_REPLACED, "session replaced", false, continued);
    }

    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    // The session (continued or new) and what it missed: replayed right after authed, in this same turn.
    const joined = this.recovery.join(t, req, slot, place.replaces !== undefined || kept.unannounced, now, (cid) => this.bridge.outbox.highestSeq(cid));
    const att = attachmentFor(req, slot, this.rates.resumed(t, req.sid, req.user, now), now);
    if (t.recovery.enabled) Object.assign(att, { cid: joined.cid, ls: joined.lastSeq });
    this.roomMeta.remember(t.id, req.room);
    this.ctx.acceptWebSocket(server); // no tags: the room finds sockets by its own index (members.ts)
    this.arrivals.add(server, att, announce); // a member that waits for its first frame
    void this.metrics.sessionsChanged();
    const authed = { tenant: t.id, user: req.user, sid: req.sid, room: req.room, slot, exp: req.exp, ...joined.fields };
    safeSend(server, sysFrame("authed", authed, req.trace));
    joined.replay((f) => safeSend(server, f));
    // The newcomer learns who is already there; the others learn of it at its first frame (arrival.ts).
    if (t.presence) safeSend(server, sysFrame("presence", presenceSync(this, server, this.recovery.listed(t))));
    this.state.joined(server, t, () => this.members.all());
    scheduleFor(this, server, att, now);
    this.counters.inc("wsprism_ws_upgrades_total", { tenant: t.id, status: "101" });
    // Debug, not info: one line per upgrade is a measurable cost in a connection storm; ws.close has it all.
    log("debug", "ws.open", { trace_id: req.trace, tenant: t.id, room: req.room, sid: req.sid, user: req.user, slot });

    const headers = new Headers();
    if (req.protocol) headers.set("Sec-WebSocket-Protocol", "wsprism.v1");
    return new Response(null, { status: 101, webSocket: client, headers });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const att = this.members.get(ws);
    if (!att) return; // closed by the gateway already; late frames are ignored
    const s: Session = { ws, att, position: this.position };
    try {
      const t = getTenant(att.tenant);
      if (!t) {
        this.closeMember(ws, CLOSE.POLICY, "tenant no longer configured");
        return;
      }
      const now = Date.now();
      if (this.arrivals.frame(ws, att, message, now)) return; // its first frame announces it; a `ping` is answered
      const shared = t.policy.rate_limit_scope === "tenant";
      const verdict = inbound(s, t, message, shared ? this.rates.shared(t, now) : att.rl, now);
      this.rates.save(s, shared, now);
      await this.apply(s, t, verdict);
    } catch (err) {
      this.counters.inc("wsprism_internal_errors_total", { tenant: att.tenant });
      log("error", "ws.handler_failed", { trace_id: att.trace, tenant: att.tenant, room: att.room, sid: att.sid, error: String(err) });
      this.sendError(ws, att, "INTERNAL", "internal error");
    }
  }

  /** The one place a verdict becomes sends, counters and closes (src/room/verdict.ts). */
  private apply(s: Session, t: TenantPolicy, v: Verdict): void | Promise<void> {
    if (v.count) this.counters.inc(v.count.name, v.count.labels);
    if (v.decision) this.counters.inc("wsprism_policy_decisions_total", { tenant: t.id, ...v.decision });
    const e = v.effect;
    switch (e.kind) {
      case "none":
        return;
      case "reply":
        for (const f of e.frames) safeSend(s.ws, f);
        return;
      case "relay": {
        const log = e.log !== undefined && typeof e.frame === "string" ? e.log : undefined;
        const cid = s.att.cid ?? s.att.trace;
        const frame = log ? this.record(e.frame as string, { room: true, except: [s.att.sid] }, log, cid) : e.frame;
        if (e.coalesce && frame instanceof Uint8Array) this.coalescer.relay(frame, s.ws, this.members.all(), t.id);
        else for (const [other] of this.members.all()) if (other !== s.ws) safeSend(other, frame);
        for (const f of e.then) safeSend(s.ws, log && typeof f === "string" ? this.record(f, { cid }, log, cid) : f);
        if (e.accepted !== undefined) this.accepted(s, t, e.accepted, true);
        return;
      }
      case "close":
        for (const f of e.frames) safeSend(s.ws, f);
        this.closeMember(s.ws, e.code, e.reason);
        return;
      case "state":
        return this.apply(s, t, stateVerdict(s, t, this.state.update(e.frame, s.att.slot, t, () => this.members.all(), s.att.user), e.seq));
      case "origin": {
        const pushed = this.bridge.enqueue(e.svc, e.service, e.event, e.ack, s.att.cid ?? s.att.trace);
        if (pushed === "ok" && e.ack) this.accepted(s, t, e.event.seq!, false);
        return this.apply(s, t, originVerdict(s, pushed, e.event.seq));
      }
      case "refresh":
        return this.refresh(s, t, e.ticket, e.seq, e.ack);
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string, _wasClean: boolean): Promise<void> {
    this.guard("ws.close_failed", () => this.leave(ws, code, reason, "client"));
    // Complete the closing handshake, unless the connection is already gone.
    const answer = closeAnswer(code);
    if (answer !== null) safeClose(ws, answer, "");
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    this.guard("ws.error_failed", () => this.leave(ws, 1006, String(error), "error"));
  }

  /** Run cleanup work so that nothing escapes to the runtime; failures are logged and counted. */
  private guard(event: string, fn: () => void, att?: Attachment): void {
    try {
      fn();
    } catch (err) {
      this.failed(event, att, err);
    }
  }

  private failed(event: string, att: Attachment | undefined, err: unknown): void {
    this.counters.inc("wsprism_internal_errors_total", att ? { tenant: att.tenant } : {});
    const where = att ? { tenant: att.tenant, room: att.room, sid: att.sid } : {};
    log("error", event, { trace_id: att?.trace ?? "-", ...where, error: String(err) });
  }

  override async alarm(): Promise<void> {
    this.alarms.fired();
    try {
      const due = this.alarms.takeDue(Date.now());
      if (due.includes(HOUSEKEEPING_ALARM)) await runHousekeeping(this);
      if (due.includes(GHOSTS_ALARM)) this.announceGhosts();
      const streams = dueStreams(due);
      if (streams) await this.bridge.run(streams);
      if (due.includes(METRICS_ALARM)) await this.metrics.flush();
    } catch (err) {
      this.counters.inc("wsprism_internal_errors_total", {});
      log("error", "room.alarm_failed", { trace_id: "-", error: String(err) });
    } finally {
      this.alarms.arm();
    }
  }

  async renew(members: Array<Pick<Attachment, "sid" | "user" | "trace" | "since">>): Promise<void> {
    const meta = this.meta();
    try {
      // Ghosts keep their sids (SPEC section 10); a sid the directory gives to another user (only after lost leases) loses here.
      const listed = meta ? this.recovery.withGhosts(getTenant(meta.tenant), members, Date.now()) : [];
      const refused = new Set(meta ? await renewSessions(this.env, meta.tenant, meta.room, listed) : []);
      for (const [ws, att] of [...this.members.all()]) if (refused.has(att.sid)) this.closeMember(ws, CLOSE.POLICY, "sid held by another user", false);
    } catch (err) {
      log("warn", "room.renew_failed", { trace_id: "-", tenant: meta?.tenant, room: meta?.room, error: String(err) });
    }
    await this.metrics.touchGauge();
  }

  /** `sys:refresh`: a fresh ticket for the same user moves the session's expiry. */
  async refresh(s: Session, t: TenantPolicy, ticket: unknown, seq: number | undefined, ack: boolean): Promise<void> {
    const checked = await checkRefresh(s, t, ticket, seq, ack, this.env);
    const current = this.members.get(s.ws);
    if (!current) return; // closed meanwhile
    if ("exp" in checked) {
      current.exp = checked.exp;
      this.members.save(s.ws, current);
      scheduleFor(this, s.ws, current);
    }
    return this.apply({ ws: s.ws, att: current }, t, checked.verdict);
  }

  /** Tenant and room: from the object's name (`<tenant>/<room>`) where the runtime gives it, else from storage. */
  meta(): RoomMeta | undefined {
    return this.roomMeta.get();
  }

  sendError(ws: WebSocket, att: Attachment, code: ErrorCode, msg: string, seq?: number): void {
    safeSend(ws, errorFrame(code, msg, seq, att.trace));
  }

  /**
   * With recovery: an ACK_REQUESTED seq was accepted from this session. The connection
   * drops its duplicates at once; the session's `last_seq` moves when it is `done` (relayed
   * and logged) or when the origin answers (`answered`), never for an event a reset could lose.
   */
  private accepted(s: Session, t: TenantPolicy, seq: number, done: boolean): void {
    if (s.att.ls === undefined || seq <= s.att.ls) return;
    s.att.ls = seq;
    if (done) this.recovery.accepted(t, s.att.cid ?? s.att.trace, seq);
    this.members.save(s.ws, s.att);
  }

  answered(cid: string, seq: number): void {
    this.recovery.accepted(getTenant(this.meta()?.tenant ?? ""), cid, seq);
  }

  record(frame: string, to: Address, svc: string, owner?: string): string {
    const t = getTenant(this.meta()?.tenant ?? "");
    return t ? this.recovery.record(t, frame, to, svc, Date.now(), owner) : frame;
  }

  /** Never throws, and the socket is closed whatever its cleanup does. */
  closeMember(ws: WebSocket, code: number, reason: string, release = true, continued = false): void {
    try {
      this.guard("ws.close_failed", () => this.leave(ws, code, reason, continued ? "continued" : "gateway", release));
    } finally {
      safeClose(ws, code, reason);
    }
  }

  holdsGhosts(): boolean { return this.recovery.withGhosts(getTenant(this.meta()?.tenant ?? ""), [], Date.now()).length > 0; } // prettier-ignore

  /**
   * Remove a member once, announce presence, log. Idempotent. Each cleanup step is guarded
   * on its own (a failure is counted and logged; the others still run). `by: "continued"`:
   * a resume of the same session took over (nothing ends, nothing is announced).
   */
  private leave(ws: WebSocket, code: number, reason: string, by: "client" | "gateway" | "error" | "continued", release = true): void {
    const att = this.members.remove(ws);
    if (!att) return;
    const step = (event: string, fn: () => void) => this.guard(event, fn, att);
    step("ws.leave_arrival_failed", () => this.arrivals.left(ws));
    const arrived = att.wait !== "join"; // else nothing about it was announced: nothing is now, and it leaves no ghost
    const t = getTenant(att.tenant);
    // A ghost (an abnormal drop with recovery on) keeps its session and its sid; its departure is announced when its grace ends.
    let kept = "ended" as "ghost" | "announce" | "ended";
    if (t && by !== "continued" && !this.members.bySid(att.sid)) {
      step("ws.leave_recovery_failed", () => (kept = this.recovery.left(t, att.sid, code, by === "gateway" || !arrived, Date.now())));
    }
    if (t) step("ws.leave_rate_failed", () => this.rates.left(t, att, Date.now()));
    step("ws.leave_metrics_failed", () => this.ctx.waitUntil(this.metrics.sessionsChanged()));
    if (release && kept === "ended") step("ws.leave_release_failed", () => this.ctx.waitUntil(releaseSession(this.env, att)));
    if (t && arrived && kept !== "ghost" && by !== "continued") step("ws.leave_announce_failed", () => this.announce.departed(t, att, ws));
    step("ws.leave_state_failed", () => this.state.left(ws, att.slot));
    const { trace: trace_id, tenant, room, sid, user } = att;
    log("info", "ws.close", { trace_id, tenant, room, sid, user, code, reason: reason.slice(0, 120), by, duration_ms: Date.now() - att.since });
  }

  /** The ghosts alarm: announce the departures whose grace ended (SPEC section 10). */
  private announceGhosts(): void {
    const t = getTenant(this.meta()?.tenant ?? "");
    if (t) for (const g of this.recovery.ghostsDue(t, Date.now())) this.announce.departed(t, { ...g, room: this.meta()!.room }, null);
  }
}
