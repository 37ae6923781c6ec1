import { env, exports } from "cloudflare:workers";
import { createExecutionContext } from "cloudflare:test";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { app } from "../../src/worker/app.ts";
import { connect, dev, TestClient, uniqueRoom, upgrade, wsUrl } from "../helpers/ws.ts";

const ORIGIN = "https://app.example.com";
const secret = new TextEncoder().encode(env.TEST_JWT_SECRET);

async function jwt(claims: Record<string, unknown>, opts: { exp?: number | null; aud?: string | null } = {}) {
  let b = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt();
  if (opts.exp !== null) b = b.setExpirationTime(opts.exp ?? Math.floor(Date.now() / 1000) + 600);
  if (opts.aud !== null) b = b.setAudience(opts.aud ?? "wsprism-test");
  return b.sign(secret);
}

async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { code: string; msg: string };
  expect(body.code).toBe(code);
  expect(typeof body.msg).toBe("string");
  return body;
}

describe("GET /v1/ws rejections (SPEC section 2)", () => {
  it("426 UPGRADE_REQUIRED without an upgrade", async () => {
    await expectError(await exports.default.fetch(wsUrl({ tenant: "demo", room: "a", ticket: "dev:x" })), 426, "UPGRADE_REQUIRED");
  });

  it.each([
    ["missing tenant", { room: "a", ticket: "dev:x" }],
    ["malformed tenant", { tenant: "Demo!", room: "a", ticket: "dev:x" }],
    ["tenant too long", { tenant: "a".repeat(65), room: "a", ticket: "dev:x" }],
    ["missing room", { tenant: "demo", ticket: "dev:x" }],
    ["malformed room", { tenant: "demo", room: "-bad", ticket: "dev:x" }],
    ["room with a slash", { tenant: "demo", room: "a/b", ticket: "dev:x" }],
    ["room too long", { tenant: "demo", room: "r".repeat(129), ticket: "dev:x" }],
    ["malformed sid", { tenant: "demo", room: "a", ticket: "dev:x", sid: "has space" }],
    ["sid too long", { tenant: "demo", room: "a", ticket: "dev:x", sid: "s".repeat(65) }],
  ])("400 BAD_REQUEST: %s", async (_n, params) => {
    await expectError(await upgrade(wsUrl(params)), 400, "BAD_REQUEST");
  });

  it("400 BAD_REQUEST when a parameter is repeated", async () => {
    await expectError(await upgrade("http://gw.test/v1/ws?tenant=demo&tenant=demo&room=a&ticket=dev:x"), 400, "BAD_REQUEST");
  });

  it("400 UNKNOWN_TENANT", async () => {
    await expectError(await upgrade(wsUrl({ tenant: "nobody", room: "a", ticket: "dev:x" })), 400, "UNKNOWN_TENANT");
  });

  it("401 AUTH_FAILED: missing, malformed and dev tickets when dev auth is off", async () => {
    await expectError(await upgrade(wsUrl({ tenant: "demo", room: "a" })), 401, "AUTH_FAILED");
    await expectError(await upgrade(wsUrl({ tenant: "demo", room: "a", ticket: "alice" })), 401, "AUTH_FAILED");
    await expectError(await upgrade(wsUrl({ tenant: "demo", room: "a", ticket: "dev:" })), 401, "AUTH_FAILED");
    const noDev = { ...env, WSPRISM_ALLOW_DEV_AUTH: undefined };
    const req = new Request(wsUrl({ tenant: "demo", room: "a", ticket: "dev:alice" }), { headers: { Upgrade: "websocket" } });
    await expectError(await app.fetch(req, noDev, createExecutionContext()), 401, "AUTH_FAILED");
    const req0 = new Request(wsUrl({ tenant: "demo", room: "a", ticket: "dev:alice" }), { headers: { Upgrade: "websocket" } });
    await expectError(await app.fetch(req0, { ...env, WSPRISM_ALLOW_DEV_AUTH: "0" }, createExecutionContext()), 401, "AUTH_FAILED");
  });

  it("403 NOT_ALLOWED when Origin is missing or not in allowed_origins", async () => {
    const ticket = await jwt({ sub: "alice" });
    const url = wsUrl({ tenant: "jwt-t", room: uniqueRoom(), ticket });
    await expectError(await upgrade(url), 403, "NOT_ALLOWED");
    await expectError(await upgrade(url, { Origin: "https://evil.example" }), 403, "NOT_ALLOWED");
    await expectError(await upgrade(url, { Origin: "https://app.example.com.evil.example" }), 403, "NOT_ALLOWED");
    const ok = await upgrade(url, { Origin: ORIGIN });
    expect(ok.status).toBe(101);
    ok.webSocket!.accept();
    ok.webSocket!.close();
  });

  it("401 AUTH_FAILED for expired, wrongly signed, audience-less and other-tenant JWTs", async () => {
    const room = uniqueRoom();
    const bad = [
      await jwt({ sub: "alice" }, { exp: Math.floor(Date.now() / 1000) - 60 }),
      await new SignJWT({ sub: "alice" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("10m").setAudience("wsprism-test").sign(new TextEncoder().encode("another-secret-of-sufficient-length!!")),
      await jwt({ sub: "alice" }, { aud: null }),
      await jwt({ sub: "alice", tenant: "demo" }),
      await jwt({}),
      "dev:alice",
      "x".repeat(9000),
    ];
    for (const ticket of bad) {
      await expectError(await upgrade(wsUrl({ tenant: "jwt-t", room, ticket }), { Origin: ORIGIN }), 401, "AUTH_FAILED");
    }
  });

  it("401 AUTH_FAILED before the upgrade for user ids starting with @ (reserved: @origin), in every mode", async () => {
    const room = uniqueRoom();
    for (const user of ["@origin", "@x", "@"]) {
      const dev = await expectError(await upgrade(wsUrl({ tenant: "lobby", room, ticket: `dev:${user}` })), 401, "AUTH_FAILED");
      expect(dev.msg).toBe("reserved user id");
      const ticket = await jwt({ sub: user });
      const viaJwt = await expectError(await upgrade(wsUrl({ tenant: "jwt-t", room, ticket }), { Origin: ORIGIN }), 401, "AUTH_FAILED");
      expect(viaJwt.msg).toBe("reserved user id");
    }
    // An @ elsewhere in the id is an ordinary character.
    const mail = await dev("alice@example.com", room);
    expect(mail.authed.data.user).toBe("alice@example.com");
    mail.close();
  });

  it("403 NOT_ALLOWED when the rooms claim does not grant the room", async () => {
    const ticket = await jwt({ sub: "alice", rooms: ["match:*", "lobby"] });
    await expectError(await upgrade(wsUrl({ tenant: "jwt-t", room: "other", ticket }), { Origin: ORIGIN }), 403, "NOT_ALLOWED");
    const ok = await connect({ tenant: "jwt-t", room: `match:${uniqueRoom()}`, ticket }, { Origin: ORIGIN });
    expect(ok.authed.data.user).toBe("alice");
    ok.close();
  });

  it("503 RESOURCE_EXHAUSTED with Retry-After when the room has max_users_per_room users", async () => {
    const room = uniqueRoom();
    const clients: TestClient[] = [];
    for (const u of ["u1", "u2", "u3"]) {
      clients.push(await connect({ tenant: "jwt-t", room, ticket: await jwt({ sub: u }) }, { Origin: ORIGIN }));
    }
    const res = await upgrade(wsUrl({ tenant: "jwt-t", room, ticket: await jwt({ sub: "u4" }) }), { Origin: ORIGIN });
    await expectError(res, 503, "RESOURCE_EXHAUSTED");
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(0);
    // Another session of a user already in the room does not add a user.
    const again = await connect({ tenant: "jwt-t", room, ticket: await jwt({ sub: "u1" }) }, { Origin: ORIGIN });
    expect(again.authed.data.user).toBe("u1");
    // Capacity frees when a user leaves.
    clients[2]!.close();
    await clients[2]!.closed();
    await clients[0]!.nextOf("sys", "presence"); // u1's second session joined
    await clients[0]!.nextOf("sys", "presence"); // u3 left
    const u4 = await connect({ tenant: "jwt-t", room, ticket: await jwt({ sub: "u4" }) }, { Origin: ORIGIN });
    expect(u4.authed.data.user).toBe("u4");
  });
});

describe("GET /v1/ws success", () => {
  it("the ticket as a subprotocol: answered with wsprism.v1", async () => {
    const ticket = await jwt({ sub: "alice" });
    const c = await connect(
      { tenant: "jwt-t", room: uniqueRoom() },
      { Origin: ORIGIN, "Sec-WebSocket-Protocol": `wsprism.v1, ticket.${ticket}` },
    );
    expect(c.res.headers.get("Sec-WebSocket-Protocol")).toBe("wsprism.v1");
    expect(c.authed.data).toMatchObject({ tenant: "jwt-t", user: "alice" });
  });

  it("400 when the ticket subprotocol comes without wsprism.v1", async () => {
    const res = await upgrade(wsUrl({ tenant: "demo", room: "a" }), { "Sec-WebSocket-Protocol": "ticket.dev:alice" });
    await expectError(res, 400, "BAD_REQUEST");
  });

  it("no subprotocol header in the answer when none was offered", async () => {
    const c = await dev("alice", uniqueRoom());
    expect(c.res.headers.get("Sec-WebSocket-Protocol")).toBeNull();
  });

  it("the room object never trusts client headers: a forged identity header is ignored", async () => {
    const forged = JSON.stringify({ tenant: "demo", room: "x", user: "mallory", sid: "s", exp: null, trace: "t", protocol: false });
    const c = await connect({ tenant: "demo", room: uniqueRoom(), ticket: "dev:alice" }, { "x-wsprism-connect": forged });
    expect(c.authed.data.user).toBe("alice");
  });

  it("a client-chosen sid is kept; a second connection with it replaces the first (4004)", async () => {
    const room = uniqueRoom();
    const first = await dev("alice", room, { sid: "tab-1" });
    expect(first.authed.data.sid).toBe("tab-1");
    const second = await dev("alice", room, { sid: "tab-1" });
    expect((await first.nextOf("sys", "kicked")).data.reason).toBe("session replaced");
    expect((await first.closed()).code).toBe(4004);
    expect(second.authed.data.slot).toBe(first.authed.data.slot);
    // Another user cannot take over the sid.
    await expectError(await upgrade(wsUrl({ tenant: "lobby", room, ticket: "dev:mallory", sid: "tab-1" })), 400, "BAD_REQUEST");
  });
});

describe("health", () => {
  it("/healthz is ok and /readyz is ready", async () => {
    const h = await exports.default.fetch("http://gw.test/healthz");
    expect(h.status).toBe(200);
    expect(await h.text()).toBe("ok");
    const r = await exports.default.fetch("http://gw.test/readyz");
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("ready");
  });

  it("unknown routes are JSON 404s", async () => {
    const res = await exports.default.fetch("http://gw.test/nope");
    expect(res.status).toBe(404);
    expect(((await res.json()) as { code: string }).code).toBe("BAD_REQUEST");
  });
});
