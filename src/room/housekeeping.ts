/**
 * The room's housekeeping alarm: runs only while the room has sockets.
 *
 *  - idle timeout: a socket that sent no frame and no heartbeat for
 *    `gateway.idle_timeout_ms` is closed 4002. Heartbeats are answered by the
 *    runtime's auto-response without waking the object; their time is read here
 *    with `getWebSocketAutoResponseTimestamp`.
 *  - arrival (SPEC v1.2, arrival.ts): a socket with no frame within 10 s of
 *    `authed` never arrived: closed 4002, its session ends unannounced.
 *  - JWT expiry: at `exp` the session gets `sys.error AUTH_EXPIRED` and close 4001
 *    (unless a `sys:refresh` moved `exp` first).
 *  - leases: every RENEW_MS the room renews its sessions (and its ghosts, which
 *    keep their sids for `window_s`) in their directories.
 */
import type { RoomApi } from "./context.ts";
import { RENEW_MS } from "../governance/directory.ts";
import { gateway } from "../policy/index.ts";
import { CLOSE } from "../protocol/codes.ts";
import { arrivalDue } from "./arrival.ts";
import type { Attachment } from "./members.ts";

export const HOUSEKEEPING_ALARM = "housekeeping";
const RENEW_KEY = "housekeeping:renewed";

/** Last sign of life of a socket: its last frame, or its last heartbeat. */
export function lastActive(ctx: DurableObjectState, ws: WebSocket, att: Attachment): number {
  const ping = ctx.getWebSocketAutoResponseTimestamp(ws);
  return Math.max(att.last ?? att.since, ping ? ping.getTime() : 0);
}

/** When housekeeping must next run for this member. */
function dueFor(ctx: DurableObjectState, ws: WebSocket, att: Attachment): number {
  let due = lastActive(ctx, ws, att) + gateway.idle_timeout_ms;
  if (att.exp !== null) due = Math.min(due, att.exp * 1000);
  return Math.min(due, arrivalDue(att));
}

/** Make sure the alarm covers a member (on join, on refresh). */
export function scheduleFor(host: RoomApi, ws: WebSocket, att: Attachment, now = Date.now()): void {
  host.alarms.scheduleBy(HOUSEKEEPING_ALARM, Math.min(dueFor(host.roomState, ws, att), now + RENEW_MS));
}

export async function runHousekeeping(host: RoomApi, now = Date.now()): Promise<void> {
  for (const [ws, att] of [...host.members.all()]) {
    if (host.arrivals.overdue(ws, att, now)) {
      host.closeMember(ws, CLOSE.IDLE_TIMEOUT, "no frame since authed");
    } else if (att.exp !== null && att.exp * 1000 <= now) {
      host.sendError(ws, att, "AUTH_EXPIRED", "ticket expired; send sys:refresh before exp");
      host.closeMember(ws, CLOSE.AUTH_EXPIRED, "auth expired");
    } else if (now - lastActive(host.roomState, ws, att) >= gateway.idle_timeout_ms) {
      host.closeMember(ws, CLOSE.IDLE_TIMEOUT, "idle timeout");
    }
  }
  const members = [...host.members.all()];
  // Ghosts that may come back keep their sids in the directory: renewals go on for them too.
  if (members.length === 0 && !host.holdsGhosts()) {
    host.alarms.clear(HOUSEKEEPING_ALARM);
    host.roomState.storage.kv.delete(RENEW_KEY);
    return;
  }
  const renewed = host.roomState.storage.kv.get<number>(RENEW_KEY) ?? 0;
  let next = renewed + RENEW_MS;
  if (now >= next) {
    host.roomState.storage.kv.put(RENEW_KEY, now);
    await host.renew(members.map(([, a]) => a));
    next = now + RENEW_MS;
  }
  for (const [ws, att] of members) next = Math.min(next, dueFor(host.roomState, ws, att));
  host.alarms.schedule(HOUSEKEEPING_ALARM, Math.max(next, now + 250));
}
