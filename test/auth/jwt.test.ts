import { env } from "cloudflare:workers";
import fc from "fast-check";
import { base64url, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { authenticate, MAX_TICKET_LENGTH, type AuthContext, type AuthResult } from "../../src/auth/index.ts";
import {
  _jwksCacheSize,
  _resetJwksCache,
  CLOCK_TOLERANCE_S,
  JWKS_CACHE_MAX_ENTRIES,
  MAX_ROOM_PATTERN_LENGTH,
  MAX_ROOM_PATTERNS,
} from "../../src/auth/jwt.ts";
import type { Env } from "../../src/env.ts";
import type { CompiledAuth } from "../../src/policy/types.ts";
import { USER_RE } from "../../src/protocol/codes.ts";

const SECRET = "test-secret-that-is-at-least-32-bytes-long!";
const testEnv = env as unknown as Env;
const enc = new TextEncoder();

type JwtAuth = Extract<CompiledAuth, { mode: "jwt" }>;
const HS_AUTH: JwtAuth = { mode: "jwt", secret_env: "TEST_JWT_SECRET", jwks_url: null, audience: null };

function ctx(over: Partial<AuthContext> = {}): AuthContext {
  return { tenant: "acme", room: "lobby", ip: "203.0.113.7", env: testEnv, ...over };
}

const nowS = () => Math.floor(Date.now() / 1000);

function claims(over: JWTPayload = {}): JWTPayload {
  return { sub: "alice", exp: nowS() + 600, ...over };
}

async function hs256(payload: JWTPayload, secret = SECRET, alg = "HS256"): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg }).sign(enc.encode(secret));
}

function expectFailure(res: AuthResult, status: number, code: string, msg?: string | RegExp): void {
  expect(res.ok).toBe(false);
  if (res.ok) return;
  expect(res.status).toBe(status);
  expect(res.code).toBe(code);
  if (typeof msg === "string") expect(res.msg).toBe(msg);
  else if (msg) expect(res.msg).toMatch(msg);
}

function unsecured(header: object, payload: object, signature = ""): string {
  const part = (o: object) => base64url.encode(JSON.stringify(o));
  return `${part(header)}.${part(payload)}.${signature}`;
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
  _resetJwksCache();
});

