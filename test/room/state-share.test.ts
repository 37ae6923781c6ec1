/**
 * A sender's share of the room's `state` budget (SPEC v1.2 section 5, issue 19
 * item 3): one sender keeps at most a quarter of `limits.max_state_bytes`, so a
 * member that floods cannot take the whole budget and leave the others' small
 * states refused. Counted like the room budget: each kept state is its frame as
 * sent plus KEY_OVERHEAD_BYTES; a replacement counts only its growth.
 *
 * Tenants `state-bound` / `state-bound-silent` (test-tenants.yaml): 200 KiB per
 * room, so 51,200 bytes per sender.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { decodeOutbound } from "../../src/protocol/hot.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { decodeBatch, KEY_OVERHEAD_BYTES } from "../../src/room/state.ts";
import { connect, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const TENANT = "state-bound";
const SILENT = "state-bound-silent";
const MAX_STATE_BYTES = 204_800;
const SHARE = MAX_STATE_BYTES / 4;

const join = (user: string, room: string, tenant = TENANT) => connect({ tenant, room, ticket: `dev:${user}` });
const stub = (room: string, tenant = TENANT) => env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`));
const payload = (size: number, first: number) => new Uint8Array(size).fill(first);
/** What a kept state costs: its frame as sent (6 header bytes, 10 with a seq) plus the bookkeeping. */
const cost = (size: number, seq = false) => size + (seq ? 10 : 6) + KEY_OVERHEAD_BYTES;
const bytes = (room: string, tenant = TENANT) => runInDurableObject(stub(room, tenant), (o: RoomObject) => o.state.bytes());

/** Read batch frames until `count` states arrived: "sender:op" -> payload length and first byte. */
async function states(c: TestClient, count: number): Promise<Map<string, { len: number; value: number }>> {
  const out = new Map<string, { len: number; value: number }>();
  while (out.size < count) {
    const inner = decodeBatch(await c.nextBinary(3000));
    if (!inner) throw new Error("not a batch frame");
    for (const f of inner) {
      const d = decodeOutbound(f)!;
      out.set(`${d.sender}:${d.op}`, { len: d.payload.byteLength, value: d.payload[0] ?? -1 });
    }
  }
  return out;
}

async function errorsWithin(c: TestClient, ms = 300) {
  return (await c.quiet(ms)).flatMap((m) => (m.kind === "text" && m.json.type === "error" ? [m.json.data] : []));
}

/**
 * The attack of issue 19: one member fills every byte of the room budget with
 * ever smaller states (64 keys are plenty), as far as the gateway lets it.
 */
function fillTheRoom(a: TestClient): void {
  const sizes = [60_000, 60_000, 60_000, 20_000, 4000, 300, 0, 0, 0, 0];
  sizes.forEach((size, op) => a.sendHot(3, op, payload(size, op)));
}

