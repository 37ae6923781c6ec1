/**
 * `mode: "origin"` tickets (SPEC section 3): the Worker asks the tenant's origin.
 *
 *   POST <auth.origin_url>
 *   content-type: application/json
 *   webhook-id / webhook-timestamp / webhook-signature   (Standard Webhooks, section 6;
 *                                                         the whsec_ secret of auth.secret_env)
 *   {"ticket":"…","tenant":"…","room":"…","ip":"…"}
 *
 * The answer:
 *  - 200 with `{"user": "<USER_RE>"}` admits that user. Two optional fields are
 *    honoured like the JWT claims of the same name: `"rooms"` (room patterns, a
 *    trailing `*` matches any suffix; authenticate() checks the room against them,
 *    403 NOT_ALLOWED) and `"exp"` (unix seconds: an answer already expired is
 *    refused, 401; a live session carries it like a JWT's `exp`). Other fields
 *    are ignored. A 200 whose body is not that (not JSON, nested deeper than
 *    64 levels, no/bad `user`, bad `rooms` or `exp`, larger than 16 KiB) is 401
 *    AUTH_FAILED. A `user` starting with `@` (reserved) is refused by
 *    authenticate(), like in every mode.
 *  - 4xx (other than 408 and 429) is a refusal: 401 AUTH_FAILED.
 *  - 408, 429, 5xx, any other status (3xx: redirects are not followed), a network
 *    error, no answer within 3 s, or a missing/invalid signing secret fail closed:
 *    503 ORIGIN_UNAVAILABLE with `Retry-After: 5`. The ticket may well be good; it
 *    is the origin that cannot say so right now.
 *
 * Answers are cached per isolate for `auth.cache_s` seconds (0 disables the
 * cache) in a bounded LRU keyed by tenant, room and the SHA-256 of the ticket (a
 * raw ticket is never kept). Only definitive answers are cached: admissions
 * (never past their `exp`) and 4xx refusals; never 503s, nor a 200 with an
 * invalid body (an origin bug, not a verdict on the ticket). The client's `ip`
 * is sent to the origin for its information but is not part of the cache key: an
 * origin whose verdict depends on the ip should set `cache_s: 0`. Concurrent
 * handshakes with the same uncached ticket each ask the origin (requests are
 * not coalesced across Worker requests).
 */
import type { CompiledAuth } from "../policy/types.ts";
import { readSecret } from "../env.ts";
import { log } from "../observability/log.ts";
import { readBoundedText } from "../protocol/http.ts";
import { newMessageId, webhookHeaders } from "../origin/sign.ts";
import { USER_RE } from "../protocol/codes.ts";
import { parseJson } from "../protocol/json.ts";
import { authFailed } from "./failure.ts";
import type { AuthContext, AuthFailure, AuthResult, Identity } from "./index.ts";
import { CLOCK_TOLERANCE_S, MAX_ROOM_PATTERN_LENGTH, MAX_ROOM_PATTERNS } from "./jwt.ts";

export type OriginAuth = Extract<CompiledAuth, { mode: "origin" }>;

/** Abort the auth call (request and answer body) after this long. */
export const ORIGIN_AUTH_TIMEOUT_MS = 3_000;
/** At most this many bytes of the origin's answer are read. */
export const ORIGIN_AUTH_MAX_ANSWER_BYTES = 16 * 1024;
/** Cached answers kept per isolate (least recently used evicted beyond this). */
export const ORIGIN_AUTH_CACHE_MAX_ENTRIES = 10_000;
/** Seconds a client should wait after a 503 ORIGIN_UNAVAILABLE. */
export const ORIGIN_RETRY_AFTER_S = 5;

function unavailable(msg: string): AuthFailure {
  return { ok: false, status: 503, code: "ORIGIN_UNAVAILABLE", msg, retryAfter: ORIGIN_RETRY_AFTER_S };
}

// ---------------------------------------------------------------------------
// Cache

type CachedAnswer = { ok: true; identity: Identity } | AuthFailure;

/** A bounded LRU whose entries expire at a given time (ms). The clock is the caller's. */
export class TtlLru<V> {
  private readonly map = new Map<string, { value: V; expiresAt: number }>();
  readonly maxEntries: number;

  constructor(maxEntries: number) {
    this.maxEntries = Math.max(1, maxEntries);
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string, now: number): V | undefined {
    const entry = this.map.get(key);
    if (!entry) return undefined;
    this.map.delete(key);
    if (entry.expiresAt <= now) return undefined;
    this.map.set(key, entry); // most recently used last
    return entry.value;
  }

  set(key: string, value: V, expiresAt: number): void {
    this.map.delete(key);
    while (this.map.size >= this.maxEntries) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.map.delete(oldest);
    }
    this.map.set(key, { value, expiresAt });
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}

const cache = new TtlLru<CachedAnswer>(ORIGIN_AUTH_CACHE_MAX_ENTRIES);

/** Tests only: forget every cached answer. */
export function _resetOriginAuthCache(): void {
  cache.clear();
}

/** Tests only: how many answers are cached. */
export function _originAuthCacheSize(): number {
  return cache.size;
}

const encoder = new TextEncoder();

async function cacheKey(tenant: string, room: string, ticket: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(ticket)));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  // Neither a tenant id nor a room name can contain a NUL.
  return `${tenant}\u0000${room}\u0000${hex}`;
}

