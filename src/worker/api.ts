/**
 * The origin-facing HTTP API (SPEC section 7), mounted at /v1/tenants:
 *
 *   POST /v1/tenants/:tenant/rooms/:room/messages   {svc,type,data?,to?,exclude?}  202 {"delivered":n}
 *   POST /v1/tenants/:tenant/rooms/:room/frames     a client-form hot frame        202 {"delivered":n}
 *   GET  /v1/tenants/:tenant/rooms/:room/presence                                  200 {"members":[…]}
 *   POST /v1/tenants/:tenant/rooms/:room/kick       {user}|{sid}, reason?          202 {"kicked":n}
 *
 * Checks, in this order, so that a caller without the key learns nothing about
 * bodies (it can learn whether a tenant exists, which is not a secret):
 *  1. path: tenant (TENANT_RE, 400 BAD_REQUEST), tenant known (404 UNKNOWN_TENANT),
 *     room (ROOM_RE, 400 BAD_REQUEST);
 *  2. `Authorization: Bearer <key>` against the env var named by the tenant's
 *     `api.key_env`, compared in constant time (secretsEqual). A tenant without
 *     `api`, an unset env var, a missing, malformed or wrong key: 401 AUTH_FAILED;
 *  3. content type (`application/json`, or `application/octet-stream` for frames;
 *     415 BAD_REQUEST otherwise), size (over 64 KiB, by Content-Length or as read:
 *     413 PAYLOAD_TOO_LARGE; the rest is never read), then the body (invalid
 *     UTF-8 or JSON, JSON nested deeper than 64 levels, a schema violation, a
 *     user id starting with the reserved `@`: 400 BAD_REQUEST).
 * Only then is the room object called. It trusts its inputs: everything is
 * validated here. A room object that fails answers 500 INTERNAL (503 with
 * Retry-After when the runtime says the error is retryable).
 *
 * Frames posted here are relayed to every member of the room with sender slot 0,
 * whatever the tenant's `hot_allowlist` and `hot_services` say (those govern
 * clients; the origin holds the API key). Messages carry
 * `from: {"user":"@origin","sid":"@origin"}`.
 */
import { Hono, type Context } from "hono";
import type { Env } from "../env.ts";
import { readSecret } from "../env.ts";
import { log, newTraceId } from "../observability/log.ts";
import { secretsEqual } from "../origin/sign.ts";
import { getTenant, type TenantPolicy } from "../policy/index.ts";
import { describeIssue } from "../protocol/check.ts";
import { ROOM_RE, TENANT_RE } from "../protocol/codes.ts";
import { decodeHot } from "../protocol/hot.ts";
import { jsonError, readBounded } from "../protocol/http.ts";
import { parseJson } from "../protocol/json.ts";
import type { OutboundMessage } from "../room/deliver.ts";
import { checkKickBody, checkMessageBody, type Checked as BodyChecked } from "./api-bodies.ts";

export { MAX_EXCLUDE, MAX_REASON_LENGTH } from "./api-bodies.ts";

type Ctx = Context<{ Bindings: Env }>;

/** Largest JSON body read, in bytes. */
export const MAX_JSON_BODY_BYTES = 64 * 1024;
/** Largest hot frame accepted, in bytes. */
export const MAX_FRAME_BODY_BYTES = 64 * 1024;
export const DEFAULT_KICK_REASON = "kicked";

// ---------------------------------------------------------------------------
// Checks

interface Checked {
  tenant: TenantPolicy;
  room: string;
  trace: string;
}

/** Path and key checks shared by every route: a Checked, or the error to answer. */
async function check(c: Ctx): Promise<Checked | Response> {
  const tenantId = c.req.param("tenant") ?? "";
  const room = c.req.param("room") ?? "";
  if (!TENANT_RE.test(tenantId)) return jsonError(400, "BAD_REQUEST", "malformed tenant");
  const tenant = getTenant(tenantId);
  if (!tenant) return jsonError(404, "UNKNOWN_TENANT", "no such tenant");
  if (!ROOM_RE.test(room)) return jsonError(400, "BAD_REQUEST", "malformed room");

  const trace = newTraceId();
  const denied = (reason: string): Response => {
    log("warn", "api.unauthorized", { trace_id: trace, tenant: tenant.id, room, reason });
    const res = jsonError(401, "AUTH_FAILED", "missing or invalid API key");
    res.headers.set("WWW-Authenticate", 'Bearer realm="wsprism"');
    return res;
  };
  const presented = bearer(c.req.header("Authorization"));
  if (!tenant.api) return denied("api_disabled");
  const expected = readSecret(c.env, tenant.api.key_env);
  if (expected === undefined) return denied("key_not_configured");
  if (presented === null) return denied("no_key");
  if (!(await secretsEqual(presented, expected))) return denied("wrong_key");
  return { tenant, room, trace };
}

/** The token of `Bearer <token>` (scheme case-insensitive), or null. */
function bearer(header: string | undefined): string | null {
  if (!header || header.length > 4096) return null;
  const m = /^Bearer +([^\s]+) *$/i.exec(header);
  return m ? m[1]! : null;
}

function mediaType(c: Ctx): string {
  return (c.req.header("Content-Type") ?? "").split(";")[0]!.trim().toLowerCase();
}