describe("jwt HS256", () => {
  it("admits a valid token", async () => {
    const exp = nowS() + 600;
    const res = await authenticate(HS_AUTH, await hs256(claims({ exp })), ctx());
    expect(res).toEqual({ ok: true, identity: { user: "alice", exp, rooms: null } });
  });

  it("refuses an expired token", async () => {
    const res = await authenticate(HS_AUTH, await hs256(claims({ exp: nowS() - 60 })), ctx());
    expectFailure(res, 401, "AUTH_FAILED", "ticket expired");
  });

  it("tolerates clock skew within CLOCK_TOLERANCE_S, not beyond", async () => {
    const exp = 2_000_000_000;
    const token = await hs256(claims({ exp }));
    const at = (s: number) => ctx({ now: s * 1000 });
    expect((await authenticate(HS_AUTH, token, at(exp + CLOCK_TOLERANCE_S - 1))).ok).toBe(true);
    expectFailure(await authenticate(HS_AUTH, token, at(exp + CLOCK_TOLERANCE_S + 1)), 401, "AUTH_FAILED", "ticket expired");
  });

  it("honours ctx.now", async () => {
    const token = await hs256(claims({ exp: 1_000_000 }));
    expect((await authenticate(HS_AUTH, token, ctx({ now: 999_000_000 }))).ok).toBe(true);
    expectFailure(await authenticate(HS_AUTH, token, ctx()), 401, "AUTH_FAILED", "ticket expired");
  });

  it("refuses a token whose nbf is in the future", async () => {
    const res = await authenticate(HS_AUTH, await hs256(claims({ nbf: nowS() + 120 })), ctx());
    expectFailure(res, 401, "AUTH_FAILED", "ticket not yet valid");
    expect((await authenticate(HS_AUTH, await hs256(claims({ nbf: nowS() - 1 })), ctx())).ok).toBe(true);
  });

  it("refuses a token signed with another secret", async () => {
    const res = await authenticate(HS_AUTH, await hs256(claims(), "another-secret-that-is-32-bytes-long!!"), ctx());
    expectFailure(res, 401, "AUTH_FAILED", "bad signature");
  });

  it("refuses a tampered payload", async () => {
    const [h, , s] = (await hs256(claims())).split(".");
    const forged = `${h}.${base64url.encode(JSON.stringify(claims({ sub: "mallory" })))}.${s}`;
    expectFailure(await authenticate(HS_AUTH, forged, ctx()), 401, "AUTH_FAILED", "bad signature");
  });

  it("requires sub", async () => {
    const res = await authenticate(HS_AUTH, await hs256({ exp: nowS() + 600 }), ctx());
    expectFailure(res, 401, "AUTH_FAILED", "ticket missing sub");
  });

  it.each([
    ["a number", 42],
    ["empty", ""],
    ["too long", "u".repeat(129)],
    ["with a control char", "al\nice"],
    ["an object", { id: "alice" }],
  ])("refuses a sub that is %s", async (_what, sub) => {
    const res = await authenticate(HS_AUTH, await hs256(claims({ sub: sub as string })), ctx());
    expectFailure(res, 401, "AUTH_FAILED", "bad sub claim");
  });

  it("requires exp", async () => {
    const res = await authenticate(HS_AUTH, await hs256({ sub: "alice" }), ctx());
    expectFailure(res, 401, "AUTH_FAILED", "ticket missing exp");
  });

  it("refuses a non-numeric exp", async () => {
    const res = await authenticate(HS_AUTH, await hs256(claims({ exp: "soon" as unknown as number })), ctx());
    expectFailure(res, 401, "AUTH_FAILED");
  });

  describe("audience", () => {
    const auth: JwtAuth = { ...HS_AUTH, audience: "game" };

    it("admits the right aud (string or list)", async () => {
      expect((await authenticate(auth, await hs256(claims({ aud: "game" })), ctx())).ok).toBe(true);
      expect((await authenticate(auth, await hs256(claims({ aud: ["chat", "game"] })), ctx())).ok).toBe(true);
    });

    it("refuses a wrong aud", async () => {
      const res = await authenticate(auth, await hs256(claims({ aud: "chat" })), ctx());
      expectFailure(res, 401, "AUTH_FAILED", "ticket for another audience");
    });

    it("refuses a missing aud when the policy sets one", async () => {
      const res = await authenticate(auth, await hs256(claims()), ctx());
      expectFailure(res, 401, "AUTH_FAILED", "ticket missing aud");
    });

    it("ignores aud when the policy sets none", async () => {
      expect((await authenticate(HS_AUTH, await hs256(claims({ aud: "whatever" })), ctx())).ok).toBe(true);
    });
  });

  it("refuses alg none", async () => {
    for (const alg of ["none", "None", "NONE"]) {
      const token = unsecured({ alg, typ: "JWT" }, claims());
      expectFailure(await authenticate(HS_AUTH, token, ctx()), 401, "AUTH_FAILED");
    }
    // ... with a bogus signature segment too
    const token = unsecured({ alg: "none" }, claims(), "c2lnbmF0dXJl");
    expectFailure(await authenticate(HS_AUTH, token, ctx()), 401, "AUTH_FAILED");
  });

  it("refuses HS384 and HS512 even with the right secret", async () => {
    for (const alg of ["HS384", "HS512"]) {
      const res = await authenticate(HS_AUTH, await hs256(claims(), SECRET, alg), ctx());
      expectFailure(res, 401, "AUTH_FAILED", "ticket algorithm not accepted");
    }
  });

  it("refuses a header without alg, or with a non-string alg", async () => {
    const [, p, s] = (await hs256(claims())).split(".");
    for (const header of [{ typ: "JWT" }, { alg: 256 }, { alg: ["HS256"] }]) {
      const token = `${base64url.encode(JSON.stringify(header))}.${p}.${s}`;
      expectFailure(await authenticate(HS_AUTH, token, ctx()), 401, "AUTH_FAILED", "malformed ticket");
    }
  });

  it("refuses an RS256 token when only a secret is configured", async () => {
    const { privateKey } = await generateKeyPair("RS256");
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: "RS256" }).sign(privateKey);
    expectFailure(await authenticate(HS_AUTH, token, ctx()), 401, "AUTH_FAILED", "ticket algorithm not accepted");
  });

  it("is 401 (and does not throw) when the secret env var is missing or empty", async () => {
    const token = await hs256(claims());
    for (const e of [{}, { TEST_JWT_SECRET: "" }, { TEST_JWT_SECRET: 42 }]) {
      const res = await authenticate(HS_AUTH, token, ctx({ env: e as unknown as Env }));
      expectFailure(res, 401, "AUTH_FAILED", "ticket key not configured");
    }
    const other: JwtAuth = { ...HS_AUTH, secret_env: "NO_SUCH_SECRET" };
    expectFailure(await authenticate(other, token, ctx()), 401, "AUTH_FAILED", "ticket key not configured");
  });

  it("refuses a sub starting with @ (reserved for the gateway and the origin)", async () => {
    for (const sub of ["@origin", "@x", "@"]) {
      expectFailure(await authenticate(HS_AUTH, await hs256(claims({ sub })), ctx()), 401, "AUTH_FAILED", "reserved user id");
    }
    expect(await authenticate(HS_AUTH, await hs256(claims({ sub: "a@b" })), ctx())).toMatchObject({ ok: true, identity: { user: "a@b" } });
  });

  it("checks the tenant claim when present", async () => {
    expect((await authenticate(HS_AUTH, await hs256(claims({ tenant: "acme" })), ctx())).ok).toBe(true);
    for (const tenant of ["globex", "", null, 1, ["acme"]]) {
      const res = await authenticate(HS_AUTH, await hs256(claims({ tenant })), ctx());
      expectFailure(res, 401, "AUTH_FAILED", "ticket for another tenant");
    }
  });

  describe("rooms claim", () => {
    it("admits rooms the claim grants", async () => {
      const token = await hs256(claims({ rooms: ["lobby", "match:*"] }));
      for (const room of ["lobby", "match:1", "match:"]) {
        const res = await authenticate(HS_AUTH, token, ctx({ room }));
        expect(res).toMatchObject({ ok: true, identity: { user: "alice", rooms: ["lobby", "match:*"] } });
      }
      expect((await authenticate(HS_AUTH, await hs256(claims({ rooms: ["*"] })), ctx({ room: "any" }))).ok).toBe(true);
    });

    it("refuses other rooms with 403 NOT_ALLOWED", async () => {
      const token = await hs256(claims({ rooms: ["lobby", "match:*"] }));
      for (const room of ["lobby2", "match", "Match:1", "other"]) {
        const res = await authenticate(HS_AUTH, token, ctx({ room }));
        expectFailure(res, 403, "NOT_ALLOWED");
      }
      expectFailure(await authenticate(HS_AUTH, await hs256(claims({ rooms: [] })), ctx()), 403, "NOT_ALLOWED");
    });

    it("accepts the bounds", async () => {
      const many = Array.from({ length: MAX_ROOM_PATTERNS }, (_, i) => `r${i}`);
      many[MAX_ROOM_PATTERNS - 1] = "lobby";
      expect((await authenticate(HS_AUTH, await hs256(claims({ rooms: many })), ctx())).ok).toBe(true);
      const long = "l".repeat(MAX_ROOM_PATTERN_LENGTH);
      expect((await authenticate(HS_AUTH, await hs256(claims({ rooms: [long, "lobby"] })), ctx())).ok).toBe(true);
    });

    it.each([
      ["a string", "lobby"],
      ["null", null],
      ["an object", { lobby: true }],
      ["a list with a number", ["lobby", 1]],
      ["a list with null", [null]],
      ["too many patterns", Array.from({ length: MAX_ROOM_PATTERNS + 1 }, () => "lobby")],
      ["a too long pattern", ["lobby", "l".repeat(MAX_ROOM_PATTERN_LENGTH + 1)]],
    ])("refuses a rooms claim that is %s with 401", async (_what, rooms) => {
      const res = await authenticate(HS_AUTH, await hs256(claims({ rooms })), ctx());
      expectFailure(res, 401, "AUTH_FAILED", "bad rooms claim");
    });
  });

  it.each([
    ["empty", ""],
    ["one word", "hello"],
    ["dots only", ".."],
    ["three empty parts", "..."],
    ["a dev ticket", "dev:alice"],
    ["three junk parts", "a.b.c"],
    ["header not JSON", `${base64url.encode("not json")}.e30.c2ln`],
    ["header JSON but not an object", `${base64url.encode("[1,2]")}.e30.c2ln`],
    ["five parts (JWE shape)", "eyJhbGciOiJIUzI1NiJ9.a.b.c.d"],
    ["payload not JSON", `${base64url.encode('{"alg":"HS256"}')}.${base64url.encode("nope")}.c2ln`],
    ["unicode", "ü.ö.ä"],
    ["spaces", " . . "],
  ])("refuses a garbage ticket: %s", async (_what, ticket) => {
    expectFailure(await authenticate(HS_AUTH, ticket, ctx()), 401, "AUTH_FAILED");
  });

  it("refuses an HS256 token whose payload is not a JSON object", async () => {
    const token = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).sign(enc.encode(SECRET));
    const [h] = token.split(".");
    // Re-sign a non-object payload by hand with the right secret.
    const payload = base64url.encode("[1,2,3]");
    const key = await crypto.subtle.importKey("raw", enc.encode(SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(`${h}.${payload}`)));
    expectFailure(await authenticate(HS_AUTH, `${h}.${payload}.${base64url.encode(sig)}`, ctx()), 401, "AUTH_FAILED");
  });

  it("refuses over-long tickets without parsing them", async () => {
    expectFailure(await authenticate(HS_AUTH, "x".repeat(MAX_TICKET_LENGTH + 1), ctx()), 401, "AUTH_FAILED", "ticket too long");
    // Even a validly signed one.
    const big = await hs256(claims({ pad: "p".repeat(MAX_TICKET_LENGTH) }));
    expect(big.length).toBeGreaterThan(MAX_TICKET_LENGTH);
    expectFailure(await authenticate(HS_AUTH, big, ctx()), 401, "AUTH_FAILED", "ticket too long");
  });

  it("never echoes the ticket or the secret in msg", async () => {
    const token = await hs256(claims({ sub: "x".repeat(200) }));
    const res = await authenticate(HS_AUTH, token, ctx());
    expect(res.ok).toBe(false);
    if (!res.ok) {
      expect(res.msg).not.toContain(token);
      expect(res.msg).not.toContain("xxxx");
      expect(res.msg).not.toContain(SECRET);
    }
  });
});

