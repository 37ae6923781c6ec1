/**
 * `mode: "jwt"` tickets (SPEC section 3): a compact JWS.
 *
 * Keys, chosen by the token header's `alg` (never by anything else):
 *  - `HS256`: the secret in the env var named by `auth.secret_env`;
 *  - `RS256` / `ES256` / `EdDSA`: the key set at `auth.jwks_url`, fetched and
 *    cached per URL at module scope (one set per isolate, shared by requests).
 * Any other `alg` (`none`, HS384/HS512, PS256, ...) is refused, and so is an alg
 * whose key source the tenant does not configure: an HS256 token against a
 * JWKS-only tenant (algorithm confusion) or an RS256 token against a secret-only
 * tenant. Each verification pins `algorithms` to the one family it uses.
 *
 * Claims: `sub` (a string matching USER_RE; authenticate() refuses the reserved
 * `@…` ids) and `exp` are required; `nbf` is
 * honoured; `aud` must match when the policy sets `auth.audience`; a `tenant`
 * claim, when present, must equal the tenant connected to; a `rooms` claim, when
 * present, must be a list of at most MAX_ROOM_PATTERNS strings of at most
 * MAX_ROOM_PATTERN_LENGTH chars (authenticate() then checks the room against it).
 */
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type CryptoKey,
  type FlattenedJWSInput,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
  type RemoteJWKSet,
} from "jose";
import type { CompiledAuth } from "../policy/types.ts";
import { readSecret } from "../env.ts";
import { USER_RE } from "../protocol/codes.ts";
import { authFailed } from "./failure.ts";
import type { AuthContext, AuthFailure, AuthResult } from "./index.ts";

export type JwtAuth = Extract<CompiledAuth, { mode: "jwt" }>;

/**
 * Clock skew tolerated on `exp` and `nbf`, in seconds: a token is still accepted
 * up to 5 s after its `exp`, and up to 5 s before its `nbf`. Small on purpose; it
 * only absorbs drift between the issuer's clock and the edge's.
 */
export const CLOCK_TOLERANCE_S = 5;

export const HMAC_ALGORITHMS = ["HS256"] as const;
export const JWKS_ALGORITHMS = ["RS256", "ES256", "EdDSA"] as const;

/** Bounds of the `rooms` claim. */
export const MAX_ROOM_PATTERNS = 64;
export const MAX_ROOM_PATTERN_LENGTH = 160;

/** Remote key sets kept per isolate (least recently used evicted beyond this). */
export const JWKS_CACHE_MAX_ENTRIES = 32;
/** Abort a key set fetch after this long (ms); the handshake is waiting on it. */
export const JWKS_TIMEOUT_MS = 3_000;
/** After a successful fetch, an unknown `kid` triggers no refetch for this long (ms). */
export const JWKS_COOLDOWN_MS = 30_000;
/** Cached keys are refetched once they are this old (ms). */
export const JWKS_CACHE_MAX_AGE_MS = 10 * 60_000;
/** A key set with several keys matching a kid-less token: try at most this many. */
const MAX_CANDIDATE_KEYS = 8;
/** Seconds a client should wait after a 503 for an unreachable key set. */
const KEY_SET_RETRY_AFTER_S = 5;

const textEncoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Remote key sets

/**
 * Thrown by our key resolver when the key set itself cannot be had: network
 * error, timeout, non-200 answer, a body that is not a JWK set. Reported as
 * 503 ORIGIN_UNAVAILABLE (retry in 5 s) rather than 401: the ticket may be fine,
 * it is the issuer's key endpoint that is down, and a client told "bad ticket"
 * would throw away a good one. "No key with that kid" is not this: it is 401.
 */
class KeySetUnavailable extends Error {
  override name = "KeySetUnavailable";
}

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

const jwksSets = new Map<string, KeyResolver>();

function createKeyResolver(url: string): KeyResolver {
  const remote: RemoteJWKSet = createRemoteJWKSet(new URL(url), {
    timeoutDuration: JWKS_TIMEOUT_MS,
    cooldownDuration: JWKS_COOLDOWN_MS,
    cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
  });
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      // Errors about the token against a good key set: let them through.
      if (
        err instanceof errors.JWKSNoMatchingKey ||
        err instanceof errors.JWKSMultipleMatchingKeys ||
        err instanceof errors.JOSENotSupported ||
        err instanceof errors.JOSEAlgNotAllowed
      ) {
        throw err;
      }
      // Everything else comes from fetching or parsing the set (JWKSTimeout, the
      // fetch's own TypeError, "Expected 200 OK", bad JSON, JWKSInvalid, a key in
      // the set that does not import).
      throw new KeySetUnavailable("key set unavailable", { cause: err });
    }
  };
}

/** The cached resolver for a JWKS URL (LRU, at most JWKS_CACHE_MAX_ENTRIES). */
function keyResolverFor(url: string): KeyResolver {
  let resolver = jwksSets.get(url);
  if (resolver) {
    jwksSets.delete(url); // re-insert: most recently used last
  } else {
    resolver = createKeyResolver(url);
    while (jwksSets.size >= JWKS_CACHE_MAX_ENTRIES) {
      const oldest = jwksSets.keys().next().value;
      if (oldest === undefined) break;
      jwksSets.delete(oldest);
    }
  }
  jwksSets.set(url, resolver);
  return resolver;
}

