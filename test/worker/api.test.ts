import { createExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeClientHot } from "../../src/protocol/hot.ts";
import { app } from "../../src/worker/app.ts";
import { MAX_FRAME_BODY_BYTES, MAX_JSON_BODY_BYTES } from "../../src/worker/api.ts";
import { connect, decodeOutbound, isSys, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const KEY = "test-api-key-0123456789";
const TENANT = "hooks";

function url(room: string, endpoint: string, tenant = TENANT): string {
  return `http://gw.test/v1/tenants/${tenant}/rooms/${encodeURIComponent(room)}/${endpoint}`;
}

interface CallOptions {
  method?: string;
  body?: BodyInit | object | null;
  key?: string | null;
  type?: string | null;
  headers?: Record<string, string>;
  tenant?: string;
}

async function call(room: string, endpoint: string, opts: CallOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key !== null) headers.Authorization = `Bearer ${opts.key ?? KEY}`;
  let body: BodyInit | null = null;
  if (opts.body !== undefined && opts.body !== null) {
    const raw = opts.body;
    const isBodyInit = typeof raw === "string" || raw instanceof Uint8Array || raw instanceof ArrayBuffer || raw instanceof ReadableStream;
    body = isBodyInit ? (raw as BodyInit) : JSON.stringify(raw);
  }
  if (opts.type !== null) headers["Content-Type"] = opts.type ?? (body instanceof Uint8Array ? "application/octet-stream" : "application/json");
  return exports.default.fetch(url(room, endpoint, opts.tenant), {
    method: opts.method ?? (endpoint === "presence" ? "GET" : "POST"),
    headers,
    body,
  });
}

async function expectError(res: Response, status: number, code: string): Promise<string> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { code: string; msg: string };
  expect(body.code).toBe(code);
  expect(typeof body.msg).toBe("string");
  return body.msg;
}

async function expectJson(res: Response, status: number): Promise<any> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  return JSON.parse(text);
}

const join = (user: string, room: string, sid?: string) =>
  connect({ tenant: TENANT, room, ticket: `dev:${user}`, ...(sid ? { sid } : {}) });

/** Text envelopes of a given svc that arrived meanwhile. */
async function quietOn(c: TestClient, svc: string, ms = 150) {
  return (await c.quiet(ms)).filter((m) => m.kind === "text" && m.json.svc === svc);
}

const ORIGIN_FROM = { user: "@origin", sid: "@origin" };

