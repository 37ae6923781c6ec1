/**
 * Slow consumers (issue 9, finding 8): what the runtime lets the room observe of
 * a member that does not read, and that such a member never stalls the others.
 * docs/operations.md ("Slow consumers") explains the bound this leaves.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { dev, upgrade, uniqueRoom, wsUrl } from "../helpers/ws.ts";

const stub = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`lobby/${room}`));

describe("slow consumers", () => {
  it("workerd exposes no bufferedAmount on a room's sockets (if this fails, add a guard: see docs/operations.md)", async () => {
    const room = uniqueRoom("buffered");
    await dev("alice", room);
    const seen = await runInDurableObject(stub(room), (o: RoomObject) => {
      const [ws] = o.roomState.getWebSockets();
      return { present: "bufferedAmount" in ws!, type: typeof (ws as unknown as { bufferedAmount?: unknown }).bufferedAmount };
    });
    expect(seen).toEqual({ present: false, type: "undefined" });
  });

  it("a member that never reads does not stall the room: sends never block, the others get every frame", async () => {
    const room = uniqueRoom("sloth");
    // Upgraded but never accepted: nothing is ever read from this socket.
    const sloth = await upgrade(wsUrl({ tenant: "lobby", room, ticket: "dev:sloth" }));
    expect(sloth.status).toBe(101);
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    const frames = 100; // 6 MB of relays queued for the sloth
    for (let i = 0; i < frames; i++) a.sendHot(1, 1, new Uint8Array(60_000).fill(i & 0xff));
    for (let i = 0; i < frames; i++) expect((await b.nextBinary(5000))[6]).toBe(i & 0xff);
    const members = await runInDurableObject(stub(room), (o: RoomObject) => o.members.size());
    expect(members).toBe(3);
  });
});
