import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { authenticate, type AuthContext, type AuthResult } from "../../src/auth/index.ts";
import {
  _originAuthCacheSize,
  _resetOriginAuthCache,
  ORIGIN_AUTH_CACHE_MAX_ENTRIES,
  ORIGIN_AUTH_TIMEOUT_MS,
  parseAnswer,
  TtlLru,
  verifyOriginTicket,
  type OriginAuth,
} from "../../src/auth/origin.ts";
import type { Env } from "../../src/env.ts";
import { originLog, script, type Step } from "../helpers/origin.ts";
import { connect, upgrade, uniqueRoom, wsUrl } from "../helpers/ws.ts";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const testEnv = env as unknown as Env;
const AUTH: OriginAuth = { mode: "origin", origin_url: "http://origin.test/auth", secret_env: "TEST_WEBHOOK_SECRET", cache_s: 60 };

function ctx(room: string, over: Partial<AuthContext> = {}): AuthContext {
  return { tenant: "oauth", room, ip: "203.0.113.7", env: testEnv, ...over };
}

function expectFailure(res: AuthResult, status: number, code: string, msg?: string | RegExp): void {
  expect(res.ok).toBe(false);
  if (res.ok) return;
  expect(res.status).toBe(status);
  expect(res.code).toBe(code);
  if (status === 503) expect(res.retryAfter).toBe(5);
  else expect(res.retryAfter).toBeUndefined();
  if (typeof msg === "string") expect(res.msg).toBe(msg);
  else if (msg) expect(res.msg).toMatch(msg);
}

const ok = (user: string, exp: number | null = null, rooms: string[] | null = null): AuthResult => ({
  ok: true,
  identity: { user, exp, rooms },
});

beforeEach(() => _resetOriginAuthCache());
afterEach(() => vi.unstubAllGlobals());