describe("POST …/messages", () => {
  it("svc sys is reserved for the gateway: 400, and nothing reaches the members", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    for (const type of ["kicked", "presence", "error"]) {
      const res = await call(room, "messages", { body: { svc: "sys", type, data: { reason: "forged" } } });
      expect(await expectError(res, 400, "BAD_REQUEST")).toMatch(/sys/);
    }
    expect((await a.quiet(100)).filter((m) => m.kind === "text" && m.json.svc === "sys")).toEqual([]);
  });

  it("delivers to every member with from @origin: 202 {delivered}", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    const b = await join("bob", room);
    const res = await call(room, "messages", { body: { svc: "notify", type: "news", data: { headline: "hi" } } });
    expect(await expectJson(res, 202)).toEqual({ delivered: 2 });
    for (const c of [a, b]) {
      const got = await c.nextOf("notify", "news");
      expect(got).toEqual({ v: 1, svc: "notify", type: "news", room, data: { headline: "hi" }, from: ORIGIN_FROM });
    }
  });

  it("without data the envelope has none", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    expect(await expectJson(await call(room, "messages", { body: { svc: "notify", type: "ping" } }), 202)).toEqual({ delivered: 1 });
    expect(await a.nextOf("notify", "ping")).toEqual({ v: 1, svc: "notify", type: "ping", room, from: ORIGIN_FROM });
  });

  it("to {user}: only that user's sockets", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    const b1 = await join("bob", room, "bob-1");
    const b2 = await join("bob", room, "bob-2");
    const res = await call(room, "messages", { body: { svc: "notify", type: "dm", data: 1, to: { user: "bob" } } });
    expect(await expectJson(res, 202)).toEqual({ delivered: 2 });
    expect((await b1.nextOf("notify", "dm")).data).toBe(1);
    expect((await b2.nextOf("notify", "dm")).data).toBe(1);
    expect(await quietOn(a, "notify")).toEqual([]);
  });

  it("to {sid}: only that session", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    const b1 = await join("bob", room, "bob-1");
    const b2 = await join("bob", room, "bob-2");
    const res = await call(room, "messages", { body: { svc: "notify", type: "dm", to: { sid: "bob-2" } } });
    expect(await expectJson(res, 202)).toEqual({ delivered: 1 });
    await b2.nextOf("notify", "dm");
    expect(await quietOn(a, "notify")).toEqual([]);
    expect(await quietOn(b1, "notify")).toEqual([]);
  });

  it("exclude: never those sids", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room, "alice-1");
    const b = await join("bob", room, "bob-1");
    const c = await join("carol", room, "carol-1");
    const res = await call(room, "messages", { body: { svc: "notify", type: "x", exclude: ["alice-1", "carol-1", "nobody"] } });
    expect(await expectJson(res, 202)).toEqual({ delivered: 1 });
    await b.nextOf("notify", "x");
    expect(await quietOn(a, "notify")).toEqual([]);
    expect(await quietOn(c, "notify")).toEqual([]);
  });

  it("to and exclude together", async () => {
    const room = uniqueRoom("api");
    const b1 = await join("bob", room, "bob-1");
    const b2 = await join("bob", room, "bob-2");
    const res = await call(room, "messages", { body: { svc: "notify", type: "x", to: { user: "bob" }, exclude: ["bob-1"] } });
    expect(await expectJson(res, 202)).toEqual({ delivered: 1 });
    await b2.nextOf("notify", "x");
    expect(await quietOn(b1, "notify")).toEqual([]);
  });

  it("an empty room: delivered 0", async () => {
    expect(await expectJson(await call(uniqueRoom("api"), "messages", { body: { svc: "notify", type: "x" } }), 202)).toEqual({
      delivered: 0,
    });
  });

  it("room names with : and @ are decoded from the path", async () => {
    const room = `match:${uniqueRoom("api")}@eu`;
    const a = await join("alice", room);
    expect(await expectJson(await call(room, "messages", { body: { svc: "notify", type: "x" } }), 202)).toEqual({ delivered: 1 });
    expect((await a.nextOf("notify", "x")).room).toBe(room);
  });

  it("accepts a JSON content type with parameters", async () => {
    const res = await call(uniqueRoom("api"), "messages", {
      body: { svc: "notify", type: "x" },
      type: "Application/JSON; charset=utf-8",
    });
    expect(res.status).toBe(202);
  });
});

describe("POST …/frames", () => {
  it("relays a hot frame to every member with sender slot 0: 202 {delivered}", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    const b = await join("bob", room);
    const frame = encodeClientHot(1, 7, new Uint8Array([9, 8, 7]), 42);
    expect(await expectJson(await call(room, "frames", { body: frame }), 202)).toEqual({ delivered: 2 });
    for (const c of [a, b]) {
      const got = decodeOutbound(await c.nextBinary());
      expect(got).not.toBeNull();
      expect(got!.sender).toBe(0);
      expect(got!.svc).toBe(1);
      expect(got!.op).toBe(7);
      expect(got!.seq).toBe(42);
      expect(got!.flags & 0x80).toBe(0x80);
      expect([...got!.payload]).toEqual([9, 8, 7]);
    }
  });

  it("a frame without seq, with an empty payload", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    expect(await expectJson(await call(room, "frames", { body: encodeClientHot(5, 0, new Uint8Array()) }), 202)).toEqual({
      delivered: 1,
    });
    const got = decodeOutbound(await a.nextBinary())!;
    expect(got).toMatchObject({ svc: 5, op: 0, seq: null, sender: 0 });
    expect(got.payload.byteLength).toBe(0);
  });

  it.each([
    ["empty", new Uint8Array(0), "BAD_REQUEST"],
    ["shorter than the header", new Uint8Array([1, 1, 1]), "BAD_REQUEST"],
    ["SEQ_PRESENT but 6 bytes", new Uint8Array([1, 1, 1, 1, 0, 0]), "BAD_REQUEST"],
    ["version 2", new Uint8Array([2, 1, 1, 0, 5]), "UNSUPPORTED_VERSION"],
    ["version 0", new Uint8Array([0, 1, 1, 0]), "UNSUPPORTED_VERSION"],
  ])("400 for a malformed frame: %s", async (_name, bytes, code) => {
    await expectError(await call(uniqueRoom("api"), "frames", { body: bytes }), 400, code);
  });

  it("413 over 64 KiB", async () => {
    const big = new Uint8Array(MAX_FRAME_BODY_BYTES + 1);
    big.set([1, 1, 1, 0]);
    await expectError(await call(uniqueRoom("api"), "frames", { body: big }), 413, "PAYLOAD_TOO_LARGE");
    const fits = new Uint8Array(MAX_FRAME_BODY_BYTES);
    fits.set([1, 1, 1, 0]);
    expect((await call(uniqueRoom("api"), "frames", { body: fits })).status).toBe(202);
  });

  it("415 for another content type", async () => {
    const frame = encodeClientHot(1, 1, new Uint8Array([1]));
    await expectError(await call(uniqueRoom("api"), "frames", { body: frame, type: "application/json" }), 415, "BAD_REQUEST");
    await expectError(await call(uniqueRoom("api"), "frames", { body: frame, type: null }), 415, "BAD_REQUEST");
  });
});