describe("state storage: a quarter of max_state_bytes per sender", () => {
  it("a member flooding the room cannot get a later member's 11-byte state refused", async () => {
    const room = uniqueRoom("share");
    const a = await join("mallory", room);
    const b = await join("bob", room);
    fillTheRoom(a);
    expect((await errorsWithin(a)).every((e) => e.code === "RESOURCE_EXHAUSTED")).toBe(true);
    expect(await bytes(room)).toBeLessThanOrEqual(SHARE);

    b.sendHot(3, 1, payload(11, 7), 1);
    expect(await errorsWithin(b)).toEqual([]);
    const c = await join("carol", room);
    const kept = await states(c, 2);
    expect(kept.get(`${b.authed.data.slot}:1`)).toEqual({ len: 11, value: 7 });
  });

  it("one user with several sids keeps a quarter in all (found by retrying the attack live: 8 sids filled the room)", async () => {
    const room = uniqueRoom("share-user");
    const sids: TestClient[] = [];
    for (let i = 0; i < 4; i++) sids.push(await connect({ tenant: TENANT, room, ticket: "dev:mallory", sid: `hog-${i}` }));
    for (const [i, a] of sids.entries()) a.sendHot(3, 1, payload(20_000, i), i + 1); // 20,070 each: the third is over the user's quarter
    const refused = (await Promise.all(sids.map((a) => errorsWithin(a)))).flat();
    expect(refused.map((e) => e.code)).toEqual(["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]);
    expect(await bytes(room)).toBeLessThanOrEqual(SHARE);
    const b = await join("bob", room);
    b.sendHot(3, 1, payload(11, 7), 1);
    expect(await errorsWithin(b)).toEqual([]);
  });

  it("the share counts a sender's growth and frees what a smaller replacement gives back", async () => {
    const room = uniqueRoom("share-growth");
    const a = await join("alice", room);
    a.sendHot(3, 1, payload(50_000, 1)); // 50,070 of 51,200
    a.sendHot(3, 1, payload(51_200, 11), 11); // grows past the share: refused, op 1 unchanged
    a.sendHot(3, 2, payload(1000, 2)); // 51,140: fits
    a.sendHot(3, 3, payload(0, 3), 3); // a new key: 51,210, over by 10
    expect(await errorsWithin(a)).toEqual([
      expect.objectContaining({ code: "RESOURCE_EXHAUSTED", seq: 11, msg: expect.stringContaining("a quarter") }),
      expect.objectContaining({ code: "RESOURCE_EXHAUSTED", seq: 3 }),
    ]);
    expect(await bytes(room)).toBe(cost(50_000) + cost(1000));

    a.sendHot(3, 1, payload(20_000, 12)); // shrinks: frees 30,000
    a.sendHot(3, 3, payload(29_000, 13), 13); // 21,140 + 29,074
    expect(await errorsWithin(a)).toEqual([]);
    const c = await join("carol", room);
    const sa = a.authed.data.slot;
    expect(Object.fromEntries(await states(c, 3))).toEqual({
      [`${sa}:1`]: { len: 20_000, value: 12 },
      [`${sa}:2`]: { len: 1000, value: 2 },
      [`${sa}:3`]: { len: 29_000, value: 13 },
    });
  });

  it("each sender has its own share: four members at their share fill the room, a fifth's new state is refused", async () => {
    const room = uniqueRoom("share-four");
    const senders: TestClient[] = [];
    for (const u of ["s1", "s2", "s3", "s4"]) senders.push(await join(u, room));
    const size = SHARE - cost(0); // one state per sender, exactly its share
    for (const s of senders) s.sendHot(3, 1, payload(size, 1));
    for (const s of senders) expect(await errorsWithin(s, 100)).toEqual([]);
    expect(await bytes(room)).toBe(MAX_STATE_BYTES);
    const e = await join("eve", room);
    e.sendHot(3, 1, [1], 1);
    expect(await errorsWithin(e)).toEqual([
      expect.objectContaining({ code: "RESOURCE_EXHAUSTED", msg: expect.stringContaining("the room's kept states") }),
    ]);
    // A leaver's share is free again.
    senders[0]!.close();
    await e.nextOf("sys", "presence");
    e.sendHot(3, 1, [1], 2);
    expect(await errorsWithin(e)).toEqual([]);
  }, 15_000);

  it("the share survives hibernation: states read back from storage count against their sender", async () => {
    const room = uniqueRoom("share-evict");
    const a = await join("alice", room);
    a.sendHot(3, 1, payload(50_000, 1));
    for (let i = 0; i < 100 && (await runInDurableObject(stub(room), (o: RoomObject) => o.state.ticking())); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await evictDurableObject(stub(room), { webSockets: "hibernate" });
    a.sendHot(3, 2, payload(2000, 2), 2);
    expect(await errorsWithin(a)).toEqual([expect.objectContaining({ code: "RESOURCE_EXHAUSTED", seq: 2 })]);
    a.sendHot(3, 2, payload(1000, 2), 3);
    expect(await errorsWithin(a)).toEqual([]);
  });

  it("with hot_error_mode silent a frame over the share is dropped without an answer", async () => {
    const room = uniqueRoom("share-silent");
    const a = await join("alice", room, SILENT);
    a.sendHot(3, 1, payload(50_000, 1), 1);
    a.sendHot(3, 2, payload(2000, 2), 2);
    expect(await errorsWithin(a)).toEqual([]);
    expect(await bytes(room, SILENT)).toBe(cost(50_000, true));
  });
});