/** Tests only: forget every cached key set. */
export function _resetJwksCache(): void {
  jwksSets.clear();
}

/** Tests only: how many key sets are cached. */
export function _jwksCacheSize(): number {
  return jwksSets.size;
}

// ---------------------------------------------------------------------------
// Verification

export async function verifyJwtTicket(auth: JwtAuth, ticket: string, ctx: AuthContext): Promise<AuthResult> {
  let alg: unknown;
  try {
    alg = decodeProtectedHeader(ticket).alg;
  } catch {
    return authFailed("malformed ticket");
  }
  if (typeof alg !== "string") return authFailed("malformed ticket");

  const options: JWTVerifyOptions = {
    requiredClaims: ["sub", "exp"],
    clockTolerance: CLOCK_TOLERANCE_S,
  };
  if (auth.audience !== null) options.audience = auth.audience;
  if (ctx.now !== undefined) options.currentDate = new Date(ctx.now);

  let payload: JWTPayload;
  try {
    if ((HMAC_ALGORITHMS as readonly string[]).includes(alg) && auth.secret_env !== null) {
      const secret = readSecret(ctx.env, auth.secret_env);
      if (secret === undefined) return authFailed("ticket key not configured");
      options.algorithms = [...HMAC_ALGORITHMS];
      ({ payload } = await jwtVerify(ticket, textEncoder.encode(secret), options));
    } else if ((JWKS_ALGORITHMS as readonly string[]).includes(alg) && auth.jwks_url !== null) {
      options.algorithms = [...JWKS_ALGORITHMS];
      payload = await verifyWithKeySet(auth.jwks_url, ticket, options);
    } else {
      return authFailed("ticket algorithm not accepted");
    }
  } catch (err) {
    return failureFor(err);
  }

  return checkClaims(payload, ctx);
}

/** jwtVerify against a remote key set, trying each candidate when several keys match a kid-less token. */
async function verifyWithKeySet(url: string, ticket: string, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(ticket, keyResolverFor(url), options)).payload;
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    let tried = 0;
    for await (const key of err) {
      if (++tried > MAX_CANDIDATE_KEYS) break;
      try {
        return (await jwtVerify(ticket, key, options)).payload;
      } catch (candidateErr) {
        // Wrong key: try the next. Right key but bad claims: that is the answer.
        if (!(candidateErr instanceof errors.JWSSignatureVerificationFailed)) throw candidateErr;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

function checkClaims(payload: JWTPayload, ctx: AuthContext): AuthResult {
  const { sub, exp } = payload;
  if (sub === undefined) return authFailed("ticket missing sub");
  if (typeof sub !== "string" || !USER_RE.test(sub)) return authFailed("bad sub claim");
  if (typeof exp !== "number" || !Number.isFinite(exp)) return authFailed("ticket missing exp");

  if (payload.tenant !== undefined && payload.tenant !== ctx.tenant) {
    return authFailed("ticket for another tenant");
  }

  let rooms: string[] | null = null;
  if (payload.rooms !== undefined) {
    const claim: unknown = payload.rooms;
    if (
      !Array.isArray(claim) ||
      claim.length > MAX_ROOM_PATTERNS ||
      !claim.every((p) => typeof p === "string" && p.length <= MAX_ROOM_PATTERN_LENGTH)
    ) {
      return authFailed("bad rooms claim");
    }
    rooms = [...(claim as string[])];
  }

  return { ok: true, identity: { user: sub, exp, rooms } };
}

/** Map a verification error to a short, safe failure (never the token, a claim value or a key). */
function failureFor(err: unknown): AuthFailure {
  if (err instanceof KeySetUnavailable) {
    return {
      ok: false,
      status: 503,
      code: "ORIGIN_UNAVAILABLE",
      msg: "ticket key set unavailable",
      retryAfter: KEY_SET_RETRY_AFTER_S,
    };
  }
  if (err instanceof errors.JWTExpired) {
    return authFailed(err.claim === "exp" ? "ticket expired" : "ticket too old");
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    const { claim, reason } = err;
    if (reason === "missing" && (claim === "sub" || claim === "exp" || claim === "aud")) {
      return authFailed(`ticket missing ${claim}`);
    }
    if (claim === "nbf" && reason === "check_failed") return authFailed("ticket not yet valid");
    if (claim === "aud") return authFailed("ticket for another audience");
    return authFailed(`bad ${claim} claim`); // claim: a name jose chose (iat, nbf, ...), not token data
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return authFailed("bad signature");
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return authFailed("ticket algorithm not accepted");
  }
  if (err instanceof errors.JWKSNoMatchingKey) return authFailed("no key for ticket");
  if (err instanceof errors.JWKSMultipleMatchingKeys) return authFailed("ambiguous ticket key");
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return authFailed("malformed ticket");
  return authFailed("ticket rejected");
}
