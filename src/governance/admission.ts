/**
 * The Worker's side of cross-room governance: before an upgrade reaches its room,
 * the tenant's directory admits the socket (one round trip; see directory.ts for
 * the rules). The room's side (renew, release) is in sessions.ts.
 */
import type { Env } from "../env.ts";
import { log } from "../observability/log.ts";
import type { TenantPolicy } from "../policy/index.ts";
import { jsonError } from "../protocol/http.ts";
import type { AdmitResult, RefusalReason } from "./admission-rules.ts";

export const tenantDirectoryName = (tenant: string) => `t/${tenant}`;

export function tenantDirectory(env: Env, tenant: string) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName(tenantDirectoryName(tenant)));
}

export interface Admission {
  /** The upgrade did not happen: give back exactly what the admission took. Never throws. */
  undo(): Promise<void>;
  /** The upgrade happened: close the sessions kick_oldest evicted (4004). Never throws. */
  evict(): Promise<void>;
}

const REFUSALS: Record<RefusalReason, () => Response> = {
  sid_taken: () => jsonError(400, "BAD_REQUEST", "sid is held by another user"),
  sessions: () => jsonError(409, "TOO_MANY_SESSIONS", "the user has max_sessions_per_user sessions already"),
  user_rooms: () => jsonError(503, "RESOURCE_EXHAUSTED", "the user is in max_rooms_per_user rooms already", 5),
  tenant_sessions: () => jsonError(503, "RESOURCE_EXHAUSTED", "the tenant's session cap is reached", 5),
  tenant_rooms: () => jsonError(503, "RESOURCE_EXHAUSTED", "the tenant's room cap is reached", 5),
};

/** Admit a socket, or answer the contract's rejection. `cid` identifies this upgrade. */
export async function admitSession(
  env: Env,
  t: TenantPolicy,
  who: { user: string; sid: string; room: string; cid: string },
): Promise<{ ok: true; admission: Admission } | { ok: false; response: Response; reason: string }> {
  const dir = tenantDirectory(env, t.id);
  let r: AdmitResult;
  try {
    r = await dir.admit({
      ...who,
      maxSessions: t.policy.sessions.max_sessions_per_user,
      onExceed: t.policy.sessions.on_exceed,
      maxRoomsPerUser: t.limits.max_rooms_per_user,
      maxSessionsTotal: t.limits.max_sessions_total,
      maxRoomsTotal: t.limits.max_rooms_total,
    });
  } catch (err) {
    log("error", "governance.unavailable", { trace_id: who.cid, tenant: t.id, room: who.room, error: String(err) });
    return { ok: false, response: jsonError(503, "RESOURCE_EXHAUSTED", "session directory unavailable", 2), reason: "directory_unavailable" };
  }
  if (!r.ok) return { ok: false, response: REFUSALS[r.reason](), reason: r.reason };
  const admitted = r;
  return {
    ok: true,
    admission: {
      undo: async () => {
        try {
          await dir.undo(admitted);
        } catch (err) {
          // The row's pending lease runs out on its own (PENDING_LEASE_MS).
          log("warn", "governance.undo_failed", { trace_id: who.cid, tenant: t.id, error: String(err) });
        }
      },
      evict: async () => {
        await Promise.allSettled(
          admitted.evicted.map((v) => env.ROOMS.get(env.ROOMS.idFromName(`${t.id}/${v.room}`)).replaceSession(v.sid, v.user)),
        );
      },
    },
  };
}
