/**
 * The Worker's side of cross-room governance: before an upgrade reaches its room,
 * the tenant's directory admits the socket (one round trip; see directory.ts for
 * the rules). The room's side (renew, release) is in sessions.ts.
 */
import type { Env } from "../env.ts";
import { log } from "../observability/log.ts";
import type { TenantPolicy } from "../policy/index.ts";
import { jsonError } from "../protocol/http.ts";
import { MAX_BATCH, type AdmitRequest, type AdmitResult, type RefusalReason } from "./admission-rules.ts";

export const tenantDirectoryName = (tenant: string) => `t/${tenant}`;

export function tenantDirectory(env: Env, tenant: string) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName(tenantDirectoryName(tenant)));
}

export interface Admission {
  /** The upgrade did not happen: give back exactly what the admission took. Never throws. */
  undo(): Promise<void>;
  /** The upgrade happened: close the sessions kick_oldest evicted (4004). Never throws. Null when there are none. */
  evict: (() => Promise<void>) | null;
}

const REFUSALS: Record<RefusalReason, () => Response> = {
  // Keep this msg word for word: clients (the SDK) tell this 400 from the others by it (docs/protocol.md).
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
    r = await admitBatched(env, t.id, {
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
      evict:
        admitted.evicted.length === 0
          ? null
          : async () => {
              await Promise.allSettled(
                admitted.evicted.map((v) => env.ROOMS.get(env.ROOMS.idFromName(`${t.id}/${v.room}`)).replaceSession(v.sid, v.user)),
              );
            },
    },
  };
}

// --- Batching ------------------------------------------------------------------
//
// One directory call in flight per tenant and isolate: an admission that arrives
// while a call is in flight waits, and the next call carries every admission
// that queued meanwhile (up to MAX_BATCH). An idle gateway sends at once; a storm
// pays one round trip and one storage transaction per batch instead of per socket.
// Each call is made from the request context of one of the admissions it carries
// (the first waiting), so no request ever depends on I/O of a request that ended.

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Waiter {
  req: AdmitRequest;
  done: Deferred<AdmitResult>;
  /** Called when this waiter must send the next batch itself. */
  lead: () => void;
}

interface Lane {
  busy: boolean;
  /** When the call in flight started (ms): a lane busy for longer than STUCK_MS is taken over. */
  since: number;
  queue: Waiter[];
}

/** Most admissions in one call (the directory refuses to decide more). */
const BATCH = MAX_BATCH;
/** A call in flight longer than this is presumed lost (its request was cancelled). */
const STUCK_MS = 5_000;
/** Keyed by tenant id: bounded by the compiled policies, never by client input. */
const lanes = new Map<string, Lane>();

async function admitBatched(env: Env, tenant: string, req: AdmitRequest): Promise<AdmitResult> {
  let lane = lanes.get(tenant);
  if (!lane) lanes.set(tenant, (lane = { busy: false, since: 0, queue: [] }));
  const turn = deferred<void>();
  const me: Waiter = { req, done: deferred<AdmitResult>(), lead: () => turn.resolve() };
  const now = Date.now();
  if (lane.busy && now - lane.since < STUCK_MS) {
    lane.queue.push(me);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stuck = new Promise<"stuck">((resolve) => (timer = setTimeout(() => resolve("stuck"), STUCK_MS)));
    const settled = me.done.promise.then(
      () => "done" as const,
      () => "done" as const,
    );
    const first = await Promise.race([settled, turn.promise.then(() => "lead" as const), stuck]);
    if (timer !== undefined) clearTimeout(timer);
    if (first === "done") return me.done.promise;
    const mine = lane.queue.indexOf(me);
    if (mine < 0) return me.done.promise; // taken by a batch that is now in flight
    lane.queue.splice(mine, 1);
    await send(env, tenant, lane, [me, ...lane.queue.splice(0, BATCH - 1)]);
    return me.done.promise;
  }
  await send(env, tenant, lane, [me]);
  return me.done.promise;
}

async function send(env: Env, tenant: string, lane: Lane, batch: Waiter[]): Promise<void> {
  lane.busy = true;
  lane.since = Date.now();
  try {
    const results = await tenantDirectory(env, tenant).admitMany(batch.map((w) => w.req));
    batch.forEach((w, i) => {
      const r = results[i];
      if (r) w.done.resolve(r);
      else w.done.reject(new Error("directory answered fewer admissions than asked"));
    });
  } catch (err) {
    for (const w of batch) w.done.reject(err);
  } finally {
    const next = lane.queue.shift();
    if (next) {
      lane.queue.unshift(next);
      next.lead();
    } else lane.busy = false;
  }
}
