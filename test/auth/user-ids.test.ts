/**
 * Which user ids a ticket may name (SPEC v1.2 section 3, issue 19 item 6): ids
 * starting with `@` are reserved for the gateway and the origin, and so are ids
 * that only look different from one: leading or trailing white space, a C0 or
 * C1 control, a Unicode format character (bidi overrides, zero-width), a line
 * or paragraph separator, or an NFKC form starting with `@`. The same in every
 * auth mode (jwt, origin, dev): the check is in authenticate().
 */
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeEach, describe, expect, it } from "vitest";
import { authenticate, type AuthContext } from "../../src/auth/index.ts";
import { _resetOriginAuthCache, type OriginAuth } from "../../src/auth/origin.ts";
import type { Env } from "../../src/env.ts";
import type { CompiledAuth } from "../../src/policy/types.ts";
import { MAX_USER_LENGTH, userIdProblem } from "../../src/protocol/codes.ts";
import { script } from "../helpers/origin.ts";
import { uniqueRoom } from "../helpers/ws.ts";

const testEnv = env as unknown as Env;
const ctx = (room = "lobby", tenant = "acme"): AuthContext => ({ tenant, room, ip: "203.0.113.7", env: testEnv });
const DEV: CompiledAuth = { mode: "dev" };
const JWT: CompiledAuth = { mode: "jwt", secret_env: "TEST_JWT_SECRET", jwks_url: null, audience: null };
const ORIGIN: OriginAuth = { mode: "origin", origin_url: "http://origin.test/auth", secret_env: "TEST_WEBHOOK_SECRET", cache_s: 60 };
const SECRET = new TextEncoder().encode("test-secret-that-is-at-least-32-bytes-long!");
const jwt = (sub: string) =>
  new SignJWT({ sub, exp: Math.floor(Date.now() / 1000) + 600 }).setProtectedHeader({ alg: "HS256" }).sign(SECRET);

/** Lookalikes of `@origin` and other ids a ticket may not name. */
const REFUSED: Array<[string, string]> = [
  ["fullwidth commercial at (NFKC @)", "\uFF20origin"],
  ["small commercial at (NFKC @)", "\uFE6Borigin"],
  ["leading space", " @origin"],
  ["leading space, no @", " alice"],
  ["trailing space", "alice "],
  ["leading no-break space", "\u00A0alice"],
  ["trailing ideographic space", "alice\u3000"],
  ["leading tab", "\talice"],
  ["right-to-left override (renders as @origin)", "\u202Enigiro@"],
  ["left-to-right isolate", "ali\u2066ce"],
  ["zero-width space", "ali\u200Bce"],
  ["zero-width joiner", "ali\u200Dce"],
  ["byte order mark", "\uFEFFalice"],
  ["soft hyphen", "ali\u00ADce"],
  ["line separator", "ali\u2028ce"],
  ["paragraph separator", "alice\u2029x"],
  ["C1 control (NEL)", "ali\u0085ce"],
  ["C1 control (CSI)", "ali\u009Bce"],
  ["C0 control", "ali\u0007ce"],
  ["DEL", "ali\u007Fce"],
  ["lone surrogate", "ali\uD800ce"],
  ["a leading combining mark (draws over what comes before)", "\u0301alice"],
];
const ADMITTED = ["alice", "Zoë the 2nd", "user@example.com", "日本語", "a".repeat(MAX_USER_LENGTH), "a.b-c_d:e", "👍"];

describe("user ids (SPEC v1.2 section 3)", () => {
  beforeEach(() => _resetOriginAuthCache());

  it.each(REFUSED)("userIdProblem refuses %s", (_what, user) => {
    expect(userIdProblem(user)).not.toBeNull();
  });

  it.each(ADMITTED)("userIdProblem admits %j", (user) => {
    expect(userIdProblem(user)).toBeNull();
  });

  it("bounds the length: at most MAX_USER_LENGTH UTF-16 code units", () => {
    expect(MAX_USER_LENGTH).toBe(128);
    expect(userIdProblem("a".repeat(MAX_USER_LENGTH + 1))).not.toBeNull();
    expect(userIdProblem("")).not.toBeNull();
  });

  it.each(REFUSED)("dev: AUTH_FAILED for %s", async (_what, user) => {
    expect(await authenticate(DEV, `dev:${user}`, ctx())).toMatchObject({ ok: false, status: 401, code: "AUTH_FAILED" });
  });

  // A lone surrogate cannot be signed: the encoder turns it into U+FFFD.
  it.each(REFUSED.filter(([what]) => what !== "lone surrogate"))("jwt: AUTH_FAILED for a sub with %s", async (_what, user) => {
    expect(await authenticate(JWT, await jwt(user), ctx())).toMatchObject({ ok: false, status: 401, code: "AUTH_FAILED" });
  });

  it.each(REFUSED)("origin: AUTH_FAILED when the origin answers %s", async (_what, user) => {
    const room = uniqueRoom("uid");
    await script(room, [{ status: 200, body: { user } }]);
    expect(await authenticate(ORIGIN, "t-1", ctx(room, "oauth"))).toMatchObject({ ok: false, status: 401, code: "AUTH_FAILED" });
  });

  it("the lookalikes of @origin say `reserved user id`, as @origin does", async () => {
    for (const user of ["@origin", "\uFF20origin", " @origin", "\u202Enigiro@"]) {
      expect(await authenticate(DEV, `dev:${user}`, ctx())).toEqual({ ok: false, status: 401, code: "AUTH_FAILED", msg: "reserved user id" });
    }
  });

  it.each(ADMITTED)("every mode admits %j", async (user) => {
    expect(await authenticate(DEV, `dev:${user}`, ctx())).toMatchObject({ ok: true, identity: { user } });
    expect(await authenticate(JWT, await jwt(user), ctx())).toMatchObject({ ok: true, identity: { user } });
    const room = uniqueRoom("uid");
    await script(room, [{ status: 200, body: { user } }]);
    expect(await authenticate(ORIGIN, "t-1", ctx(room, "oauth"))).toMatchObject({ ok: true, identity: { user } });
  });
});