describe("GET …/presence", () => {
  it("lists the members: user, sid, slot, since", async () => {
    const room = uniqueRoom("api");
    const before = Date.now();
    await join("alice", room, "alice-tab");
    await join("bob", room, "bob-tab");
    const body = await expectJson(await call(room, "presence"), 200);
    expect(body.members).toHaveLength(2);
    expect(body.members[0]).toMatchObject({ user: "alice", sid: "alice-tab", slot: 1 });
    expect(body.members[1]).toMatchObject({ user: "bob", sid: "bob-tab", slot: 2 });
    for (const m of body.members) {
      expect(Object.keys(m).sort()).toEqual(["sid", "since", "slot", "user"]);
      expect(m.since).toBeGreaterThanOrEqual(before - 1000);
      expect(m.since).toBeLessThanOrEqual(Date.now() + 1000);
    }
  });

  it("an empty room: no members", async () => {
    expect(await expectJson(await call(uniqueRoom("api"), "presence"), 200)).toEqual({ members: [] });
  });

  it("a member who left is gone", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    const b = await join("bob", room);
    b.close();
    await a.nextOf("sys", "presence"); // join
    await a.next((e) => e.svc === "sys" && e.type === "presence" && e.data.event === "leave");
    const body = await expectJson(await call(room, "presence"), 200);
    expect(body.members.map((m: { user: string }) => m.user)).toEqual(["alice"]);
  });
});

describe("POST …/kick", () => {
  it("by user: sys.kicked {reason} then close 4003, 202 {kicked}", async () => {
    const room = uniqueRoom("api");
    const a = await join("alice", room);
    const b1 = await join("bob", room, "bob-1");
    const b2 = await join("bob", room, "bob-2");
    const res = await call(room, "kick", { body: { user: "bob", reason: "cheating" } });
    expect(await expectJson(res, 202)).toEqual({ kicked: 2 });
    for (const b of [b1, b2]) {
      expect((await b.nextOf("sys", "kicked")).data).toEqual({ reason: "cheating" });
      expect((await b.closed()).code).toBe(4003);
    }
    expect(a.closeEvent).toBeNull();
    const body = await expectJson(await call(room, "presence"), 200);
    expect(body.members.map((m: { user: string }) => m.user)).toEqual(["alice"]);
  });

  it("by sid, with the default reason", async () => {
    const room = uniqueRoom("api");
    const b1 = await join("bob", room, "bob-1");
    const b2 = await join("bob", room, "bob-2");
    expect(await expectJson(await call(room, "kick", { body: { sid: "bob-2" } }), 202)).toEqual({ kicked: 1 });
    expect((await b2.nextOf("sys", "kicked")).data).toEqual({ reason: "kicked" });
    expect((await b2.closed()).code).toBe(4003);
    await b1.expectQuiet(100, isSys("kicked"), "sys.kicked");
    expect(b1.closeEvent).toBeNull();
  });

  it("nobody matching: kicked 0", async () => {
    expect(await expectJson(await call(uniqueRoom("api"), "kick", { body: { user: "ghost" } }), 202)).toEqual({ kicked: 0 });
  });
});

