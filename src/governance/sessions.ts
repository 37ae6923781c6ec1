/**
 * The room's side of cross-room governance: renew the leases of its sessions in
 * their directories (absolute lists, every RENEW_MS while it has sockets) and
 * release a session when it ends.
 */
import type { Env } from "../env.ts";
import type { TenantPolicy } from "../policy/index.ts";
import type { Attachment } from "../room/members.ts";
import { hasTenantCaps, tenantDirectoryName, userDirectoryName } from "./admission.ts";

function directory(env: Env, name: string) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName(name));
}

/** Renew every session of `room` (grouped by tenant and user). Never throws. */
export async function renewSessions(
  env: Env,
  room: string,
  members: Iterable<Attachment>,
  tenantOf: (id: string) => TenantPolicy | undefined,
): Promise<void> {
  const byTenant = new Map<string, Attachment[]>();
  for (const att of members) {
    const list = byTenant.get(att.tenant);
    if (list) list.push(att);
    else byTenant.set(att.tenant, [att]);
  }
  const calls: Promise<unknown>[] = [];
  for (const [tenantId, atts] of byTenant) {
    const t = tenantOf(tenantId);
    if (!t) continue;
    const entry = (a: Attachment) => ({ sid: a.sid, user: a.user, since: a.since });
    if (hasTenantCaps(t)) calls.push(directory(env, tenantDirectoryName(t.id)).renew(room, atts.map(entry)));
    const byUser = new Map<string, Attachment[]>();
    for (const a of atts) byUser.set(a.user, [...(byUser.get(a.user) ?? []), a]);
    for (const [user, list] of byUser) calls.push(directory(env, userDirectoryName(t.id, user)).renew(room, list.map(entry)));
  }
  await Promise.allSettled(calls);
}

/** A session ended: free its place at once (its lease would expire anyway). Never throws. */
export async function releaseSession(env: Env, t: TenantPolicy, att: Attachment): Promise<void> {
  const calls: Promise<unknown>[] = [directory(env, userDirectoryName(t.id, att.user)).release(att.room, att.sid)];
  if (hasTenantCaps(t)) calls.push(directory(env, tenantDirectoryName(t.id)).release(att.room, att.sid));
  await Promise.allSettled(calls);
}