// ---------------------------------------------------------------------------
// JWKS

type Alg = "RS256" | "ES256" | "EdDSA";
interface Pair {
  alg: Alg;
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function pair(alg: Alg, kid: string): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { alg, kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

async function sign(p: Pair, payload: JWTPayload = claims(), kid: string | null = p.kid): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader(kid === null ? { alg: p.alg } : { alg: p.alg, kid })
    .sign(p.privateKey);
}

let urlCounter = 0;
const freshUrl = () => `https://issuer.example/${++urlCounter}/.well-known/jwks.json`;

type FetchHandler = (url: string, init?: RequestInit) => Response | Promise<Response>;

/** Stub the global fetch (jose's createRemoteJWKSet calls it) with a handler. */
function stubFetch(handler: FetchHandler) {
  const mock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    return handler(url, init);
  });
  vi.stubGlobal("fetch", mock);
  return mock;
}

function serveJwks(keys: JWK[]) {
  return stubFetch(() => Response.json({ keys }));
}

function jwksAuth(url: string, over: Partial<JwtAuth> = {}): JwtAuth {
  return { mode: "jwt", secret_env: null, jwks_url: url, audience: null, ...over };
}

describe("jwt JWKS", () => {
  const pairs = {} as Record<Alg, Pair>;
  let rogue: Pair; // same kid as the RS256 key, different key material
  let stranger: Pair; // a kid the set does not have

  beforeAll(async () => {
    for (const alg of ["RS256", "ES256", "EdDSA"] as const) pairs[alg] = await pair(alg, `k-${alg}`);
    rogue = await pair("RS256", "k-RS256");
    stranger = await pair("RS256", "k-unknown");
  });

  const allKeys = () => Object.values(pairs).map((p) => p.jwk);

  it.each(["RS256", "ES256", "EdDSA"] as const)("verifies %s tokens against the key set", async (alg) => {
    const url = freshUrl();
    const fetchMock = serveJwks(allKeys());
    const exp = nowS() + 300;
    const res = await authenticate(jwksAuth(url), await sign(pairs[alg], claims({ sub: "bob", exp })), ctx());
    expect(res).toEqual({ ok: true, identity: { user: "bob", exp, rooms: null } });
    expect(fetchMock).toHaveBeenCalledTimes(1);
    expect(fetchMock.mock.calls[0]?.[0]).toBe(url);
  });

  it("verifies a kid-less token when one key fits", async () => {
    serveJwks([{ ...pairs.ES256.jwk, kid: undefined }]);
    expect((await authenticate(jwksAuth(freshUrl()), await sign(pairs.ES256, claims(), null), ctx())).ok).toBe(true);
  });

  it("tries each candidate for a kid-less token when several keys fit", async () => {
    const other = await pair("RS256", "x");
    const strip = (jwk: JWK): JWK => ({ ...jwk, kid: undefined });
    serveJwks([strip(other.jwk), strip(pairs.RS256.jwk)]);
    const url = freshUrl();
    expect((await authenticate(jwksAuth(url), await sign(pairs.RS256, claims(), null), ctx())).ok).toBe(true);
    // Signed by neither: bad signature.
    expectFailure(await authenticate(jwksAuth(url), await sign(stranger, claims(), null), ctx()), 401, "AUTH_FAILED", "bad signature");
    // Signed by one of them but expired: the claim error wins.
    const expired = await sign(pairs.RS256, claims({ exp: nowS() - 600 }), null);
    expectFailure(await authenticate(jwksAuth(url), expired, ctx()), 401, "AUTH_FAILED", "ticket expired");
  });

  it("caches the key set across requests (one fetch)", async () => {
    const url = freshUrl();
    const fetchMock = serveJwks(allKeys());
    for (const alg of ["RS256", "ES256", "EdDSA", "RS256"] as const) {
      expect((await authenticate(jwksAuth(url), await sign(pairs[alg]), ctx())).ok).toBe(true);
    }
    expect(fetchMock).toHaveBeenCalledTimes(1);
  });

  it("keeps at most JWKS_CACHE_MAX_ENTRIES key sets", async () => {
    serveJwks(allKeys());
    for (let i = 0; i < JWKS_CACHE_MAX_ENTRIES + 8; i++) {
      expect((await authenticate(jwksAuth(freshUrl()), await sign(pairs.ES256), ctx())).ok).toBe(true);
    }
    expect(_jwksCacheSize()).toBe(JWKS_CACHE_MAX_ENTRIES);
  });

  it("refuses a token signed by a key pair not in the set", async () => {
    serveJwks(allKeys());
    const url = freshUrl();
    // Same kid, different key material.
    expectFailure(await authenticate(jwksAuth(url), await sign(rogue), ctx()), 401, "AUTH_FAILED", "bad signature");
    // Unknown kid.
    expectFailure(await authenticate(jwksAuth(url), await sign(stranger), ctx()), 401, "AUTH_FAILED", "no key for ticket");
  });

  it("refuses an ES256 token claiming RS256's kid", async () => {
    serveJwks(allKeys());
    const token = await sign(pairs.ES256, claims(), "k-RS256");
    expectFailure(await authenticate(jwksAuth(freshUrl()), token, ctx()), 401, "AUTH_FAILED");
  });

  it("refuses an HS256 token against a JWKS-only config (algorithm confusion), without fetching", async () => {
    const fetchMock = serveJwks(allKeys());
    const auth = jwksAuth(freshUrl());
    // Signed with the tenant's real HS secret, and with the public RSA modulus as an HMAC key.
    const withSecret = await hs256(claims());
    const withPublicKey = await new SignJWT(claims())
      .setProtectedHeader({ alg: "HS256", kid: "k-RS256" })
      .sign(enc.encode(JSON.stringify(pairs.RS256.jwk)));
    for (const token of [withSecret, withPublicKey]) {
      expectFailure(await authenticate(auth, token, ctx()), 401, "AUTH_FAILED", "ticket algorithm not accepted");
    }
    expect(fetchMock).not.toHaveBeenCalled();
  });

  it("refuses algorithms outside RS256/ES256/EdDSA", async () => {
    serveJwks(allKeys());
    const { privateKey, publicKey } = await generateKeyPair("PS256", { extractable: true });
    serveJwks([{ ...(await exportJWK(publicKey)), kid: "ps", alg: "PS256" }]);
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: "PS256", kid: "ps" }).sign(privateKey);
    expectFailure(await authenticate(jwksAuth(freshUrl()), token, ctx()), 401, "AUTH_FAILED", "ticket algorithm not accepted");
    expectFailure(await authenticate(jwksAuth(freshUrl()), unsecured({ alg: "none" }, claims()), ctx()), 401, "AUTH_FAILED");
  });

  it("applies the claim checks to JWKS tokens too", async () => {
    serveJwks(allKeys());
    const auth = jwksAuth(freshUrl(), { audience: "game" });
    const ok = await sign(pairs.EdDSA, claims({ aud: "game", tenant: "acme", rooms: ["lob*"] }));
    expect(await authenticate(auth, ok, ctx())).toMatchObject({ ok: true, identity: { rooms: ["lob*"] } });
    expectFailure(await authenticate(auth, await sign(pairs.EdDSA, claims({ aud: "x" })), ctx()), 401, "AUTH_FAILED");
    expectFailure(await authenticate(auth, await sign(pairs.EdDSA, claims({ aud: "game", tenant: "globex" })), ctx()), 401, "AUTH_FAILED", "ticket for another tenant");
    expectFailure(await authenticate(auth, await sign(pairs.EdDSA, claims({ aud: "game", rooms: ["x"] })), ctx()), 403, "NOT_ALLOWED");
    expectFailure(await authenticate(auth, await sign(pairs.EdDSA, claims({ aud: "game", exp: nowS() - 100 })), ctx()), 401, "AUTH_FAILED", "ticket expired");
  });

  it("accepts both families when both a secret and a key set are configured", async () => {
    serveJwks(allKeys());
    const auth = jwksAuth(freshUrl(), { secret_env: "TEST_JWT_SECRET" });
    expect((await authenticate(auth, await hs256(claims()), ctx())).ok).toBe(true);
    expect((await authenticate(auth, await sign(pairs.RS256), ctx())).ok).toBe(true);
    expectFailure(await authenticate(auth, await hs256(claims(), SECRET, "HS512"), ctx()), 401, "AUTH_FAILED");
  });

  describe("key set unreachable: 503 ORIGIN_UNAVAILABLE, retry in 5 s", () => {
    const unavailable = async (handler: FetchHandler) => {
      stubFetch(handler);
      const res = await authenticate(jwksAuth(freshUrl()), await sign(pairs.RS256), ctx());
      expect(res).toEqual({
        ok: false,
        status: 503,
        code: "ORIGIN_UNAVAILABLE",
        msg: "ticket key set unavailable",
        retryAfter: 5,
      });
    };

    it("network error", () => unavailable(() => Promise.reject(new TypeError("network connection lost"))));
    it("non-200 answer", () => unavailable(() => new Response("nope", { status: 500 })));
    it("redirect", () => unavailable(() => new Response(null, { status: 302, headers: { location: "https://evil.example/" } })));
    it("body not JSON", () => unavailable(() => new Response("<html>", { status: 200 })));
    it("JSON but not a key set", () => unavailable(() => Response.json({ nope: true })));
    it("timeout", () =>
      unavailable(
        (_url, init) =>
          new Promise<Response>((_resolve, reject) => {
            const signal = init?.signal;
            signal?.addEventListener("abort", () => reject(signal.reason));
          }),
      ));

    it("recovers once the key set is reachable again", async () => {
      const url = freshUrl();
      let up = false;
      stubFetch(() => (up ? Response.json({ keys: allKeys() }) : new Response("down", { status: 503 })));
      const token = await sign(pairs.ES256);
      expectFailure(await authenticate(jwksAuth(url), token, ctx()), 503, "ORIGIN_UNAVAILABLE");
      up = true;
      expect((await authenticate(jwksAuth(url), token, ctx())).ok).toBe(true);
    });
  });
});