describe("origin auth: the call", () => {
  it("admits the user of a 200 answer", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice" } }]);
    expect(await authenticate(AUTH, "t-123", ctx(room))).toEqual(ok("alice"));
  });

  it("POSTs exactly {ticket, tenant, room, ip}, signed with Standard Webhooks", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice" } }]);
    await authenticate(AUTH, "t-sig", ctx(room));
    const [entry, ...rest] = await originLog(room);
    expect(rest).toEqual([]);
    expect(entry!.method).toBe("POST");
    expect(entry!.path).toBe("/auth");
    expect(entry!.headers["content-type"]).toBe("application/json");
    expect(entry!.headers["webhook-id"]).toMatch(/^msg_[0-9a-z]{26}$/);
    expect(JSON.parse(entry!.body)).toEqual({ ticket: "t-sig", tenant: "oauth", room, ip: "203.0.113.7" });
    expect(Object.keys(JSON.parse(entry!.body))).toEqual(["ticket", "tenant", "room", "ip"]);
    expect(new Webhook(SECRET).verify(entry!.body, entry!.headers)).toEqual({
      ticket: "t-sig",
      tenant: "oauth",
      room,
      ip: "203.0.113.7",
    });
    expect(() => new Webhook(`whsec_${btoa("some other secret value!")}`).verify(entry!.body, entry!.headers)).toThrow();
  });

  it("a new webhook-id per call", async () => {
    const room = uniqueRoom("oa");
    await script(room, [], { status: 403 });
    await authenticate(AUTH, "t-a", ctx(room));
    await authenticate(AUTH, "t-b", ctx(room));
    const ids = (await originLog(room)).map((e) => e.headers["webhook-id"]);
    expect(ids).toHaveLength(2);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it.each([400, 401, 403, 404, 410, 422])("401 AUTH_FAILED when the origin answers %i", async (status) => {
    const room = uniqueRoom("oa");
    await script(room, [{ status, body: { error: "nope" } }]);
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED", "ticket rejected by origin");
  });

  it.each([500, 502, 503, 504, 408, 429, 301, 302, 204, 201])(
    "503 ORIGIN_UNAVAILABLE (Retry-After 5) when the origin answers %i",
    async (status) => {
      const room = uniqueRoom("oa");
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (status === 301 || status === 302) headers.location = "http://origin.test/elsewhere";
      await script(room, [{ status, body: status === 204 ? undefined : { user: "alice" }, headers } as Step]);
      expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 503, "ORIGIN_UNAVAILABLE");
      // A redirect is not followed.
      expect((await originLog(room)).map((e) => e.path)).toEqual(["/auth"]);
    },
  );

  it("503 on a network error", async () => {
    const room = uniqueRoom("oa");
    const calls: string[] = [];
    vi.stubGlobal("fetch", async (input: RequestInfo | URL) => {
      calls.push(String(input instanceof Request ? input.url : input));
      throw new TypeError("Network connection lost.");
    });
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 503, "ORIGIN_UNAVAILABLE", "origin auth unreachable");
    expect(calls).toEqual(["http://origin.test/auth"]);
  });

  it("503 when the origin does not answer in time (injected timeout)", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice" }, delayMs: 1000 }]);
    const t0 = Date.now();
    expectFailure(await verifyOriginTicket(AUTH, "t-1", ctx(room), { timeoutMs: 100 }), 503, "ORIGIN_UNAVAILABLE", "origin auth timed out");
    expect(Date.now() - t0).toBeLessThan(900);
  });

  it(`503 after the real ${ORIGIN_AUTH_TIMEOUT_MS} ms timeout`, async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice" }, delayMs: ORIGIN_AUTH_TIMEOUT_MS + 1500 }]);
    const t0 = Date.now();
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 503, "ORIGIN_UNAVAILABLE", "origin auth timed out");
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(ORIGIN_AUTH_TIMEOUT_MS - 100);
    expect(took).toBeLessThan(ORIGIN_AUTH_TIMEOUT_MS + 1200);
  });

  it("503 without a request when the signing secret is not set", async () => {
    const room = uniqueRoom("oa");
    const auth = { ...AUTH, secret_env: "NO_SUCH_SECRET" };
    expectFailure(await authenticate(auth, "t-1", ctx(room)), 503, "ORIGIN_UNAVAILABLE", "origin auth is not configured");
    expect(await originLog(room)).toEqual([]);
  });

  it("503 without a request when the signing secret is not base64", async () => {
    const room = uniqueRoom("oa");
    const badEnv = { ...testEnv, BAD_SECRET: "whsec_***not base64***" } as unknown as Env;
    expectFailure(
      await authenticate({ ...AUTH, secret_env: "BAD_SECRET" }, "t-1", ctx(room, { env: badEnv })),
      503,
      "ORIGIN_UNAVAILABLE",
      "origin auth is not configured",
    );
    expect(await originLog(room)).toEqual([]);
  });

  it.each([
    ["empty user", { user: "" }],
    ["user with a control character", { user: "al\nice" }],
    ["user over 128 chars", { user: "u".repeat(129) }],
    ["user not a string", { user: 42 }],
    ["no user", { sub: "alice" }],
    ["an array", [{ user: "alice" }]],
    ["null", null],
    ["not JSON", "alice"],
    ["rooms not a list", { user: "alice", rooms: "lobby" }],
    ["rooms with a number", { user: "alice", rooms: ["a", 1] }],
    ["too many rooms", { user: "alice", rooms: Array.from({ length: 65 }, (_, i) => `r${i}`) }],
    ["exp a string", { user: "alice", exp: "tomorrow" }],
    ["exp negative", { user: "alice", exp: -1 }],
  ])("401 on a 200 with an invalid body: %s", async (_name, body) => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: typeof body === "string" ? body : JSON.stringify(body) }]);
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED", "invalid origin answer");
  });

  it.each(["@origin", "@x"])("401 when the origin answers the reserved user id %s", async (user) => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user } }], { status: 200, body: { user } });
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED", "reserved user id");
    // Through the upgrade route as well: refused before the upgrade.
    const res = await upgrade(wsUrl({ tenant: "oauth", room, ticket: "t-2" }));
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ code: "AUTH_FAILED", msg: "reserved user id" });
  });

  it("401 (fail closed, not cached) on a 200 nested deeper than 64 levels; 64 levels admit", async () => {
    const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    const room = uniqueRoom("oa");
    const answer = (depth: number) => `{"user":"alice","extra":${nested(depth - 1)}}`; // the object is level 1
    await script(room, [
      { status: 200, body: answer(8_000) },
      { status: 200, body: answer(65) },
      { status: 200, body: answer(64) },
    ]);
    expectFailure(await authenticate(AUTH, "t-deep", ctx(room)), 401, "AUTH_FAILED", "invalid origin answer");
    expectFailure(await authenticate(AUTH, "t-deep", ctx(room)), 401, "AUTH_FAILED", "invalid origin answer");
    expect(await authenticate(AUTH, "t-deep", ctx(room))).toEqual(ok("alice"));
    expect(await originLog(room)).toHaveLength(3);
  });

  it("401 on a 200 with an empty body", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200 }]);
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED");
  });

  it("reads at most 16 KiB of the answer", async () => {
    const room = uniqueRoom("oa");
    await script(room, [
      { status: 200, body: { user: "alice", pad: "x".repeat(17 * 1024) } },
      { status: 200, body: { user: "alice", pad: "x".repeat(15 * 1024) } },
    ]);
    expectFailure(await authenticate(AUTH, "t-big", ctx(room)), 401, "AUTH_FAILED", "origin answer too large");
    expect(await authenticate(AUTH, "t-big", ctx(room))).toEqual(ok("alice"));
  });

  it("ignores unknown fields of the answer", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice", name: "Alice", roles: ["admin"] } }]);
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice"));
  });
});

