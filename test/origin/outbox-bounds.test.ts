/**
 * SPEC v1.1 section 6: a room's outbox is bounded in events and in bytes;
 * beyond either, a message is refused with RESOURCE_EXHAUSTED (and its seq)
 * instead of dropped. The origin is down throughout, so everything stays in
 * the outbox; the bounds are lowered on the live object to keep the test small,
 * and the outbox is filled for real (no counter is overwritten).
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { script, waitForLog } from "../helpers/origin.ts";
import { connect, isSys, uniqueRoom } from "../helpers/ws.ts";

const join = (user: string, room: string) => connect({ tenant: "hooks", room, ticket: `dev:${user}` });
const chat = (seq: number, data: unknown = { n: seq }) => ({ v: 1, svc: "chat", type: "send", flags: 4, seq, data });
const stub = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`hooks/${room}`));
const size = (room: string) => runInDurableObject(stub(room), (o: RoomObject) => ({ ...o.bridge.outbox.size() }));
const setLimits = (room: string, limits: { events: number; bytes: number }) =>
  runInDurableObject(stub(room), (o: RoomObject) => {
    o.bridge.outbox.limits = limits;
  });
const FULL = /the room's outbox is full/;

describe("a room's outbox bounds", () => {
  it("full by events: the next message gets RESOURCE_EXHAUSTED with its seq, nothing is dropped", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 503 }); // the origin is down
    const [a, b, c] = [await join("alice", room), await join("bob", room), await join("carol", room)];
    await join("dave", room);
    await waitForLog(room, (l) => l.length >= 1);
    expect((await size(room)).events).toBe(4); // the four open events
    await setLimits(room, { events: 8, bytes: 1 << 20 }); // a quarter: 2 per session
    for (const [client, from] of [[a!, 1], [b!, 1]] as const) {
      client.send(chat(from));
      client.send(chat(from + 1));
    }
    await a!.expectQuiet(150, isSys("error"), "sys.error");
    await b!.expectQuiet(0, isSys("error"), "sys.error");
    expect((await size(room)).events).toBe(8);
    c!.send(chat(5)); // within carol's share, but the room is full
    const err = await c!.next((e) => e.type === "error");
    expect(err.data).toMatchObject({ code: "RESOURCE_EXHAUSTED", seq: 5 });
    expect(err.data.msg).toMatch(FULL);
    expect((await size(room)).events).toBe(8);
  });

  it("full by bytes: a message that would pass the byte bound is refused, a small one still gets in", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 503 });
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length >= 1);
    const before = await size(room); // alice's open
    await setLimits(room, { events: 1000, bytes: before.bytes + 2000 }); // far from the event bound
    a.send(chat(1, { text: "x".repeat(3000) }));
    const err = await a.next((e) => e.type === "error");
    expect(err.data).toMatchObject({ code: "RESOURCE_EXHAUSTED", seq: 1 });
    expect(err.data.msg).toMatch(FULL);
    expect(await size(room)).toEqual(before);
    a.send(chat(2, { text: "small" }));
    await a.expectQuiet(150, isSys("error"), "sys.error");
    expect((await size(room)).events).toBe(before.events + 1);
  });
});
