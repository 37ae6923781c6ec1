/**
 * SPEC section 10: "Works the same after the room object is replaced: the
 * room's SQLite storage is the source of truth for members, ghosts and the
 * log." A member drops, chat goes on, the object is replaced (aborted: its
 * sockets die with it; or evicted with its sockets hibernated), and the resume
 * still replays what was missed under the same epoch, then live continues
 * from the next offset. Tenant `rec` (`chat` logged).
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { resetRoom } from "../helpers/room.ts";
import { connect, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const join = (user: string, room: string, extra: Record<string, string> = {}) =>
  connect({ tenant: "rec", room, ticket: `dev:${user}`, ...extra });
const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`rec/${room}`));
const chat = (n: number) => ({ v: 1, svc: "chat", type: "say", data: { n } });
const chatTexts = (c: TestClient) => c.texts.filter((t) => JSON.parse(t).svc === "chat");
const MARK = Symbol.for("wsprism.test.instance");

describe("resume after the room object is replaced", () => {
  for (const how of ["abort", "evict"] as const) {
    it(`${how}: the log survives, the resume replays what was missed with the same epoch, live continues`, async () => {
      const room = uniqueRoom();
      const stub = stubFor(room);
      const alice = await join("alice", room, { sid: "alice-r" });
      const bob = await join("bob", room);
      const carol = await join("carol", room);
      const epoch = alice.authed.data.epoch as string;
      alice.close(1001); // a drop: a ghost
      await alice.closed();
      for (let n = 1; n <= 5; n++) bob.send(chat(n));
      for (let n = 1; n <= 5; n++) await carol.nextOf("chat", "say");
      const missed = chatTexts(carol);

      await runInDurableObject(stub, (o: RoomObject) => {
        (o as unknown as Record<symbol, boolean>)[MARK] = true;
      });
      if (how === "abort") {
        await resetRoom(stub);
        await carol.closed(); // the old instance's sockets went with it
      } else {
        await evictDurableObject(stub, { webSockets: "hibernate" });
      }
      // A new stub: one that reached the aborted instance stays broken.
      const fresh = await runInDurableObject(stubFor(room), (o: RoomObject) => (o as unknown as Record<symbol, boolean>)[MARK] === undefined);
      expect(fresh, "a new instance").toBe(true);

      const back = await join("alice", room, { sid: "alice-r", resume: `${epoch}.0` });
      expect(back.authed.data).toMatchObject({ epoch, off: 5, recovered: true, count: 5 });
      for (let n = 1; n <= 5; n++) await back.nextOf("chat", "say");
      expect(chatTexts(back)).toEqual(missed); // byte for byte, offsets 1..5
      expect(missed.map((t) => JSON.parse(t).off)).toEqual([1, 2, 3, 4, 5]);

      const sender = how === "abort" ? await join("bob", room) : bob; // bob's socket died with the aborted instance
      sender.send(chat(6));
      const live = await back.nextOf("chat", "say");
      expect(live).toMatchObject({ off: 6, data: { n: 6 } });
      expect((await back.quiet(100)).filter((m) => m.kind === "text" && m.json.svc === "chat")).toEqual([]);
    });
  }
});
