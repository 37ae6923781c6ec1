/**
 * Every request the gateway makes to an origin names itself (issue 19 item 9):
 * `User-Agent: wsprism-edge/<version of package.json>` on webhook POSTs and on
 * origin auth calls, so origins can tell the gateway's calls apart in their logs
 * and firewalls.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import pkg from "../../package.json";
import { authenticate } from "../../src/auth/index.ts";
import { _resetOriginAuthCache, type OriginAuth } from "../../src/auth/origin.ts";
import type { Env } from "../../src/env.ts";
import { originLog, script, waitForLog } from "../helpers/origin.ts";
import { connect, uniqueRoom } from "../helpers/ws.ts";

const UA = `wsprism-edge/${pkg.version}`;
const AUTH: OriginAuth = { mode: "origin", origin_url: "http://origin.test/auth", secret_env: "TEST_WEBHOOK_SECRET", cache_s: 60 };

beforeEach(() => _resetOriginAuthCache());

describe("User-Agent on the gateway's calls to origins", () => {
  it("webhook POSTs carry wsprism-edge/<version>", async () => {
    const room = uniqueRoom("ua");
    const c = await connect({ tenant: "hooks", room, ticket: "dev:alice" });
    const log = await waitForLog(room, (l) => l.some((e) => e.path === "/hooks/chat"));
    expect(log.filter((e) => e.path === "/hooks/chat").map((e) => e.headers["user-agent"])).toEqual(
      expect.arrayContaining([UA]),
    );
    for (const e of log) expect(e.headers["user-agent"]).toBe(UA);
    c.close();
  });

  it("origin auth calls carry wsprism-edge/<version>", async () => {
    const room = uniqueRoom("ua");
    await script(room, [{ status: 200, body: { user: "alice" } }]);
    const res = await authenticate(AUTH, "t-ua", { tenant: "oauth", room, ip: "203.0.113.7", env: env as unknown as Env });
    expect(res.ok).toBe(true);
    const [entry] = await originLog(room);
    expect(entry!.path).toBe("/auth");
    expect(entry!.headers["user-agent"]).toBe(UA);
  });
});
