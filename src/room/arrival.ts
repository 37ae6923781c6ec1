/**
 * Arrival (SPEC v1.2 section 2). A client sends `ping` as soon as its socket
 * opens; a socket that sends no frame within ARRIVAL_MS of `authed` is a
 * connection that never arrived (its client reset the upgrade, or is gone): it
 * is closed 4002 and its session ends as if it had never been.
 *
 * The room holds a new session's announcement (presence `join` to the others,
 * `open` events to the origins) until its first sign of life: a frame, or its
 * `ping`. Until then it is in no presence view (sync, presence API), and when
 * it goes away nothing is announced either (no `leave`, no `close`, no ghost).
 * A connection that continues an announced session (a resume, SPEC section 10)
 * has nothing to announce, but must show life within ARRIVAL_MS too.
 *
 * `ping` is answered by the runtime's auto-response without waking the room,
 * and the room cannot tell which socket sent one until its next wake. So while
 * any socket waits for its first frame the auto-response is off and the room
 * answers `pong` itself: a waiting socket's ping reaches the room at once, and
 * a ping from anyone else costs a wake, no more. With no socket waiting (nearly
 * always: a client pings within a round trip of `authed`) the runtime answers.
 */
import { getTenant } from "../policy/index.ts";
import type { Announcer } from "./announce.ts";
import { safeSend, type Attachment, type Members } from "./members.ts";

/** A socket that sends no frame within this long of `authed` never arrived. */
export const ARRIVAL_MS = 10_000;

/** When housekeeping must look at a member for its arrival (Infinity: it arrived). */
export function arrivalDue(att: Attachment): number {
  return att.wait ? att.since + ARRIVAL_MS : Infinity;
}

export class Arrivals {
  private readonly ctx: DurableObjectState;
  private readonly members: Members;
  private readonly announce: Pick<Announcer, "arrived">;
  /** Members waiting for their first frame (rebuilt from the attachments after a wake). */
  private waitingSet: Set<WebSocket> | null = null;
  /** Whether the runtime answers `ping` (undefined: not set by this instance yet). */
  private auto: boolean | undefined;

  constructor(ctx: DurableObjectState, members: Members, announce: Pick<Announcer, "arrived">) {
    this.ctx = ctx;
    this.members = members;
    this.announce = announce;
    this.autoRespond();
  }

  private waiting(): Set<WebSocket> {
    if (!this.waitingSet) {
      this.waitingSet = new Set();
      for (const [ws, att] of this.members.all()) if (att.wait) this.waitingSet.add(ws);
    }
    return this.waitingSet;
  }

  /** The runtime answers `ping` itself only while no socket waits for its first frame. */
  autoRespond(): void {
    const on = this.waiting().size === 0;
    if (on === this.auto) return;
    this.auto = on;
    this.ctx.setWebSocketAutoResponse(on ? new WebSocketRequestResponsePair("ping", "pong") : undefined);
  }

  /**
   * A new connection becomes a member that waits for its first frame (before the
   * upgrade is answered: its first ping must reach the room). `announce`: its
   * arrival is still to be announced.
   */
  add(ws: WebSocket, att: Attachment, announce: boolean): void {
    att.wait = announce ? "join" : "life";
    this.members.add(ws, att);
    this.waiting().add(ws);
    this.autoRespond();
  }

  /**
   * A frame from a member. Its first: the session arrives (announced now, before
   * the frame takes effect). A `ping` reaches the room only while the
   * auto-response is off: answered here as the runtime would (true: done).
   */
  frame(ws: WebSocket, att: Attachment, message: string | ArrayBuffer, now: number): boolean {
    if (att.wait) this.arrive(ws, att);
    if (message !== "ping") return false;
    att.last = now;
    this.members.saveSoon(ws, att, now);
    safeSend(ws, "pong");
    return true;
  }

  /**
   * Housekeeping: whether a member never arrived (no frame within ARRIVAL_MS of
   * authed): the caller closes it. A ping the runtime answered meanwhile (its
   * auto-response is per object: set again on a wake) counts as a sign of life.
   */
  overdue(ws: WebSocket, att: Attachment, now: number): boolean {
    if (now < arrivalDue(att)) return false;
    if (this.ctx.getWebSocketAutoResponseTimestamp(ws) === null) return true;
    this.arrive(ws, att);
    return false;
  }

  /** A member left (before or after it arrived). */
  left(ws: WebSocket): void {
    if (this.waitingSet?.delete(ws)) this.autoRespond();
  }

  private arrive(ws: WebSocket, att: Attachment): void {
    const announce = att.wait === "join";
    delete att.wait;
    this.members.save(ws, att);
    this.waiting().delete(ws);
    const t = getTenant(att.tenant);
    if (announce && t) this.announce.arrived(t, att, ws);
    this.autoRespond();
  }
}
