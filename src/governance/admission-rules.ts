/**
 * The admission decision of SPEC section 2, as a pure function of the rows it
 * concerns: the directory (directory.ts) reads them, calls `decide`, and writes
 * what it returns. Kept apart so that the property tests can check it, step by
 * step, against a model of the contract.
 */

/** One live socket: the session (user, sid) has a socket in `room`. */
export interface SocketRow {
  sid: string;
  room: string;
  user: string;
  /** Connection id of the upgrade that holds the row (its trace id). */
  cid: string;
  /** When the session started (ms): the same on all its rows; kick_oldest evicts the lowest. */
  since: number;
  lease: number;
  /** 1 once the room renewed it; 0 while only admitted. */
  confirmed: number;
}

export interface AdmitRequest {
  sid: string;
  room: string;
  user: string;
  cid: string;
  /** `policy.sessions`: distinct sids per user (0 = unlimited), and what to do beyond. */
  maxSessions: number;
  onExceed: "deny" | "kick_oldest";
  /** `limits` (0 = unlimited each). */
  maxRoomsPerUser: number;
  maxSessionsTotal: number;
  maxRoomsTotal: number;
}

export type RefusalReason = "sid_taken" | "sessions" | "user_rooms" | "tenant_sessions" | "tenant_rooms";

export type AdmitResult =
  | {
      ok: true;
      /** The row now held for this upgrade. */
      row: SocketRow;
      /** The row of the socket this upgrade replaces (same user, sid and room), if any. */
      replaced: SocketRow | null;
      /** Rows of the sessions evicted by kick_oldest: their sockets get 4004 once the upgrade succeeded. */
      evicted: SocketRow[];
    }
  | { ok: false; reason: RefusalReason; retryAfter: number };

/** Tenant-wide counts, read only when a tenant cap is set. */
export interface TenantView {
  sockets: number;
  rooms: number;
  roomSockets(room: string): number;
}

/** Most admissions one directory call decides (the Worker's batches never hold more). */
export const MAX_BATCH = 64;

const RETRY_AFTER_S = 5;
const refuse = (reason: RefusalReason): AdmitResult => ({ ok: false, reason, retryAfter: RETRY_AFTER_S });

/**
 * Decide one admission. `rows` must hold every live row of `req.sid` and of
 * `req.user` (others are ignored); `tenant` is needed only when a tenant cap is set.
 */
export function decide(req: AdmitRequest, rows: readonly SocketRow[], tenant: TenantView | null, now: number, pendingMs: number): AdmitResult {
  const sidRows = rows.filter((r) => r.sid === req.sid);
  if (sidRows.some((r) => r.user !== req.user)) return refuse("sid_taken");

  // The same session in the same room: the new socket replaces the old one; no cap moves.
  const same = sidRows.find((r) => r.room === req.room);
  if (same) {
    const row = { ...same, cid: req.cid, lease: Math.max(same.lease, now + pendingMs) };
    return { ok: true, row, replaced: same, evicted: [] };
  }

  const userRows = rows.filter((r) => r.user === req.user);
  const sessions = new Map<string, number>(); // sid -> since
  for (const r of userRows) sessions.set(r.sid, Math.min(r.since, sessions.get(r.sid) ?? Infinity));

  let evicted: SocketRow[] = [];
  if (!sessions.has(req.sid) && req.maxSessions > 0 && sessions.size >= req.maxSessions) {
    if (req.onExceed === "deny") return refuse("sessions");
    const oldest = [...sessions]
      .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, sessions.size - req.maxSessions + 1)
      .map(([sid]) => sid);
    evicted = userRows.filter((r) => oldest.includes(r.sid));
  }
  const gone = (r: SocketRow) => evicted.includes(r);

  if (req.maxRoomsPerUser > 0) {
    const rooms = new Set(userRows.filter((r) => !gone(r)).map((r) => r.room));
    if (!rooms.has(req.room) && rooms.size >= req.maxRoomsPerUser) return refuse("user_rooms");
  }
  if (tenant) {
    if (req.maxSessionsTotal > 0 && tenant.sockets - evicted.length >= req.maxSessionsTotal) return refuse("tenant_sessions");
    if (req.maxRoomsTotal > 0) {
      const leftIn = (room: string) => tenant.roomSockets(room) - evicted.filter((r) => r.room === room).length;
      const emptied = new Set(evicted.map((r) => r.room).filter((room) => leftIn(room) === 0)).size;
      if (leftIn(req.room) === 0 && tenant.rooms - emptied >= req.maxRoomsTotal) return refuse("tenant_rooms");
    }
  }
  const row: SocketRow = {
    sid: req.sid,
    room: req.room,
    user: req.user,
    cid: req.cid,
    since: sessions.get(req.sid) ?? now,
    lease: now + pendingMs,
    confirmed: 0,
  };
  return { ok: true, row, replaced: null, evicted };
}
