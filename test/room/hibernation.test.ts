import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { decodeOutbound, dev, uniqueRoom } from "../helpers/ws.ts";

const stubFor = (room: string, tenant = "lobby") => env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`));

describe("hibernation", () => {
  it("sockets keep working with the same identity and slot after the object is evicted", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room, { sid: "a-1" });
    const b = await dev("bob", room, { sid: "b-1" });
    await a.nextOf("sys", "presence");
    const stub = stubFor(room);
    const before = await runInDurableObject(stub, (o: RoomObject) => [...o.members.all().values()].map((m) => [m.user, m.sid, m.slot]).sort());
    expect(before).toEqual([
      ["alice", "a-1", 1],
      ["bob", "b-1", 2],
    ]);

    await evictDurableObject(stub, { webSockets: "hibernate" });

    // A fresh instance: its index is rebuilt from the runtime's sockets and attachments.
    a.send({ v: 1, svc: "chat", type: "send", data: "after" });
    const got = await b.nextOf("chat", "send");
    expect(got.from).toEqual({ user: "alice", sid: "a-1" });
    b.sendHot(1, 1, [5]);
    const raw = await a.nextBinary();
    expect(decodeOutbound(raw)!.sender).toBe(2);
    const after = await runInDurableObject(stub, (o: RoomObject) => [...o.members.all().values()].map((m) => [m.user, m.sid, m.slot]).sort());
    expect(after).toEqual(before);

    // Slots stay unique: a newcomer after the wake takes the next free one.
    const c = await dev("carol", room);
    expect(c.authed.data.slot).toBe(3);
    // And a freed slot is reused.
    a.close();
    await b.nextOf("sys", "presence"); // carol join
    expect((await b.nextOf("sys", "presence")).data).toMatchObject({ event: "leave", user: "alice", slot: 1 });
    const d = await dev("dave", room);
    expect(d.authed.data.slot).toBe(1);
  });

  it("heartbeats are answered by the runtime's auto-response", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const stub = stubFor(room);
    await evictDurableObject(stub, { webSockets: "hibernate" });
    a.ws.send("ping");
    const pong = await a.next((e) => e.type === "pong");
    expect(pong.type).toBe("pong");
  });

  it("presence leave is sent when a member closes after a wake", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    await a.nextOf("sys", "presence");
    await evictDurableObject(stubFor(room), { webSockets: "hibernate" });
    b.close();
    expect((await a.nextOf("sys", "presence")).data).toMatchObject({ event: "leave", user: "bob" });
    const count = await runInDurableObject(stubFor(room), (o: RoomObject) => o.members.size());
    expect(count).toBe(1);
  });
});
