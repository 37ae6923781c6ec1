/**
 * The room's side of cross-room governance: renew the leases of its sockets in
 * the tenant's directory (absolute lists, every RENEW_MS while it has sockets)
 * and release a socket when it ends.
 */
import type { Env } from "../env.ts";
import type { Attachment } from "../room/members.ts";
import { tenantDirectory } from "./admission.ts";

/** Renew every socket of `room`. Returns the sids the directory refused (held by another user). */
export async function renewSessions(env: Env, tenant: string, room: string, members: Iterable<Attachment>): Promise<string[]> {
  const list = [...members].map((a) => ({ sid: a.sid, user: a.user, cid: a.trace, since: a.since }));
  return tenantDirectory(env, tenant).renew(room, list);
}

/** A socket ended: free its place at once (its lease would expire anyway). Never throws. */
export async function releaseSession(env: Env, att: Attachment): Promise<void> {
  try {
    await tenantDirectory(env, att.tenant).release(att.room, att.sid, att.trace);
  } catch {
    // The lease runs out within LEASE_MS.
  }
}