describe("authorisation", () => {
  const room = "auth-room";
  const endpoints: Array<[string, CallOptions]> = [
    ["messages", { body: { svc: "notify", type: "x" } }],
    ["frames", { body: encodeClientHot(1, 1, new Uint8Array()) }],
    ["presence", {}],
    ["kick", { body: { user: "bob" } }],
  ];

  it.each(endpoints)("%s: 401 without a key", async (endpoint, opts) => {
    const res = await call(room, endpoint, { ...opts, key: null });
    await expectError(res, 401, "AUTH_FAILED");
    expect(res.headers.get("WWW-Authenticate")).toContain("Bearer");
  });

  it.each(endpoints)("%s: 401 with a wrong key", async (endpoint, opts) => {
    await expectError(await call(room, endpoint, { ...opts, key: "test-api-key-0123456788" }), 401, "AUTH_FAILED");
    await expectError(await call(room, endpoint, { ...opts, key: `${KEY}x` }), 401, "AUTH_FAILED");
    await expectError(await call(room, endpoint, { ...opts, key: KEY.slice(0, -1) }), 401, "AUTH_FAILED");
  });

  it.each([
    ["Basic scheme", `Basic ${btoa(`x:${KEY}`)}`],
    ["no scheme", KEY],
    ["empty bearer", "Bearer "],
    ["two tokens", `Bearer ${KEY} ${KEY}`],
    ["huge header", `Bearer ${"k".repeat(5000)}`],
  ])("401 for a malformed Authorization header: %s", async (_name, header) => {
    const res = await exports.default.fetch(url(room, "presence"), { headers: { Authorization: header } });
    await expectError(res, 401, "AUTH_FAILED");
  });

  it("the scheme is case-insensitive", async () => {
    const res = await exports.default.fetch(url(uniqueRoom("api"), "presence"), { headers: { Authorization: `bearer ${KEY}` } });
    expect(res.status).toBe(200);
  });

  it("401 for the key used on a tenant without an api block (another tenant's key)", async () => {
    for (const tenant of ["demo", "oauth", "jwt-t"]) {
      await expectError(await call(room, "presence", { tenant }), 401, "AUTH_FAILED");
      await expectError(await call(room, "messages", { tenant, body: { svc: "notify", type: "x" } }), 401, "AUTH_FAILED");
    }
  });

  it("401 when the key's env var is not set", async () => {
    const noKey = { ...env, TEST_API_KEY: undefined };
    const req = new Request(url(room, "presence"), { headers: { Authorization: `Bearer ${KEY}` } });
    await expectError(await app.fetch(req, noKey, createExecutionContext()), 401, "AUTH_FAILED");
    const empty = { ...env, TEST_API_KEY: "" };
    const req2 = new Request(url(room, "presence"), { headers: { Authorization: "Bearer " } });
    await expectError(await app.fetch(req2, empty, createExecutionContext()), 401, "AUTH_FAILED");
  });

  it("authentication comes before the body: a bad body without a key is 401", async () => {
    await expectError(await call(room, "messages", { key: null, body: "{nope" }), 401, "AUTH_FAILED");
    await expectError(await call(room, "messages", { key: "wrong", body: { svc: "BAD!" } }), 401, "AUTH_FAILED");
    await expectError(await call(room, "messages", { key: null, body: "x".repeat(MAX_JSON_BODY_BYTES + 10) }), 401, "AUTH_FAILED");
    await expectError(await call(room, "frames", { key: null, body: new Uint8Array([9]) }), 401, "AUTH_FAILED");
    await expectError(await call(room, "kick", { key: null, type: "text/plain", body: "x" }), 401, "AUTH_FAILED");
  });
});

