/**
 * What the room tells others when a session arrives or departs: presence
 * `join`/`leave` to the members, `open`/`close` events to the origin services
 * that subscribe to them. With recovery (SPEC section 10), a ghost's departure
 * is announced only when its grace ends, and a session that comes back within
 * its grace is not announced at all.
 */
import { log } from "../observability/log.ts";
import type { Counters } from "../observability/metrics.ts";
import type { OriginBridge } from "../origin/bridge.ts";
import type { TenantPolicy } from "../policy/index.ts";
import { sysFrame } from "../protocol/envelope.ts";
import { lifecycleEvents } from "./lifecycle.ts";
import { safeSend, type Attachment, type Members } from "./members.ts";

/** The part of a session an announcement names. */
export type Who = Pick<Attachment, "user" | "sid" | "slot" | "trace" | "room">;

export class Announcer {
  private readonly members: Members;
  private readonly bridge: OriginBridge;
  private readonly counters: Counters;

  constructor(members: Members, bridge: OriginBridge, counters: Counters) {
    this.members = members;
    this.bridge = bridge;
    this.counters = counters;
  }

  /** Presence `join` to the others (not `except`), then `open` events. */
  arrived(t: TenantPolicy, who: Who, except: WebSocket): void {
    if (t.presence) this.broadcast(sysFrame("presence", { event: "join", user: who.user, sid: who.sid, slot: who.slot }), except);
    this.lifecycle("open", who, t);
  }

  /** Presence `leave` to the others, then `close` events. */
  departed(t: TenantPolicy, who: Who, except: WebSocket | null): void {
    if (t.presence) this.broadcast(sysFrame("presence", { event: "leave", user: who.user, sid: who.sid, slot: who.slot }), except);
    this.lifecycle("close", who, t);
  }

  private broadcast(frame: string, except: WebSocket | null): void {
    for (const [ws] of this.members.all()) if (ws !== except) safeSend(ws, frame);
  }

  /** `open`/`close` events for the origin services that subscribe to them. */
  private lifecycle(kind: "open" | "close", who: Who, t: TenantPolicy): void {
    for (const { svc, service, event } of lifecycleEvents(kind, who, t)) {
      if (this.bridge.enqueue(svc, service, event, false) !== "ok") {
        this.counters.inc("wsprism_origin_dead_letters_total", { tenant: t.id, svc });
        log("error", "origin.outbox_full", { trace_id: who.trace, tenant: t.id, room: who.room, sid: who.sid, svc, kind });
      }
    }
  }
}