// ---------------------------------------------------------------------------
// Property: authenticate never throws and always answers a well-formed result.

function wellFormed(res: AuthResult, ticket: string): void {
  if (res.ok) {
    expect(Object.keys(res).sort()).toEqual(["identity", "ok"]);
    expect(USER_RE.test(res.identity.user)).toBe(true);
    expect(res.identity.exp === null || Number.isFinite(res.identity.exp)).toBe(true);
    expect(res.identity.rooms === null || Array.isArray(res.identity.rooms)).toBe(true);
    return;
  }
  const expected: Record<number, string> = { 401: "AUTH_FAILED", 403: "NOT_ALLOWED", 503: "ORIGIN_UNAVAILABLE" };
  expect(expected[res.status]).toBe(res.code);
  expect(typeof res.msg).toBe("string");
  expect(res.msg.length).toBeGreaterThan(0);
  expect(res.msg.length).toBeLessThanOrEqual(64);
  if (ticket.length >= 8) expect(res.msg).not.toContain(ticket);
  if (res.status === 503) expect(res.retryAfter).toBeGreaterThan(0);
  else expect(res.retryAfter).toBeUndefined();
}

describe("authenticate (property)", () => {
  const b64json = fc.jsonValue().map((v) => base64url.encode(JSON.stringify(v) ?? "null"));
  const header = fc
    .record(
      {
        alg: fc.oneof(fc.constantFrom("HS256", "RS256", "ES256", "EdDSA", "none", "HS512"), fc.jsonValue()),
        kid: fc.oneof(fc.constant("k-RS256"), fc.string()),
        b64: fc.boolean(),
        crit: fc.array(fc.string()),
      },
      { requiredKeys: [] },
    )
    .map((h) => base64url.encode(JSON.stringify(h)));
  const jwtish = fc
    .tuple(fc.oneof(header, b64json, fc.string()), fc.oneof(b64json, fc.string()), fc.oneof(fc.base64String(), fc.string()))
    .map((parts) => parts.join("."));
  const ticket = fc.oneof(
    fc.string(),
    fc.string({ unit: "binary" }),
    fc.string().map((s) => `dev:${s}`),
    jwtish,
    fc.string({ minLength: MAX_TICKET_LENGTH - 2, maxLength: MAX_TICKET_LENGTH + 2, unit: "grapheme-ascii" }),
  );
  const auths: CompiledAuth[] = [
    HS_AUTH,
    { mode: "jwt", secret_env: "TEST_JWT_SECRET", jwks_url: "https://issuer.example/prop/jwks.json", audience: "game" },
    { mode: "dev" },
  ];
  const envs = [testEnv, {} as unknown as Env];

  it("never throws, for arbitrary tickets, in jwt and dev modes", async () => {
    serveJwks([(await pair("RS256", "k-RS256")).jwk]);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...auths),
        ticket,
        fc.constantFrom(...envs),
        fc.constantFrom("lobby", "match:1"),
        async (auth, t, e, room) => {
          const res = await authenticate(auth, t, ctx({ env: e, room }));
          wellFormed(res, t);
        },
      ),
      { numRuns: 400 },
    );
  });
});
