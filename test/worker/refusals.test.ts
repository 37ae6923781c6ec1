/**
 * SPEC v1.1 section 2: browsers cannot read a refused upgrade, so a client that
 * offered `wsprism.v1` gets the permanent refusals (400, 401, 403, 409) on an
 * accepted socket: one `sys.error {code,msg}`, then close 4000 + status with the
 * code as the reason. No room object is touched. 426, 429 and 503 stay HTTP.
 * v1.2: the gateway ends such a socket within 5 s even if the client never
 * answers the close.
 */
import { describe, expect, it } from "vitest";
import { RoomObject } from "../../src/room/room.ts";
import { connect, TestClient, uniqueRoom, upgrade, wsUrl } from "../helpers/ws.ts";

const V1 = { "Sec-WebSocket-Protocol": "wsprism.v1" };

async function refusedOnSocket(url: string, headers: Record<string, string>, close: number, code: string): Promise<void> {
  const before = RoomObject.constructed;
  const res = await upgrade(url, { ...V1, ...headers });
  expect(res.status).toBe(101);
  expect(res.headers.get("Sec-WebSocket-Protocol")).toBe("wsprism.v1");
  res.webSocket!.accept();
  const c = new TestClient(res.webSocket!, res);
  const err = await c.nextOf("sys", "error");
  expect(err.data.code).toBe(code);
  expect(typeof err.data.msg).toBe("string");
  const closed = await c.closed();
  expect(closed).toEqual({ code: close, reason: code });
  expect(RoomObject.constructed).toBe(before); // no room object was woken or created
}

describe("permanent refusals on a socket, for clients that offered wsprism.v1", () => {
  it("401 AUTH_FAILED → sys.error then close 4401", async () => {
    await refusedOnSocket(wsUrl({ tenant: "demo", room: uniqueRoom(), ticket: "nonsense" }), {}, 4401, "AUTH_FAILED");
    await refusedOnSocket(wsUrl({ tenant: "demo", room: uniqueRoom(), ticket: "dev:@origin" }), {}, 4401, "AUTH_FAILED");
  });

  it("400 BAD_REQUEST and UNKNOWN_TENANT → close 4400", async () => {
    await refusedOnSocket(wsUrl({ tenant: "no-such-tenant", room: "r", ticket: "dev:a" }), {}, 4400, "UNKNOWN_TENANT");
    await refusedOnSocket(wsUrl({ tenant: "demo", room: "bad room!", ticket: "dev:a" }), {}, 4400, "BAD_REQUEST");
  });

  it("400 for a sid another user holds → close 4400, and the holder is untouched", async () => {
    const room = uniqueRoom();
    const sid = `held-${room}`;
    const holder = await connect({ tenant: "ident", room, ticket: `dev:holder-${room}`, sid });
    await refusedOnSocket(wsUrl({ tenant: "ident", room: uniqueRoom(), ticket: `dev:thief-${room}`, sid }), {}, 4400, "BAD_REQUEST");
    expect(holder.closeEvent).toBeNull();
    holder.close();
  });

  it("403 NOT_ALLOWED (Origin) → close 4403", async () => {
    await refusedOnSocket(wsUrl({ tenant: "jwt-t", room: uniqueRoom(), ticket: "x" }), { Origin: "https://evil.example" }, 4403, "NOT_ALLOWED");
  });

  it("409 TOO_MANY_SESSIONS → close 4409", async () => {
    const user = `p${Date.now().toString(36)}`;
    const room = uniqueRoom();
    const held = [await connect({ tenant: "pair", room, ticket: `dev:${user}` }), await connect({ tenant: "pair", room, ticket: `dev:${user}` })];
    await refusedOnSocket(wsUrl({ tenant: "pair", room, ticket: `dev:${user}` }), {}, 4409, "TOO_MANY_SESSIONS");
    for (const c of held) c.close();
  });

  it("the ticket in the subprotocol works the same way", async () => {
    await refusedOnSocket(wsUrl({ tenant: "demo", room: uniqueRoom() }), { "Sec-WebSocket-Protocol": "wsprism.v1, ticket.dev:@x" }, 4401, "AUTH_FAILED");
  });

  it("without wsprism.v1 the refusal stays plain HTTP; 426 and 503 stay HTTP either way", async () => {
    const plain = await upgrade(wsUrl({ tenant: "demo", room: uniqueRoom(), ticket: "nonsense" }));
    expect(plain.status).toBe(401);
    expect(((await plain.json()) as { code: string }).code).toBe("AUTH_FAILED");
    const { exports } = await import("cloudflare:workers");
    const noUpgrade = await exports.default.fetch(wsUrl({ tenant: "demo", room: "r", ticket: "dev:a" }), { headers: V1 });
    expect(noUpgrade.status).toBe(426);
    // 503: the `ident` room holds 2 users at most.
    const room = uniqueRoom();
    const a = await connect({ tenant: "ident", room, ticket: `dev:a-${room}` });
    const b = await connect({ tenant: "ident", room, ticket: `dev:b-${room}` });
    const full = await upgrade(wsUrl({ tenant: "ident", room, ticket: `dev:c-${room}` }), V1);
    expect(full.status).toBe(503);
    expect(full.headers.get("Retry-After")).not.toBeNull();
    a.close();
    b.close();
  });

  it("v1.2: a client that never answers the close finds its socket ended within 5 s", async () => {
    // A workerd-internal client answers a close as soon as it reads it, so this one never reads:
    // it never answers. Left alone, the refusal (error, close) would still be waiting for it.
    const before = RoomObject.constructed;
    const res = await upgrade(wsUrl({ tenant: "no-such-tenant", room: "r", ticket: "dev:a" }), V1);
    expect(res.status).toBe(101);
    await new Promise((r) => setTimeout(r, 5_000));
    const ws = res.webSocket!;
    const frames: unknown[] = [];
    ws.addEventListener("message", (e) => frames.push(e.data));
    const c = new TestClient(ws, res);
    ws.accept();
    expect(await c.closed(500)).toMatchObject({ code: 1006 }); // the gateway dropped its end: gone, not still open
    expect(frames).toEqual([]);
    expect(RoomObject.constructed).toBe(before);
  });
});
