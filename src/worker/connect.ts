/**
 * GET /v1/ws: every pre-upgrade check of SPEC section 2, in this order:
 * 426 not an upgrade, 429 handshake defender (handshake.ts), 400 malformed parameters, 400 unknown tenant,
 * 403 Origin, 401 ticket, 403 rooms claim, then the tenant's session directory
 * (400 sid held by another user, 409 sessions per user, 503 tenant caps / rooms per user); then the room
 * object answers 503 when full, or upgrades.
 *
 * A client that offered `wsprism.v1` gets the 400, 401, 403 and 409 refusals
 * on a socket instead (refusal.ts), since a browser cannot read an HTTP refusal.
 *
 * The room object is handed the verified identity in a request the Worker
 * builds from scratch: nothing the client sent is forwarded to it.
 */
import type { Context } from "hono";
import { authenticate } from "../auth/index.ts";
import { admitSession } from "../governance/admission.ts";
import type { Env } from "../env.ts";
import { recordWorkerMetric } from "../observability/aggregator.ts";
import { log, newTraceId } from "../observability/log.ts";
import { getTenant, originAllowed } from "../policy/index.ts";
import { ROOM_RE, SID_RE, TENANT_RE } from "../protocol/codes.ts";
import { jsonError } from "../protocol/http.ts";
import { CONNECT_HEADER, parseResume, type ConnectRequest } from "../room/handoff.ts";
import { checkHandshake } from "./handshake.ts";
import { deliverRefusal } from "./refusal.ts";
import { SUBPROTOCOL, TICKET_PROTOCOL_PREFIX } from "./subprotocol.ts";

const MAX_PROTOCOL_HEADER = 10_000;

type Ctx = Context<{ Bindings: Env }>;

export async function connect(c: Ctx): Promise<Response> {
  const req = c.req.raw;
  if (req.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
    return jsonError(426, "UPGRADE_REQUIRED", "expected a WebSocket upgrade");
  }
  const limited = checkHandshake(req);
  if (limited) return limited;
  const protocols = parseProtocols(req.headers.get("Sec-WebSocket-Protocol"));
  if (protocols === null) return jsonError(400, "BAD_REQUEST", "malformed Sec-WebSocket-Protocol");
  const offered = protocols.includes(SUBPROTOCOL);
  // From here on, a permanent refusal reaches a client that offered wsprism.v1 on a socket.
  const res = await checkAndRoute(c, req, protocols, offered);
  return res.status === 101 ? res : deliverRefusal(res, offered, c.executionCtx);
}

async function checkAndRoute(c: Ctx, req: Request, protocols: string[], offered: boolean): Promise<Response> {
  const url = new URL(req.url);
  const one = (name: string): string | null | undefined => {
    const all = url.searchParams.getAll(name);
    return all.length > 1 ? undefined : (all[0] ?? null); // undefined = given twice
  };
  const tenantId = one("tenant");
  const room = one("room");
  const sidParam = one("sid");
  const queryTicket = one("ticket");
  if (!tenantId || !TENANT_RE.test(tenantId)) return jsonError(400, "BAD_REQUEST", "missing or malformed tenant");
  if (!room || !ROOM_RE.test(room)) return jsonError(400, "BAD_REQUEST", "missing or malformed room");
  if (sidParam === undefined || (sidParam !== null && !SID_RE.test(sidParam))) {
    return jsonError(400, "BAD_REQUEST", "malformed sid");
  }
  if (queryTicket === undefined) return jsonError(400, "BAD_REQUEST", "ticket given twice");
  const resumeParam = one("resume");
  const resume = resumeParam ? parseResume(resumeParam) : null;
  if (resumeParam === undefined || (resumeParam && !resume)) return jsonError(400, "BAD_REQUEST", "resume must be <epoch>.<off>");
  if (resume && sidParam === null) return jsonError(400, "BAD_REQUEST", "resume needs the session's sid");

  const protoTickets = protocols.filter((p) => p.startsWith(TICKET_PROTOCOL_PREFIX));
  if (protoTickets.length > 1) return jsonError(400, "BAD_REQUEST", "more than one ticket subprotocol");
  if (protoTickets.length === 1 && !offered) {
    return jsonError(400, "BAD_REQUEST", `a ticket subprotocol needs ${SUBPROTOCOL} as well`);
  }

  const tenant = getTenant(tenantId);
  if (!tenant) return jsonError(400, "UNKNOWN_TENANT", "no such tenant");
  const trace = newTraceId();
  const reject = (res: Response, reason: string): Response => {
    log("info", "ws.rejected", { trace_id: trace, tenant: tenantId, room, status: res.status, reason });
    return res;
  };

  if (!originAllowed(tenant, req.headers.get("Origin"))) {
    return reject(jsonError(403, "NOT_ALLOWED", "Origin not allowed"), "origin");
  }
  const ticket = queryTicket ?? protoTickets[0]?.slice(TICKET_PROTOCOL_PREFIX.length) ?? "";
  if (ticket === "") return reject(jsonError(401, "AUTH_FAILED", "missing ticket"), "no_ticket");

  const ip = req.headers.get("CF-Connecting-IP") ?? "unknown";
  const auth = await authenticate(tenant.auth, ticket, { tenant: tenant.id, room, ip, env: c.env });
  if (!auth.ok) return reject(jsonError(auth.status, auth.code, auth.msg, auth.retryAfter), auth.code);

  const sid = sidParam ?? newSid();
  const user = auth.identity.user;
  // Sessions per user, rooms per user, sid ownership and tenant caps span rooms: the directory decides.
  const admitted = await admitSession(c.env, tenant, { user, sid, room, cid: trace });
  if (!admitted.ok) {
    recordWorkerMetric(c.env, c.executionCtx, "wsprism_handshake_rejections_total", { tenant: tenant.id, reason: admitted.reason });
    return reject(admitted.response, admitted.reason);
  }

  const connectReq: ConnectRequest = { tenant: tenant.id, room, user, sid, exp: auth.identity.exp, trace, protocol: offered, resume };
  const stub = c.env.ROOMS.get(c.env.ROOMS.idFromName(`${tenant.id}/${room}`));
  let res: Response;
  try {
    res = await stub.fetch("https://room.internal/connect", {
      headers: { Upgrade: "websocket", [CONNECT_HEADER]: JSON.stringify(connectReq) },
    });
  } catch (err) {
    await admitted.admission.undo();
    throw err;
  }
  if (res.status !== 101) {
    await admitted.admission.undo();
    return reject(res, "room");
  }
  // kick_oldest: the evicted sessions are closed only once this upgrade succeeded.
  const evict = admitted.admission.evict;
  if (evict) c.executionCtx.waitUntil(evict());
  return res;
}

/** Split a Sec-WebSocket-Protocol header; null when it is absurd. */
function parseProtocols(header: string | null): string[] | null {
  if (header === null) return [];
  if (header.length > MAX_PROTOCOL_HEADER) return null;
  return header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

/** 22 url-safe chars (128 random bits): matches SID_RE. */
function newSid(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