async function body(c: Ctx, type: string, max: number): Promise<Uint8Array | Response> {
  if (mediaType(c) !== type) return jsonError(415, "BAD_REQUEST", `expected Content-Type: ${type}`);
  let bytes: Awaited<ReturnType<typeof readBounded>>;
  try {
    bytes = await readBounded(c.req.raw, max);
  } catch {
    return jsonError(400, "BAD_REQUEST", "could not read the body");
  }
  if (bytes === "bad_length") return jsonError(400, "BAD_REQUEST", "malformed Content-Length");
  if (bytes === null) return jsonError(413, "PAYLOAD_TOO_LARGE", `body over ${max} bytes`);
  return bytes;
}

/** Parse a JSON body and check it: the checked value, or a 4xx answer. */
async function jsonBody<T>(c: Ctx, check: (value: unknown) => BodyChecked<T>): Promise<T | Response> {
  const bytes = await body(c, "application/json", MAX_JSON_BODY_BYTES);
  if (bytes instanceof Response) return bytes;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return jsonError(400, "BAD_REQUEST", "invalid JSON");
  }
  // Bounded depth: a deeper `data` would overflow the stack in the room object's RPC.
  const json = parseJson(text);
  if (!json.ok) return jsonError(400, "BAD_REQUEST", json.msg);
  const checked = check(json.value);
  // The message names a field path and what was expected, never the value.
  if (!checked.ok) return jsonError(400, "BAD_REQUEST", describeIssue(checked.issue, "body").slice(0, 300));
  return checked.value;
}

function stub(c: Ctx, k: Checked) {
  return c.env.ROOMS.get(c.env.ROOMS.idFromName(`${k.tenant.id}/${k.room}`));
}

/** A room object call that failed: logged, answered 500 (503 when retryable). */
function roomFailed(k: Checked, endpoint: string, err: unknown): Response {
  const retryable = typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === true;
  log("error", "api.room_failed", { trace_id: k.trace, tenant: k.tenant.id, room: k.room, endpoint, error: String(err) });
  return retryable
    ? jsonError(503, "INTERNAL", "room temporarily unavailable", 1)
    : jsonError(500, "INTERNAL", "internal error");
}

function done(k: Checked, endpoint: string, status: number, payload: object): Response {
  log("info", "api.call", { trace_id: k.trace, tenant: k.tenant.id, room: k.room, endpoint, status, ...payload });
  return new Response(JSON.stringify(payload), {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

// ---------------------------------------------------------------------------
// Routes

export const api = new Hono<{ Bindings: Env }>();

const BASE = "/:tenant/rooms/:room";

api.post(`${BASE}/messages`, async (c) => {
  const k = await check(c);
  if (k instanceof Response) return k;
  const b = await jsonBody(c, checkMessageBody);
  if (b instanceof Response) return b;
  const msg: OutboundMessage = { svc: b.svc, type: b.type };
  if (b.data !== undefined) msg.data = b.data;
  if (b.to) msg.to = b.to;
  if (b.exclude && b.exclude.length > 0) msg.exclude = b.exclude;
  try {
    const { delivered } = await stub(c, k).apiMessage(k.room, msg);
    return done(k, "messages", 202, { delivered });
  } catch (err) {
    return roomFailed(k, "messages", err);
  }
});

api.post(`${BASE}/frames`, async (c) => {
  const k = await check(c);
  if (k instanceof Response) return k;
  const bytes = await body(c, "application/octet-stream", MAX_FRAME_BODY_BYTES);
  if (bytes instanceof Response) return bytes;
  const decoded = decodeHot(bytes);
  if ("error" in decoded) return jsonError(400, decoded.error, decoded.msg);
  // An ArrayBuffer holding exactly the frame (a chunk may be a view into a larger one).
  const buf =
    bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
      ? (bytes.buffer as ArrayBuffer)
      : (bytes.slice().buffer as ArrayBuffer);
  try {
    const r = await stub(c, k).apiFrame(buf);
    if (!r.ok) return jsonError(400, r.code, r.msg);
    return done(k, "frames", 202, { delivered: r.delivered });
  } catch (err) {
    return roomFailed(k, "frames", err);
  }
});

api.get(`${BASE}/presence`, async (c) => {
  const k = await check(c);
  if (k instanceof Response) return k;
  try {
    const { members } = await stub(c, k).apiPresence();
    log("info", "api.call", { trace_id: k.trace, tenant: k.tenant.id, room: k.room, endpoint: "presence", status: 200 });
    return new Response(JSON.stringify({ members }), {
      status: 200,
      headers: { "content-type": "application/json; charset=utf-8" },
    });
  } catch (err) {
    return roomFailed(k, "presence", err);
  }
});

api.post(`${BASE}/kick`, async (c) => {
  const k = await check(c);
  if (k instanceof Response) return k;
  const b = await jsonBody(c, checkKickBody);
  if (b instanceof Response) return b;
  try {
    const { kicked } = await stub(c, k).apiKick("sid" in b ? { sid: b.sid } : { user: b.user }, b.reason ?? DEFAULT_KICK_REASON);
    return done(k, "kick", 202, { kicked });
  } catch (err) {
    return roomFailed(k, "kick", err);
  }
});

// A known path with another method: 405 with Allow (after the same checks).
const ALLOW: Record<string, string> = { messages: "POST", frames: "POST", presence: "GET", kick: "POST" };
api.all(`${BASE}/:endpoint{messages|frames|presence|kick}`, async (c) => {
  const k = await check(c);
  if (k instanceof Response) return k;
  const allow = ALLOW[c.req.param("endpoint")] ?? "GET";
  const res = jsonError(405, "BAD_REQUEST", `method not allowed; use ${allow}`);
  res.headers.set("Allow", allow);
  return res;
});