describe("path checks", () => {
  it("404 UNKNOWN_TENANT, before authentication", async () => {
    await expectError(await call("r", "messages", { tenant: "nobody", body: { svc: "notify", type: "x" } }), 404, "UNKNOWN_TENANT");
    await expectError(await call("r", "presence", { tenant: "nobody", key: null }), 404, "UNKNOWN_TENANT");
  });

  it.each([
    ["upper case", "Hooks"],
    ["a symbol", "ho!oks"],
    ["too long", "a".repeat(65)],
    ["leading dash", "-hooks"],
  ])("400 BAD_REQUEST for a malformed tenant: %s", async (_name, tenant) => {
    await expectError(await call("r", "presence", { tenant: encodeURIComponent(tenant) }), 400, "BAD_REQUEST");
  });

  it.each([
    ["leading dash", "-bad"],
    ["a slash (encoded)", "a/b"],
    ["a space", "a b"],
    ["too long", "r".repeat(129)],
  ])("400 BAD_REQUEST for a malformed room: %s", async (_name, room) => {
    await expectError(await call(room, "presence"), 400, "BAD_REQUEST");
    await expectError(await call(room, "messages", { body: { svc: "notify", type: "x" } }), 400, "BAD_REQUEST");
  });

  it("405 with Allow for another method on a known endpoint", async () => {
    const res = await call(uniqueRoom("api"), "presence", { method: "POST", body: {} });
    expect(res.status).toBe(405);
    expect(res.headers.get("Allow")).toBe("GET");
    const res2 = await call(uniqueRoom("api"), "messages", { method: "GET" });
    expect(res2.status).toBe(405);
    expect(res2.headers.get("Allow")).toBe("POST");
    await res2.body?.cancel();
  });

  it("404 for an unknown endpoint", async () => {
    expect((await call(uniqueRoom("api"), "nothing", { body: {} })).status).toBe(404);
  });
});