describe("origin auth: rooms and exp, like the JWT claims", () => {
  it("rooms: admits a matching room, 403 NOT_ALLOWED otherwise", async () => {
    const room = uniqueRoom("oa");
    await script(room, [], { status: 200, body: { user: "alice", rooms: [`${room.slice(0, 5)}*`] } });
    expect(await authenticate(AUTH, "t-rooms", ctx(room))).toEqual(ok("alice", null, [`${room.slice(0, 5)}*`]));

    const other = uniqueRoom("zz");
    await script(other, [], { status: 200, body: { user: "alice", rooms: ["oa-*"] } });
    expectFailure(await authenticate(AUTH, "t-rooms", ctx(other)), 403, "NOT_ALLOWED");
  });

  it("rooms: null means any room", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice", rooms: null } }]);
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice"));
  });

  it("exp: a future exp is carried into the identity", async () => {
    const room = uniqueRoom("oa");
    const exp = Math.floor(Date.now() / 1000) + 600;
    await script(room, [{ status: 200, body: { user: "alice", exp } }]);
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice", exp));
  });

  it("exp: an answer already expired is refused (401) and not cached", async () => {
    const room = uniqueRoom("oa");
    const exp = Math.floor(Date.now() / 1000) - 60;
    await script(room, [], { status: 200, body: { user: "alice", exp } });
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED", "ticket expired");
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED", "ticket expired");
    expect(await originLog(room)).toHaveLength(2);
  });

  it("exp: a cached admission is not used past its exp", async () => {
    const room = uniqueRoom("oa");
    const t0 = 2_000_000_000_000;
    const exp = t0 / 1000 + 10;
    await script(room, [], { status: 200, body: { user: "alice", exp } });
    expect(await authenticate(AUTH, "t-1", ctx(room, { now: t0 }))).toEqual(ok("alice", exp));
    expect(await authenticate(AUTH, "t-1", ctx(room, { now: t0 + 5_000 }))).toEqual(ok("alice", exp));
    expect(await originLog(room)).toHaveLength(1);
    // 10 s exp + 5 s tolerance: at +20 s the entry is gone and the (same) answer is now expired.
    expectFailure(await authenticate(AUTH, "t-1", ctx(room, { now: t0 + 20_000 })), 401, "AUTH_FAILED", "ticket expired");
    expect(await originLog(room)).toHaveLength(2);
  });
});

