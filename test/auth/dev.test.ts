import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { authenticate, type AuthContext } from "../../src/auth/index.ts";
import type { Env } from "../../src/env.ts";
import type { CompiledAuth } from "../../src/policy/types.ts";

const DEV: CompiledAuth = { mode: "dev" };
const testEnv = env as unknown as Env;

function ctx(over: Partial<AuthContext> = {}): AuthContext {
  return { tenant: "acme", room: "lobby", ip: "203.0.113.7", env: testEnv, ...over };
}

describe("dev tickets", () => {
  it("admits dev:<user> when WSPRISM_ALLOW_DEV_AUTH is 1", async () => {
    expect(testEnv.WSPRISM_ALLOW_DEV_AUTH).toBe("1");
    expect(await authenticate(DEV, "dev:alice", ctx())).toEqual({
      ok: true,
      identity: { user: "alice", exp: null, rooms: null },
    });
  });

  it("admits any room (no rooms restriction)", async () => {
    for (const room of ["lobby", "match:42", "x"]) {
      expect((await authenticate(DEV, "dev:bob", ctx({ room }))).ok).toBe(true);
    }
  });

  it.each([
    ["spaces and unicode", "dev:Zoë the 2nd", "Zoë the 2nd"],
    ["a colon", "dev:dev:x", "dev:x"],
    ["128 chars", `dev:${"u".repeat(128)}`, "u".repeat(128)],
  ])("keeps the user verbatim: %s", async (_what, ticket, user) => {
    expect(await authenticate(DEV, ticket, ctx())).toMatchObject({ ok: true, identity: { user } });
  });

  it.each([
    ["unset", {}],
    ["0", { WSPRISM_ALLOW_DEV_AUTH: "0" }],
    ["true", { WSPRISM_ALLOW_DEV_AUTH: "true" }],
    ["empty", { WSPRISM_ALLOW_DEV_AUTH: "" }],
    ["number 1", { WSPRISM_ALLOW_DEV_AUTH: 1 }],
    ["' 1'", { WSPRISM_ALLOW_DEV_AUTH: " 1" }],
  ])("refuses dev tickets when WSPRISM_ALLOW_DEV_AUTH is %s", async (_what, e) => {
    expect(await authenticate(DEV, "dev:alice", ctx({ env: e as unknown as Env }))).toEqual({
      ok: false,
      status: 401,
      code: "AUTH_FAILED",
      msg: "dev tickets are disabled",
    });
  });

  it.each([
    ["no prefix", "alice"],
    ["upper-case prefix", "DEV:alice"],
    ["prefix without colon", "devalice"],
    ["empty user", "dev:"],
    ["user too long", `dev:${"u".repeat(129)}`],
    ["control char in user", "dev:al\x00ice"],
    ["newline in user", "dev:alice\n"],
    ["leading space before prefix", " dev:alice"],
    ["empty ticket", ""],
    ["a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"],
  ])("refuses a malformed dev ticket: %s", async (_what, ticket) => {
    const res = await authenticate(DEV, ticket, ctx());
    expect(res).toMatchObject({ ok: false, status: 401, code: "AUTH_FAILED" });
  });

  it.each(["@origin", "@x", "@"])("refuses the reserved user id %s (ids starting with @)", async (user) => {
    expect(await authenticate(DEV, `dev:${user}`, ctx())).toEqual({
      ok: false,
      status: 401,
      code: "AUTH_FAILED",
      msg: "reserved user id",
    });
  });

  it("refuses over-long dev tickets", async () => {
    expect(await authenticate(DEV, `dev:${"u".repeat(9000)}`, ctx())).toMatchObject({
      ok: false,
      status: 401,
      msg: "ticket too long",
    });
  });
});
