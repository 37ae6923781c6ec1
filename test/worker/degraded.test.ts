/**
 * The gateway when something it depends on does not answer: /readyz says 503
 * when the room objects do not answer, and an upgrade is refused with 503
 * RESOURCE_EXHAUSTED (Retry-After) when the tenant's session directory is
 * unreachable (SPEC section 2), instead of admitting without governance.
 * The Worker's app runs here with an env whose namespace fails on purpose.
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { app } from "../../src/worker/app.ts";
import { wsUrl } from "../helpers/ws.ts";

/** A namespace whose stubs fail every call (as an unreachable object would), or answer `value`. */
function failingNamespace<T extends object>(real: T, answer?: () => Promise<unknown>): T {
  const stub = new Proxy(
    {},
    { get: (_t, prop) => (prop === "then" ? undefined : () => (answer ? answer() : Promise.reject(new Error("object unreachable")))) },
  );
  return new Proxy(real, { get: (target, prop) => (prop === "get" ? () => stub : (Reflect.get(target, prop) as Function).bind(target)) });
}

const run = (req: Request, e: typeof env) => app.fetch(req, e, createExecutionContext());

describe("/readyz", () => {
  it("503 when the room object does not answer, or answers something else; 200 when it does", async () => {
    const down = await run(new Request("http://gw.test/readyz"), { ...env, ROOMS: failingNamespace(env.ROOMS) });
    expect(down.status).toBe(503);
    expect(await down.text()).toBe("room object did not answer");
    const odd = await run(new Request("http://gw.test/readyz"), { ...env, ROOMS: failingNamespace(env.ROOMS, async () => "pang") });
    expect(odd.status).toBe(503);
    const up = await run(new Request("http://gw.test/readyz"), env);
    expect(up.status).toBe(200);
    expect(await up.text()).toBe("ready");
  });
});

describe("an unreachable session directory", () => {
  it("refuses the upgrade with 503 RESOURCE_EXHAUSTED and Retry-After; nothing reaches the room", async () => {
    const req = new Request(wsUrl({ tenant: "pair", room: "dir-down", ticket: "dev:alice" }), {
      headers: { Upgrade: "websocket", "CF-Connecting-IP": "198.19.200.1" },
    });
    let roomCalls = 0;
    const rooms = new Proxy(env.ROOMS, {
      get: (target, prop) => {
        if (prop === "get") roomCalls++;
        return (Reflect.get(target, prop) as Function).bind(target);
      },
    });
    const res = await run(req, { ...env, ROOMS: rooms, DIRECTORY: failingNamespace(env.DIRECTORY) });
    expect(roomCalls).toBe(0);
    expect(res.status).toBe(503);
    expect(res.webSocket).toBeNull();
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(await res.json()).toEqual({ code: "RESOURCE_EXHAUSTED", msg: "session directory unavailable" });
  });
});
