/**
 * The Worker's side of cross-room governance: before an upgrade reaches its room,
 * the tenant's directory (caps) and then the user's directory (sessions per user,
 * rooms per user) admit it. A tenant with no cap set skips its round trip.
 * The room's side (renew, release) is in sessions.ts.
 */
import type { Env } from "../env.ts";
import { log } from "../observability/log.ts";
import type { TenantPolicy } from "../policy/index.ts";
import { jsonError } from "../protocol/http.ts";
import type { AdmitRequest, AdmitResult } from "./directory.ts";

export const userDirectoryName = (tenant: string, user: string) => `u/${tenant}/${user}`;
export const tenantDirectoryName = (tenant: string) => `t/${tenant}`;

export function hasTenantCaps(t: TenantPolicy): boolean {
  return t.limits.max_sessions_total > 0 || t.limits.max_rooms_total > 0;
}

export interface Admitted {
  /** Give the admission back (the room refused the upgrade). */
  release(): Promise<void>;
}

function directory(env: Env, name: string) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName(name));
}

/** Admit a session, or answer the contract's rejection. Evicts the oldest sessions under `kick_oldest`. */
export async function admitSession(
  env: Env,
  t: TenantPolicy,
  user: string,
  room: string,
  sid: string,
  trace: string,
): Promise<{ ok: true; admitted: Admitted } | { ok: false; response: Response; reason: string }> {
  const held: Array<() => Promise<void>> = [];
  const release = async () => {
    await Promise.allSettled(held.map((f) => f()));
  };
  try {
    if (hasTenantCaps(t)) {
      const dir = directory(env, tenantDirectoryName(t.id));
      const r: AdmitResult = await dir.admit({
        sid,
        room,
        user,
        maxSessions: t.limits.max_sessions_total,
        maxRooms: t.limits.max_rooms_total,
        onExceed: "unavailable",
      } satisfies AdmitRequest);
      if (!r.ok) {
        const what = r.reason === "rooms" ? "the tenant's room cap is reached" : "the tenant's session cap is reached";
        return { ok: false, response: jsonError(503, "RESOURCE_EXHAUSTED", what, r.retryAfter), reason: `tenant_${r.reason}` };
      }
      held.push(() => dir.release(room, sid));
    }
    const s = t.policy.sessions;
    const dir = directory(env, userDirectoryName(t.id, user));
    const r = await dir.admit({
      sid,
      room,
      user,
      maxSessions: s.max_sessions_per_user,
      maxRooms: t.limits.max_rooms_per_user,
      onExceed: s.on_exceed,
    });
    if (!r.ok) {
      await release();
      if (r.reason === "rooms") {
        return {
          ok: false,
          response: jsonError(503, "RESOURCE_EXHAUSTED", "the user is in max_rooms_per_user rooms already", r.retryAfter),
          reason: "user_rooms",
        };
      }
      return {
        ok: false,
        response: jsonError(409, "TOO_MANY_SESSIONS", "the user has max_sessions_per_user sessions already"),
        reason: "sessions",
      };
    }
    held.push(() => dir.release(room, sid));
    // kick_oldest: the evicted sessions get sys.kicked and close 4004, in whatever room they are.
    await Promise.allSettled(
      r.evicted.map(async (v) => {
        const stub = env.ROOMS.get(env.ROOMS.idFromName(`${t.id}/${v.room}`));
        await stub.replaceSession(v.sid);
      }),
    );
    return { ok: true, admitted: { release } };
  } catch (err) {
    await release();
    log("error", "governance.unavailable", { trace_id: trace, tenant: t.id, room, error: String(err) });
    return {
      ok: false,
      response: jsonError(503, "RESOURCE_EXHAUSTED", "session directory unavailable", 2),
      reason: "directory_unavailable",
    };
  }
}
