/**
 * SPEC section 6, fair share (issue 11; v1.2, issue 19: per user and per
 * stream, see shares.test.ts): one user holds at most a quarter of a stream's
 * outbox; beyond that its messages get RESOURCE_EXHAUSTED (with their seq) while
 * other members' events and every open/close still get in.
 * The origin is down throughout, so everything stays in the outbox. The outbox's
 * bounds are lowered on the live object (40 events) to keep the test small.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { script, waitForLog } from "../helpers/origin.ts";
import { connect, isSys, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const join = (user: string, room: string) => connect({ tenant: "hooks", room, ticket: `dev:${user}` });
const chat = (seq: number) => ({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { n: seq } });
const stub = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`hooks/${room}`));
const queued = (room: string) => runInDurableObject(stub(room), (o: RoomObject) => o.bridge.outbox.size().events);

async function sendAll(c: TestClient, from: number, to: number): Promise<void> {
  for (let seq = from; seq <= to; seq++) c.send(chat(seq));
  await c.expectQuiet(150, isSys("error"), "sys.error"); // within its quarter: all accepted
}

describe("fair share of a stream's outbox", () => {
  it("a flooding user is capped at a quarter; others and open/close still get in", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 503 }); // the origin is down
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length >= 1);
    await runInDurableObject(stub(room), (o: RoomObject) => {
      o.bridge.outbox.limits = { events: 40, bytes: 1 << 20 };
    });
    const base = await queued(room); // alice's open
    for (let seq = 1; seq <= 11; seq++) a.send(chat(seq));
    const refused = await a.next((e) => e.type === "error" && e.data.code === "RESOURCE_EXHAUSTED");
    expect(refused.data.seq).toBe(11); // 10 = 40 / 4 were accepted
    expect(await queued(room)).toBe(base + 10);

    // Another member is not starved by alice.
    const b = await join("bob", room);
    b.send(chat(1));
    await b.expectQuiet(150, isSys("error"), "sys.error");

    // Fill the stream's 40 messages with two more members, then: messages refused, open/close still in.
    const c = await join("carol", room);
    const d = await join("dave", room);
    await sendAll(c, 1, 10);
    await sendAll(d, 1, 10);
    expect(await queued(room)).toBe(35); // 4 opens (a budget of their own) and 31 messages
    await sendAll(b, 2, 10); // bob's quarter fills the stream's 40
    expect(await queued(room)).toBe(44);
    const e = await join("erin", room); // its open event
    e.send(chat(1)); // within erin's quarter, but the stream is full
    expect((await e.next((x) => x.type === "error")).data).toMatchObject({ code: "RESOURCE_EXHAUSTED", seq: 1 });
    e.close();
    await e.closed();
    await new Promise((r) => setTimeout(r, 100));
    expect(await queued(room)).toBe(46); // open and close both got in
  });
});
