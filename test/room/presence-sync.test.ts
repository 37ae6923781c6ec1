import { describe, expect, it } from "vitest";
import { MAX_SYNC_MEMBERS, presenceSync } from "../../src/room/deliver.ts";
import type { RoomApi } from "../../src/room/context.ts";
import type { Attachment } from "../../src/room/members.ts";

function fakeRoom(n: number): { room: RoomApi; sockets: WebSocket[] } {
  const map = new Map<WebSocket, Attachment>();
  const sockets: WebSocket[] = [];
  // Slots in reverse order, so the answer's ordering is the function's own.
  for (let i = n; i >= 1; i--) {
    const ws = {} as WebSocket;
    sockets.push(ws);
    map.set(ws, { user: `u${i}`, sid: `s${i}`, slot: i } as Attachment);
  }
  return { room: { members: { all: () => map } } as unknown as RoomApi, sockets };
}

describe("presence sync", () => {
  it("lists the others by slot, never the newcomer", () => {
    const { room, sockets } = fakeRoom(3);
    const newcomer = sockets[0]!; // slot 3
    expect(presenceSync(room, newcomer)).toEqual({
      event: "sync",
      members: [
        { user: "u1", sid: "s1", slot: 1 },
        { user: "u2", sid: "s2", slot: 2 },
      ],
    });
  });

  it(`stops at ${MAX_SYNC_MEMBERS} members and says truncated`, () => {
    const { room, sockets } = fakeRoom(MAX_SYNC_MEMBERS + 2);
    const sync = presenceSync(room, sockets[0]!);
    expect(sync.members.length).toBe(MAX_SYNC_MEMBERS);
    expect(sync.truncated).toBe(true);
    expect(presenceSync(fakeRoom(MAX_SYNC_MEMBERS + 1).room, fakeRoom(1).sockets[0]!).truncated).toBe(true);
    const exact = fakeRoom(MAX_SYNC_MEMBERS + 1);
    expect(presenceSync(exact.room, exact.sockets[0]!).truncated).toBeUndefined();
  });
});
