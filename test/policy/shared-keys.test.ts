/**
 * A JWT is bound to one tenant (SPEC section 3, issue 19 item 8): two tenants
 * must not accept the same key unless each sets its own audience.
 *
 *  - At build time, the same `jwks_url` however it is spelled: scheme and host
 *    case, default port, a trailing dot on the host, duplicate or trailing
 *    slashes, percent-encoded unreserved characters, user info, query and
 *    fragment do not make another URL.
 *  - At run time, the same secret under two `secret_env` names: the Worker
 *    compares the values (hashed) once per isolate, refuses the tickets of the
 *    tenants concerned with 503 INTERNAL and /readyz says 503; other tenants
 *    keep working. The secret is never logged.
 *
 * Tenants `jwt-t` (secret_env TEST_JWT_SECRET, audience wsprism-test) and
 * `jwt-twin` (secret_env TEST_JWT_TWIN_SECRET, unset in the tests' env, no
 * audience), test-tenants.yaml.
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { authenticate, type AuthContext } from "../../src/auth/index.ts";
import { findSharedSecrets } from "../../src/auth/shared-secrets.ts";
import type { Env } from "../../src/env.ts";
import { compilePolicies } from "../../src/policy/compile.ts";
import { getTenant } from "../../src/policy/index.ts";
import type { CompiledAuth } from "../../src/policy/types.ts";
import { app } from "../../src/worker/app.ts";

const SECRET = "test-secret-that-is-at-least-32-bytes-long!";

describe("build: the same jwks_url, however it is spelled", () => {
  const two = (a: string, b: string) =>
    compilePolicies([
      {
        name: "policies/t.yaml",
        text: `version: 1\ntenants:\n  - id: acme\n    auth: { mode: jwt, jwks_url: "${a}" }\n  - id: globex\n    auth: { mode: jwt, jwks_url: "${b}" }\n`,
      },
    ]);
  const BASE = "https://id.example/jwks";

  it.each([
    ["a query", `${BASE}?x=1`],
    ["a fragment", `${BASE}#k`],
    ["a duplicate slash", "https://id.example//jwks"],
    ["duplicate slashes inside", "https://id.example/a//b///jwks"],
    ["a trailing slash", `${BASE}/`],
    ["upper-case scheme and host, default port", "HTTPS://ID.EXAMPLE:443/jwks"],
    ["a trailing dot on the host", "https://id.example./jwks"],
    ["user info", "https://u:p@id.example/jwks"],
    ["percent-encoded unreserved characters", "https://id.example/%6A%77ks"],
    ["dot segments", "https://id.example/x/../jwks"],
  ])("%s is the same URL", (_what, other) => {
    const base = other.includes("/a//b///") ? "https://id.example/a/b/jwks" : BASE;
    const r = two(base, other);
    expect(r.ok).toBe(false);
    // (User info is refused by the schema as well: both errors are reported.)
    if (!r.ok) expect(r.errors).toContainEqual(expect.stringContaining('tenant "globex" would accept tokens made for tenant "acme" (the same jwks_url'));
  });

  it.each([
    ["another path", "https://id.example/jwks2"],
    ["another host", "https://other.example/jwks"],
    ["another port", "https://id.example:8443/jwks"],
    ["another path case", "https://id.example/JWKS"],
  ])("%s is another URL", (_what, other) => {
    expect(two(BASE, other).ok).toBe(true);
  });
});

describe("run time: the same secret under two secret_env names", () => {
  const testEnv = env as unknown as Env;
  /** The tests' env, with jwt-twin's secret set to `value`. */
  const withTwin = (value: string) => ({ ...env, TEST_JWT_TWIN_SECRET: value }) as unknown as Env;
  const ctx = (tenant: string, e: Env): AuthContext => ({ tenant, room: "lobby", ip: "203.0.113.7", env: e });
  const token = (aud?: string) => {
    const t = new SignJWT({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 600 }).setProtectedHeader({ alg: "HS256" });
    return (aud ? t.setAudience(aud) : t).sign(new TextEncoder().encode(SECRET));
  };
  const jwtAuth = (secret_env: string, audience: string | null = null): CompiledAuth => ({ mode: "jwt", secret_env, jwks_url: null, audience });

  afterEach(() => vi.restoreAllMocks());

  it("finds the pairs whose secrets are equal and whose audiences do not keep them apart", async () => {
    const tenants = [
      { id: "a", auth: jwtAuth("A_SECRET") },
      { id: "b", auth: jwtAuth("B_SECRET") },
      { id: "c", auth: jwtAuth("C_SECRET", "c") },
      { id: "d", auth: jwtAuth("D_SECRET", "d") },
      { id: "e", auth: jwtAuth("E_SECRET") },
      { id: "o", auth: { mode: "origin", origin_url: "https://o.example/auth", secret_env: "O_SECRET", cache_s: 60 } as CompiledAuth },
      { id: "u", auth: jwtAuth("UNSET") },
    ];
    const e = { A_SECRET: "s1", B_SECRET: "s1", C_SECRET: "s2", D_SECRET: "s2", E_SECRET: "s3", O_SECRET: "s3" };
    expect(await findSharedSecrets(tenants, e)).toEqual([{ tenants: ["a", "b"], envs: ["A_SECRET", "B_SECRET"] }]);
    // Same audience: no help.
    tenants[3] = { id: "d", auth: jwtAuth("D_SECRET", "c") };
    expect(await findSharedSecrets(tenants, e)).toEqual([
      { tenants: ["a", "b"], envs: ["A_SECRET", "B_SECRET"] },
      { tenants: ["c", "d"], envs: ["C_SECRET", "D_SECRET"] },
    ]);
  });

  it("today's env: jwt-t admits, /readyz is ready", async () => {
    expect((await authenticate(getTenant("jwt-t")!.auth, await token("wsprism-test"), ctx("jwt-t", testEnv))).ok).toBe(true);
    const res = await app.fetch(new Request("http://gw.test/readyz"), env, createExecutionContext());
    expect(await res.text()).toBe("ready");
  });

  it("jwt-twin's secret set to jwt-t's: both refuse tickets with 503, /readyz says 503, others work, the secret is not logged", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const logs = vi.spyOn(console, "log").mockImplementation(() => {});
    const e = withTwin(SECRET);
    const refused = { ok: false, status: 503, code: "INTERNAL", msg: "tenant misconfigured" };
    expect(await authenticate(getTenant("jwt-t")!.auth, await token("wsprism-test"), ctx("jwt-t", e))).toMatchObject(refused);
    expect(await authenticate(getTenant("jwt-twin")!.auth, await token(), ctx("jwt-twin", e))).toMatchObject(refused);
    // A tenant not concerned keeps working.
    expect((await authenticate({ mode: "dev" }, "dev:alice", ctx("dev-t", e))).ok).toBe(true);

    const res = await app.fetch(new Request("http://gw.test/readyz"), e, createExecutionContext());
    expect(res.status).toBe(503);
    const body = await res.text();
    expect(body).toContain("jwt-t");
    expect(body).toContain("jwt-twin");
    const logged = [...errors.mock.calls, ...logs.mock.calls].map((c) => c.join(" ")).join("\n");
    expect(logged).toContain("TEST_JWT_TWIN_SECRET");
    expect(logged).not.toContain(SECRET);
    expect(body).not.toContain(SECRET);
  });

  it("another value under jwt-twin's name is fine", async () => {
    const e = withTwin("another-secret-that-is-at-least-32-bytes!!");
    expect((await authenticate(getTenant("jwt-t")!.auth, await token("wsprism-test"), ctx("jwt-t", e))).ok).toBe(true);
    expect(await (await app.fetch(new Request("http://gw.test/readyz"), e, createExecutionContext())).text()).toBe("ready");
  });
});
