/** The room knows its tenant and name from its id (`idFromName("<tenant>/<room>")`), with nothing in storage. */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { uniqueRoom } from "../helpers/ws.ts";

describe("room meta", () => {
  it("comes from the object's name before any session joined, and nothing is written for it", async () => {
    const room = uniqueRoom();
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`hooks/${room}`));
    const seen = await runInDurableObject(stub, (o: RoomObject, state: DurableObjectState) => ({
      meta: o.meta(),
      stored: state.storage.kv.get("meta") ?? null,
    }));
    expect(seen).toEqual({ meta: { tenant: "hooks", room }, stored: null });
  });
});