describe("bodies", () => {
  const sid65 = "s".repeat(65);
  it.each<[string, unknown]>([
    ["missing svc", { type: "x" }],
    ["missing type", { svc: "notify" }],
    ["svc not matching SVC_RE", { svc: "Notify", type: "x" }],
    ["svc too long", { svc: "s".repeat(33), type: "x" }],
    ["type empty", { svc: "notify", type: "" }],
    ["svc a number", { svc: 1, type: "x" }],
    ["unknown field", { svc: "notify", type: "x", room: "r" }],
    ["to empty", { svc: "notify", type: "x", to: {} }],
    ["to with user and sid", { svc: "notify", type: "x", to: { user: "bob", sid: "s1" } }],
    ["to with an unknown key", { svc: "notify", type: "x", to: { room: "r" } }],
    ["to a string", { svc: "notify", type: "x", to: "bob" }],
    ["to.user empty", { svc: "notify", type: "x", to: { user: "" } }],
    ["to.user over 128 chars", { svc: "notify", type: "x", to: { user: "u".repeat(129) } }],
    ["to.user with a control char", { svc: "notify", type: "x", to: { user: "b\u0000ob" } }],
    ["to.sid malformed", { svc: "notify", type: "x", to: { sid: "has space" } }],
    ["to.sid too long", { svc: "notify", type: "x", to: { sid: sid65 } }],
    ["exclude not a list", { svc: "notify", type: "x", exclude: "s1" }],
    ["exclude with a bad sid", { svc: "notify", type: "x", exclude: ["ok", "not ok"] }],
    ["exclude over 1000", { svc: "notify", type: "x", exclude: Array.from({ length: 1001 }, (_, i) => `s${i}`) }],
    ["an array", [{ svc: "notify", type: "x" }]],
    ["null", null],
    ["a string", "notify"],
    ["a number", 42],
  ])("messages: 400 BAD_REQUEST for %s", async (_name, body) => {
    await expectError(await call(uniqueRoom("api"), "messages", { body: JSON.stringify(body) }), 400, "BAD_REQUEST");
  });

  it("messages and kick: 400 for a user id starting with @ (reserved: no client can have one)", async () => {
    for (const user of ["@origin", "@x"]) {
      const room = uniqueRoom("api");
      const msg = await expectError(await call(room, "messages", { body: { svc: "notify", type: "x", to: { user } } }), 400, "BAD_REQUEST");
      expect(msg).toBe("to.user: user ids starting with @ are reserved");
      expect(await expectError(await call(room, "kick", { body: { user } }), 400, "BAD_REQUEST")).toBe(
        "user: user ids starting with @ are reserved",
      );
    }
  });

  it("messages: exclude of exactly 1000 sids is fine", async () => {
    const exclude = Array.from({ length: 1000 }, (_, i) => `s${i}`);
    expect((await call(uniqueRoom("api"), "messages", { body: { svc: "notify", type: "x", exclude } })).status).toBe(202);
  });

  it.each<[string, unknown]>([
    ["empty", {}],
    ["user and sid", { user: "bob", sid: "s1" }],
    ["only a reason", { reason: "x" }],
    ["reason over 200 chars", { user: "bob", reason: "r".repeat(201) }],
    ["reason a number", { user: "bob", reason: 1 }],
    ["unknown field", { user: "bob", code: 4003 }],
    ["bad sid", { sid: "a b" }],
    ["bad user", { user: "" }],
    ["user null", { user: null }],
    ["an array", [{ user: "bob" }]],
  ])("kick: 400 BAD_REQUEST for %s", async (_name, body) => {
    await expectError(await call(uniqueRoom("api"), "kick", { body: JSON.stringify(body) }), 400, "BAD_REQUEST");
  });

  it("kick: a reason of exactly 200 chars is fine", async () => {
    expect((await call(uniqueRoom("api"), "kick", { body: { user: "bob", reason: "r".repeat(200) } })).status).toBe(202);
  });

  it.each(["messages", "kick"])("%s: 400 for invalid JSON, an empty body and invalid UTF-8", async (endpoint) => {
    const room = uniqueRoom("api");
    expect(await expectError(await call(room, endpoint, { body: "{nope" }), 400, "BAD_REQUEST")).toBe("invalid JSON");
    await expectError(await call(room, endpoint, { body: "" }), 400, "BAD_REQUEST");
    const badUtf8 = new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d]);
    await expectError(await call(room, endpoint, { body: badUtf8, type: "application/json" }), 400, "BAD_REQUEST");
  });

  // SPEC section 4: JSON nested deeper than 64 levels is BAD_REQUEST in every HTTP body, never INTERNAL.
  const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  it("messages: 400 for data nested 10,000 deep, and for a body one level too deep; 64 levels are fine", async () => {
    const room = uniqueRoom("api");
    const c = await join("alice", room);
    const body = (depth: number) => `{"svc":"notify","type":"deep","data":${nested(depth - 1)}}`; // the body's object is level 1
    for (const depth of [10_001, 65]) {
      const msg = await expectError(await call(room, "messages", { body: body(depth) }), 400, "BAD_REQUEST");
      expect(msg).toBe("JSON nested deeper than 64 levels");
    }
    expect(await quietOn(c, "notify")).toEqual([]);
    expect(await expectJson(await call(room, "messages", { body: body(64) }), 202)).toEqual({ delivered: 1 });
    expect((await c.nextOf("notify", "deep")).data).toEqual(JSON.parse(nested(63)));
    c.close();
  });

  it("kick: 400 for a body nested 10,000 deep", async () => {
    const msg = await expectError(await call(uniqueRoom("api"), "kick", { body: `{"user":"bob","reason":${nested(10_000)}}` }), 400, "BAD_REQUEST");
    expect(msg).toBe("JSON nested deeper than 64 levels");
  });

  it.each(["messages", "kick"])("%s: 415 for another content type", async (endpoint) => {
    const room = uniqueRoom("api");
    const body = JSON.stringify({ svc: "notify", type: "x", user: "bob" });
    await expectError(await call(room, endpoint, { body, type: "text/plain" }), 415, "BAD_REQUEST");
    await expectError(await call(room, endpoint, { body, type: null }), 415, "BAD_REQUEST");
    await expectError(await call(room, endpoint, { body, type: "application/x-www-form-urlencoded" }), 415, "BAD_REQUEST");
  });

  it("messages: 413 PAYLOAD_TOO_LARGE over 64 KiB, a body of exactly 64 KiB is read", async () => {
    const room = uniqueRoom("api");
    const pad = (n: number) => {
      const base = JSON.stringify({ svc: "notify", type: "x", data: "" });
      return JSON.stringify({ svc: "notify", type: "x", data: "d".repeat(n - base.length) });
    };
    expect(pad(MAX_JSON_BODY_BYTES).length).toBe(MAX_JSON_BODY_BYTES);
    expect((await call(room, "messages", { body: pad(MAX_JSON_BODY_BYTES) })).status).toBe(202);
    await expectError(await call(room, "messages", { body: pad(MAX_JSON_BODY_BYTES + 1) }), 413, "PAYLOAD_TOO_LARGE");
    await expectError(await call(room, "kick", { body: pad(MAX_JSON_BODY_BYTES + 1) }), 413, "PAYLOAD_TOO_LARGE");
  });

  it("413 for a streamed body (no Content-Length) that grows past 64 KiB", async () => {
    const chunk = new TextEncoder().encode("x".repeat(16 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 10) return controller.close();
        sent++;
        controller.enqueue(chunk);
      },
    });
    const res = await call(uniqueRoom("api"), "messages", { body: stream });
    await expectError(res, 413, "PAYLOAD_TOO_LARGE");
    expect(sent).toBeLessThan(10); // the rest was never read
  });

  it("413 when Content-Length says so, before reading; 400 for a malformed one", async () => {
    // A stream body keeps the declared length (a string body's may be recomputed),
    // and its pulls are counted: "before reading" means it was never pulled.
    const payload = new TextEncoder().encode(JSON.stringify({ svc: "notify", type: "x" }));
    const post = async (declared: string) => {
      const pulls = { n: 0 };
      const stream = new ReadableStream<Uint8Array>(
        {
          pull(c) {
            pulls.n += 1;
            c.enqueue(payload);
            c.close();
          },
        },
        { highWaterMark: 0 },
      );
      const req = new Request(url(uniqueRoom("api"), "messages"), {
        method: "POST",
        headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", "Content-Length": declared },
        body: stream,
      });
      expect(req.headers.get("Content-Length")).toBe(declared);
      return { res: await app.fetch(req, env, createExecutionContext()), pulls: pulls.n };
    };
    for (const declared of ["999999", String(MAX_JSON_BODY_BYTES + 1)]) {
      const { res, pulls } = await post(declared);
      await expectError(res, 413, "PAYLOAD_TOO_LARGE");
      expect(pulls, declared).toBe(0);
    }
    for (const declared of ["abc", "-1", "1e3", "0x10", "12 34"]) {
      const { res } = await post(declared);
      expect(await expectError(res, 400, "BAD_REQUEST"), declared).toMatch(/Content-Length/);
    }
  });
});

