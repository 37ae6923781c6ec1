/**
 * SPEC v1.2 section 6: each stream of a room's outbox (one per service) is
 * bounded in events and in bytes;
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
const FULL = /this service's outbox is full/;

describe("a room's outbox bounds", () => {
  it("full by events: the next message gets RESOURCE_EXHAUSTED with its seq, nothing is dropped", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 503 }); // the origin is down
    const members = [await join("alice", room), await join("bob", room), await join("carol", room), await join("dave", room)];
    const e = await join("erin", room);
    await waitForLog(room, (l) => l.length >= 1);
    expect((await size(room)).events).toBe(5); // the five open events (a budget of their own)
    await setLimits(room, { events: 8, bytes: 1 << 20 }); // a quarter: 2 per user
    for (const client of members) {
      client.send(chat(1));
      client.send(chat(2));
    }
    for (const client of members) await client.expectQuiet(client === members[0] ? 150 : 0, isSys("error"), "sys.error");
    expect((await size(room)).events).toBe(13);
    e.send(chat(5)); // within erin's share, but the stream is full
    const err = await e.next((x) => x.type === "error");
    expect(err.data).toMatchObject({ code: "RESOURCE_EXHAUSTED", seq: 5 });
    expect(err.data.msg).toMatch(FULL);
    expect((await size(room)).events).toBe(13);
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
