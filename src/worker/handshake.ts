/**
 * The handshake defender (SPEC sections 2 and 9, `gateway.handshake_limit`):
 * token buckets checked in the Worker on `GET /v1/ws` upgrades, before any
 * other upgrade work (parameters, policy lookup, ticket verification, the room
 * object). Over a limit the upgrade gets `429 RATE_LIMITED` with `Retry-After`
 * (whole seconds until the exhausted bucket has a token again). `/healthz`,
 * `/readyz` and the HTTP API are never limited here.
 *
 * Two limits, both plain token buckets (src/room/ratelimit.ts):
 * - per IP: `per_ip_rps` / `per_ip_burst`, keyed by `CF-Connecting-IP` (IPv4
 *   exactly; IPv6 by its /64, which is what one subscriber usually holds, so
 *   rotating addresses inside one's own prefix does not reset the bucket). A
 *   missing or implausible header falls back to the key "unknown": all such
 *   requests share one bucket.
 * - global: `global_rps` / `global_burst`. Checked only for upgrades the
 *   per-IP bucket admitted, so one flooding IP cannot drain the global bucket
 *   for everyone else; an upgrade the global bucket refuses gives its per-IP
 *   token back.
 * `enabled: false` skips every check (and tracks nothing).
 *
 * Memory is bounded: at most MAX_TRACKED_IPS per-IP buckets, in a Map kept in
 * least-recently-used order (an entry is re-inserted on use). A bucket that has
 * refilled to full is dropped (lossless: a full bucket is what a new IP gets),
 * a few from the old end per call; beyond the cap the least recently used entry
 * is evicted (lossy, but only an attacker spreading over more than the cap of
 * addresses can profit, and the global bucket still holds).
 *
 * Scope of the state: it is module-level, so it lives per Worker isolate.
 * - Locally (`wrangler dev`, the tests) there is one isolate: the limits are
 *   exact.
 * - In production Cloudflare runs many isolates (several per colo, in every
 *   colo that gets traffic), each with its own buckets and each starting full.
 *   The global limit is therefore a per-isolate limit: the gateway as a whole
 *   admits roughly `global_rps` times the number of isolates serving the
 *   traffic. The per-IP limit holds well in practice (one client usually hits
 *   one colo and often the same isolate), but is not a guarantee either. Treat
 *   both as a cheap first line that sheds floods before they cost a ticket
 *   verification or a Durable Object call, not as an exact quota.
 *
 * For a limit that holds across isolates and colos, Cloudflare's Workers Rate
 * Limiting binding is the production-grade option: declare it in wrangler.toml
 *
 *     [[ratelimits]]
 *     name = "HANDSHAKE_LIMITER"
 *     namespace_id = "1001"
 *     simple = { limit = 100, period = 60 }
 *
 * add `HANDSHAKE_LIMITER: RateLimit` to Env, and in `connect()` before (or
 * instead of) this check:
 *
 *     const { success } = await c.env.HANDSHAKE_LIMITER.limit({ key: ip });
 *     if (!success) return jsonError(429, "RATE_LIMITED", "too many handshakes", 10);
 *
 * We do not use it here: its counters live in Cloudflare's network, so it cannot
 * be exercised locally or offline (wrangler dev / the workerd tests only
 * simulate it), its period is fixed at 10 s or 60 s, and it is configured in
 * wrangler.toml rather than the compiled policy. This in-isolate defender needs
 * nothing but the policy and works the same everywhere.
 */
import { gateway, type CompiledGateway } from "../policy/index.ts";
import { jsonError } from "../protocol/http.ts";
import { type Bucket, fullBucket, retryAfterSeconds, take } from "../room/ratelimit.ts";

export type HandshakeLimit = CompiledGateway["handshake_limit"];
export type HandshakeRejectReason = "handshake_global" | "handshake_ip";

/** Most per-IP buckets one isolate keeps. */
export const MAX_TRACKED_IPS = 10_000;
/** Most refilled buckets dropped from the old end per check (keeps a check O(1)). */
const PRUNE_PER_CHECK = 32;
/** Key of every request without a usable CF-Connecting-IP. */
export const UNKNOWN_IP = "unknown";