describe("properties", () => {
  const nearMessage = fc.record(
    {
      svc: fc.oneof(fc.constant("notify"), fc.string({ maxLength: 40 }), fc.jsonValue()),
      type: fc.oneof(fc.constant("x"), fc.string({ maxLength: 40 }), fc.jsonValue()),
      data: fc.jsonValue({ maxDepth: 3 }),
      to: fc.oneof(
        fc.record({ user: fc.oneof(fc.string({ maxLength: 140 }), fc.jsonValue()) }, { requiredKeys: [] }),
        fc.record({ sid: fc.oneof(fc.string({ maxLength: 70 }), fc.jsonValue()) }, { requiredKeys: [] }),
        fc.jsonValue(),
      ),
      exclude: fc.oneof(fc.array(fc.string({ maxLength: 70 }), { maxLength: 5 }), fc.jsonValue()),
      extra: fc.jsonValue(),
    },
    { requiredKeys: [] },
  );
  const nearKick = fc.record(
    {
      user: fc.oneof(fc.string({ maxLength: 140 }), fc.jsonValue()),
      sid: fc.oneof(fc.string({ maxLength: 70 }), fc.jsonValue()),
      reason: fc.oneof(fc.string({ maxLength: 220 }), fc.jsonValue()),
    },
    { requiredKeys: [] },
  );

  it("arbitrary JSON bodies never produce a 5xx (messages, kick)", async () => {
    const room = uniqueRoom("api");
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("messages", "kick"),
        fc.oneof(fc.jsonValue(), nearMessage, nearKick),
        async (endpoint, body) => {
          const res = await call(room, endpoint, { body: JSON.stringify(body) });
          const text = await res.text();
          expect([202, 400], text).toContain(res.status);
          if (res.status === 400) expect(JSON.parse(text).code).toBe("BAD_REQUEST");
        },
      ),
      { numRuns: 150 },
    );
  });

  it("arbitrary strings as JSON bodies never produce a 5xx", async () => {
    const room = uniqueRoom("api");
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("messages", "kick"), fc.string({ unit: "binary", maxLength: 200 }), async (endpoint, body) => {
        const res = await call(room, endpoint, { body });
        await res.body?.cancel();
        expect([202, 400]).toContain(res.status);
      }),
      { numRuns: 100 },
    );
  });

  it("arbitrary bytes as frames never produce a 5xx", async () => {
    const room = uniqueRoom("api");
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 64 }), async (bytes) => {
        const res = await call(room, "frames", { body: bytes });
        const body = (await res.json()) as { code?: string };
        expect([202, 400]).toContain(res.status);
        if (res.status === 400) expect(["BAD_REQUEST", "UNSUPPORTED_VERSION"]).toContain(body.code);
      }),
      { numRuns: 100 },
    );
  });
});