describe("origin auth: the cache", () => {
  it("a second authentication with the same ticket and room makes no request", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice" } }], { status: 500 });
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice"));
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice"));
    expect(await originLog(room)).toHaveLength(1);
  });

  it("caches 4xx refusals too", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 403 }], { status: 200, body: { user: "alice" } });
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED");
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 401, "AUTH_FAILED");
    expect(await originLog(room)).toHaveLength(1);
  });

  it.each([
    ["a 500", { status: 500 }],
    ["a 429", { status: 429 }],
    ["a 200 with an invalid body", { status: 200, body: { user: "" } }],
  ])("never caches %s", async (_name, step) => {
    const room = uniqueRoom("oa");
    await script(room, [step], { status: 200, body: { user: "alice" } });
    expect((await authenticate(AUTH, "t-1", ctx(room))).ok).toBe(false);
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice"));
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice"));
    expect(await originLog(room)).toHaveLength(2);
  });

  it("never caches a network error", async () => {
    const room = uniqueRoom("oa");
    await script(room, [], { status: 200, body: { user: "alice" } });
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("Network connection lost.");
    });
    expectFailure(await authenticate(AUTH, "t-1", ctx(room)), 503, "ORIGIN_UNAVAILABLE");
    vi.unstubAllGlobals();
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice"));
    expect(await originLog(room)).toHaveLength(1);
  });

  it("entries expire after cache_s (injected clock)", async () => {
    const room = uniqueRoom("oa");
    await script(room, [], { status: 200, body: { user: "alice" } });
    const t0 = 1_900_000_000_000;
    await authenticate(AUTH, "t-1", ctx(room, { now: t0 }));
    await authenticate(AUTH, "t-1", ctx(room, { now: t0 + 59_999 }));
    expect(await originLog(room)).toHaveLength(1);
    await authenticate(AUTH, "t-1", ctx(room, { now: t0 + 60_000 }));
    expect(await originLog(room)).toHaveLength(2);
    await authenticate(AUTH, "t-1", ctx(room, { now: t0 + 61_000 }));
    expect(await originLog(room)).toHaveLength(2);
  });

  it("a short cache_s", async () => {
    const room = uniqueRoom("oa");
    await script(room, [], { status: 200, body: { user: "alice" } });
    const auth = { ...AUTH, cache_s: 1 };
    const t0 = 1_900_000_000_000;
    await authenticate(auth, "t-1", ctx(room, { now: t0 }));
    await authenticate(auth, "t-1", ctx(room, { now: t0 + 900 }));
    await authenticate(auth, "t-1", ctx(room, { now: t0 + 1_000 }));
    expect(await originLog(room)).toHaveLength(2);
  });

  it("cache_s 0 disables the cache", async () => {
    const room = uniqueRoom("oa");
    await script(room, [], { status: 200, body: { user: "alice" } });
    const auth = { ...AUTH, cache_s: 0 };
    for (let i = 0; i < 3; i++) expect(await authenticate(auth, "t-1", ctx(room))).toEqual(ok("alice"));
    expect(await originLog(room)).toHaveLength(3);
    expect(_originAuthCacheSize()).toBe(0);
  });

  it("keys by tenant, room and ticket", async () => {
    const room = uniqueRoom("oa");
    const room2 = uniqueRoom("oa");
    await script(room, [], { status: 200, body: { user: "alice" } });
    await script(room2, [], { status: 200, body: { user: "alice" } });
    await authenticate(AUTH, "t-1", ctx(room));
    await authenticate(AUTH, "t-2", ctx(room)); // another ticket
    await authenticate(AUTH, "t-1", ctx(room, { tenant: "oauth2" })); // another tenant
    await authenticate(AUTH, "t-1", ctx(room2)); // another room
    await authenticate(AUTH, "t-1", ctx(room, { ip: "198.51.100.1" })); // the ip is not part of the key
    expect(await originLog(room)).toHaveLength(3);
    expect(await originLog(room2)).toHaveLength(1);
  });

  it("a caller mutating a result does not change the cached answer", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice", rooms: ["oa-*"] } }]);
    const first = await authenticate(AUTH, "t-1", ctx(room));
    if (first.ok) first.identity.rooms!.push("*");
    expect(await authenticate(AUTH, "t-1", ctx(room))).toEqual(ok("alice", null, ["oa-*"]));
  });

  it("is bounded", () => {
    expect(ORIGIN_AUTH_CACHE_MAX_ENTRIES).toBe(10_000);
  });
});