/** A fresh copy: callers may not mutate what the cache holds. */
function copyAnswer(answer: CachedAnswer): AuthResult {
  if (!answer.ok) return { ...answer };
  const { user, exp, rooms } = answer.identity;
  return { ok: true, identity: { user, exp, rooms: rooms === null ? null : [...rooms] } };
}

/** An admission whose `exp` has passed (with the JWT clock tolerance). */
function expired(identity: Identity, nowMs: number): boolean {
  return identity.exp !== null && identity.exp + CLOCK_TOLERANCE_S <= nowMs / 1000;
}

// ---------------------------------------------------------------------------
// The call

export interface OriginAuthOptions {
  /** Tests only: overrides ORIGIN_AUTH_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** Ask the origin about a ticket (cached). Never throws. */
export async function verifyOriginTicket(
  auth: OriginAuth,
  ticket: string,
  ctx: AuthContext,
  options: OriginAuthOptions = {},
): Promise<AuthResult> {
  const now = ctx.now ?? Date.now();
  const useCache = auth.cache_s > 0;
  let key: string | null = null;
  if (useCache) {
    key = await cacheKey(ctx.tenant, ctx.room, ticket);
    const hit = cache.get(key, now);
    if (hit) {
      if (hit.ok && expired(hit.identity, now)) {
        cache.delete(key);
        return authFailed("ticket expired");
      }
      return copyAnswer(hit);
    }
  }

  const { result, cacheable } = await askOrigin(auth, ticket, ctx, now, options.timeoutMs ?? ORIGIN_AUTH_TIMEOUT_MS);
  if (key !== null && cacheable) {
    let expiresAt = now + auth.cache_s * 1000;
    if (result.ok && result.identity.exp !== null) {
      expiresAt = Math.min(expiresAt, (result.identity.exp + CLOCK_TOLERANCE_S) * 1000);
    }
    if (expiresAt > now) cache.set(key, copyAnswer(result) as CachedAnswer, expiresAt);
  }
  return result;
}

async function askOrigin(
  auth: OriginAuth,
  ticket: string,
  ctx: AuthContext,
  now: number,
  timeoutMs: number,
): Promise<{ result: AuthResult; cacheable: boolean }> {
  const fields = { tenant: ctx.tenant, room: ctx.room };
  const secret = readSecret(ctx.env, auth.secret_env);
  if (secret === undefined) {
    log("error", "auth.origin_secret_missing", { trace_id: "-", ...fields, secret_env: auth.secret_env });
    return { result: unavailable("origin auth is not configured"), cacheable: false };
  }

  const body = JSON.stringify({ ticket, tenant: ctx.tenant, room: ctx.room, ip: ctx.ip });
  let headers: Record<string, string>;
  try {
    headers = await webhookHeaders(secret, newMessageId(), body);
  } catch {
    log("error", "auth.origin_secret_invalid", { trace_id: "-", ...fields, secret_env: auth.secret_env });
    return { result: unavailable("origin auth is not configured"), cacheable: false };
  }
  let res: Response;
  let answer: string | null = null;
  try {
    const signal = AbortSignal.timeout(timeoutMs);
    res = await fetch(auth.origin_url, { method: "POST", headers, body, signal, redirect: "manual" });
    if (res.status === 200) {
      answer = await readBoundedText(res, ORIGIN_AUTH_MAX_ANSWER_BYTES);
    } else {
      await res.body?.cancel().catch(() => {});
    }
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
    log("warn", "auth.origin_unavailable", { trace_id: "-", ...fields, error: timedOut ? "timeout" : String(err).slice(0, 200) });
    return { result: unavailable(timedOut ? "origin auth timed out" : "origin auth unreachable"), cacheable: false };
  }

  const status = res.status;
  if (status === 200) {
    if (answer === null) return { result: authFailed("origin answer too large"), cacheable: false };
    const parsed = parseAnswer(answer);
    if (typeof parsed === "string") {
      log("warn", "auth.origin_bad_answer", { trace_id: "-", ...fields, reason: parsed });
      return { result: authFailed("invalid origin answer"), cacheable: false };
    }
    if (expired(parsed, now)) return { result: authFailed("ticket expired"), cacheable: false };
    return { result: { ok: true, identity: parsed }, cacheable: true };
  }
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return { result: authFailed("ticket rejected by origin"), cacheable: true };
  }
  log("warn", "auth.origin_unavailable", { trace_id: "-", ...fields, status });
  return { result: unavailable("origin auth unavailable"), cacheable: false };
}


/** The identity in a 200 answer, or a reason (for the log) why it is not one. */
export function parseAnswer(text: string): Identity | string {
  const json = parseJson(text);
  if (!json.ok) return json.error === "too_deep" ? "too deep" : "not JSON";
  const raw = json.value;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return "not an object";
  const { user, rooms, exp } = raw as { user?: unknown; rooms?: unknown; exp?: unknown };
  if (typeof user !== "string" || !USER_RE.test(user)) return "bad user";

  let patterns: string[] | null = null;
  if (rooms !== undefined && rooms !== null) {
    if (
      !Array.isArray(rooms) ||
      rooms.length > MAX_ROOM_PATTERNS ||
      !rooms.every((p) => typeof p === "string" && p.length <= MAX_ROOM_PATTERN_LENGTH)
    ) {
      return "bad rooms";
    }
    patterns = [...(rooms as string[])];
  }

  let expS: number | null = null;
  if (exp !== undefined && exp !== null) {
    if (typeof exp !== "number" || !Number.isFinite(exp) || exp <= 0) return "bad exp";
    expS = exp;
  }
  return { user, exp: expS, rooms: patterns };
}