let globalBucket: Bucket | null = null;
/** ip key -> bucket, least recently used first. */
const ipBuckets = new Map<string, Bucket>();
const rejections: Record<HandshakeRejectReason, number> = { handshake_global: 0, handshake_ip: 0 };

/**
 * Admit or refuse one upgrade attempt. Returns the 429 response to send, or
 * null when the upgrade may proceed. `config` and `now` are injectable for tests.
 */
export function checkHandshake(
  req: Request,
  config: HandshakeLimit = gateway.handshake_limit,
  now: number = Date.now(),
): Response | null {
  if (!config.enabled) return null;
  const { global_rps, global_burst, per_ip_rps, per_ip_burst } = config;

  prune(now, per_ip_rps, per_ip_burst);
  const key = ipKey(req.headers.get("CF-Connecting-IP"));
  let ipBucket = ipBuckets.get(key);
  if (ipBucket) ipBuckets.delete(key); // re-inserted below: most recently used
  else ipBucket = fullBucket(per_ip_burst, now);
  ipBuckets.set(key, ipBucket);
  while (ipBuckets.size > MAX_TRACKED_IPS) ipBuckets.delete(ipBuckets.keys().next().value!);

  if (!take(ipBucket, now, per_ip_rps, per_ip_burst)) {
    rejections.handshake_ip++;
    return limited("too many handshakes from this address", retryAfterSeconds(ipBucket, per_ip_rps));
  }

  globalBucket ??= fullBucket(global_burst, now);
  if (!take(globalBucket, now, global_rps, global_burst)) {
    ipBucket.tokens = Math.min(per_ip_burst, ipBucket.tokens + 1); // not this address's fault
    rejections.handshake_global++;
    return limited("the gateway is busy, retry later", retryAfterSeconds(globalBucket, global_rps));
  }
  return null;
}

/** Rejection counts since the isolate started (for the metrics). */
export function handshakeRejections(): Record<HandshakeRejectReason, number> {
  return { ...rejections };
}

/** How many per-IP buckets are held (tests, metrics). */
export function trackedIps(): number {
  return ipBuckets.size;
}

/** Forget every bucket and count (tests only). */
export function resetHandshakeState(): void {
  globalBucket = null;
  ipBuckets.clear();
  rejections.handshake_global = 0;
  rejections.handshake_ip = 0;
}

function limited(msg: string, retryAfter: number): Response {
  return jsonError(429, "RATE_LIMITED", msg, retryAfter);
}

/** Drop buckets that have refilled to full, from the least recently used end. */
function prune(now: number, rps: number, burst: number): void {
  let n = 0;
  for (const [key, b] of ipBuckets) {
    if (n++ >= PRUNE_PER_CHECK) return;
    if (b.tokens + (Math.max(0, now - b.ts) * rps) / 1000 < burst) return;
    ipBuckets.delete(key);
  }
}

const IPV4_RE = /^\d{1,3}(\.\d{1,3}){3}$/;
const IPV6_RE = /^[0-9a-f:.]{2,45}$/;

/**
 * Bucket key of a CF-Connecting-IP value: an IPv4 address as is, an IPv6
 * address as its /64 ("2001:db8:0:1::/64"), anything else UNKNOWN_IP (so a
 * forged header in local dev cannot grow keys beyond 45 chars).
 */
export function ipKey(header: string | null): string {
  if (header === null) return UNKNOWN_IP;
  const ip = header.trim().toLowerCase();
  if (IPV4_RE.test(ip)) return ip;
  if (!ip.includes(":") || !IPV6_RE.test(ip)) return UNKNOWN_IP;
  if (ip.includes(".")) return ip; // IPv4-mapped/embedded: the IPv4 part is the client
  const halves = ip.split("::");
  if (halves.length > 2) return UNKNOWN_IP;
  const head = halves[0] === "" ? [] : halves[0]!.split(":");
  const tail = halves.length === 2 && halves[1] !== "" ? halves[1]!.split(":") : [];
  const zeros = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (zeros < 0 || (halves.length === 2 && zeros === 0)) return UNKNOWN_IP;
  const groups = [...head, ...Array<string>(zeros).fill("0"), ...tail];
  if (groups.length !== 8 || groups.some((g) => g.length < 1 || g.length > 4)) return UNKNOWN_IP;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}