describe("TtlLru", () => {
  it("evicts the least recently used beyond its bound", () => {
    const lru = new TtlLru<number>(3);
    lru.set("a", 1, 100);
    lru.set("b", 2, 100);
    lru.set("c", 3, 100);
    expect(lru.get("a", 0)).toBe(1); // a is now the most recent
    lru.set("d", 4, 100);
    expect(lru.size).toBe(3);
    expect(lru.get("b", 0)).toBeUndefined();
    expect(lru.get("a", 0)).toBe(1);
    expect(lru.get("c", 0)).toBe(3);
    expect(lru.get("d", 0)).toBe(4);
  });

  it("expires entries at their time, by the caller's clock", () => {
    const lru = new TtlLru<string>(10);
    lru.set("k", "v", 1_000);
    expect(lru.get("k", 999)).toBe("v");
    expect(lru.get("k", 1_000)).toBeUndefined();
    expect(lru.size).toBe(0);
  });

  it("overwriting a key keeps one entry", () => {
    const lru = new TtlLru<string>(2);
    lru.set("k", "v1", 100);
    lru.set("k", "v2", 100);
    expect(lru.size).toBe(1);
    expect(lru.get("k", 0)).toBe("v2");
  });

  it("holds 10,000 entries and no more", () => {
    const lru = new TtlLru<number>(ORIGIN_AUTH_CACHE_MAX_ENTRIES);
    for (let i = 0; i < ORIGIN_AUTH_CACHE_MAX_ENTRIES + 50; i++) lru.set(`k${i}`, i, 1e15);
    expect(lru.size).toBe(ORIGIN_AUTH_CACHE_MAX_ENTRIES);
    expect(lru.get("k0", 0)).toBeUndefined();
    expect(lru.get(`k${ORIGIN_AUTH_CACHE_MAX_ENTRIES + 49}`, 0)).toBe(ORIGIN_AUTH_CACHE_MAX_ENTRIES + 49);
  });
});

describe("parseAnswer", () => {
  it("extracts user, rooms and exp", () => {
    expect(parseAnswer('{"user":"bob","rooms":["a","b*"],"exp":1900000000}')).toEqual({
      user: "bob",
      rooms: ["a", "b*"],
      exp: 1900000000,
    });
    expect(parseAnswer('{"user":"bob"}')).toEqual({ user: "bob", rooms: null, exp: null });
    expect(typeof parseAnswer('{"user":"bob","exp":1e400}')).toBe("string");
  });
});

describe("origin auth through the upgrade route", () => {
  it("admits: sys.authed names the origin's user", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice" } }]);
    const c = await connect({ tenant: "oauth", room, ticket: "t-123" }, { "CF-Connecting-IP": "198.51.100.4" });
    expect(c.authed.data).toMatchObject({ tenant: "oauth", user: "alice", room });
    const [entry] = await originLog(room);
    expect(new Webhook(SECRET).verify(entry!.body, entry!.headers)).toEqual({
      ticket: "t-123",
      tenant: "oauth",
      room,
      ip: "198.51.100.4",
    });
    // The ticket subprotocol works the same, and the cached answer serves it.
    const c2 = await connect(
      { tenant: "oauth", room },
      { "Sec-WebSocket-Protocol": "wsprism.v1, ticket.t-123" },
    );
    expect(c2.authed.data.user).toBe("alice");
    expect(await originLog(room)).toHaveLength(1);
    c.close();
    c2.close();
  });

  it("401 AUTH_FAILED when the origin refuses", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 403, body: { error: "no" } }]);
    const res = await upgrade(wsUrl({ tenant: "oauth", room, ticket: "t-bad" }));
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: "AUTH_FAILED" });
  });

  it("503 ORIGIN_UNAVAILABLE with Retry-After when the origin fails", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 502 }]);
    const res = await upgrade(wsUrl({ tenant: "oauth", room, ticket: "t-1" }));
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toBe("5");
    expect(await res.json()).toMatchObject({ code: "ORIGIN_UNAVAILABLE" });
  });

  it("403 NOT_ALLOWED when the answer's rooms do not grant the room", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "alice", rooms: ["elsewhere"] } }]);
    const res = await upgrade(wsUrl({ tenant: "oauth", room, ticket: "t-1" }));
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: "NOT_ALLOWED" });
  });
});
