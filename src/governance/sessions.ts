/**
 * The room's side of cross-room governance: renew the leases of its sockets in
 * the tenant's directory (absolute lists, every RENEW_MS while it has sockets)
 * and release a socket when it ends.
 */
import type { Env } from "../env.ts";
import { tenantDirectory } from "./admission.ts";

/**
 * The fields of a socket's session that the directory needs. Declared here
 * rather than taken from room/members.ts: the room depends on governance, never
 * the reverse (a room's Attachment has these fields and fits as is).
 */
export interface SessionRef {
  tenant: string;
  room: string;
  sid: string;
  user: string;
  /** The connection id (the upgrade's trace id). */
  trace: string;
  /** ms since epoch when the session joined. */
  since: number;
}

/** Renew every socket of `room`. Returns the sids the directory refused (held by another user). */
export async function renewSessions(env: Env, tenant: string, room: string, members: Iterable<Pick<SessionRef, "sid" | "user" | "trace" | "since">>): Promise<string[]> {
  const list = [...members].map((a) => ({ sid: a.sid, user: a.user, cid: a.trace, since: a.since }));
  return tenantDirectory(env, tenant).renew(room, list);
}

/** A ghost ended (a kick): free its sid in the directory at once. Never throws. */
export async function releaseGhost(env: Env, tenant: string, room: string, sid: string, user: string): Promise<void> {
  try {
    await tenantDirectory(env, tenant).releaseGhost(room, sid, user);
  } catch {
    // The room's next renewal leaves it out.
  }
}

/** A socket ended: free its place at once (its lease would expire anyway). Never throws. */
export async function releaseSession(env: Env, att: Pick<SessionRef, "tenant" | "room" | "sid" | "trace">): Promise<void> {
  try {
    await tenantDirectory(env, att.tenant).release(att.room, att.sid, att.trace);
  } catch {
    // The lease runs out within LEASE_MS.
  }
}
