/**
 * Coalesced relays (SPEC v1.1 section 5): tenant `co-relay`, svc 1 with
 * `coalesce: true`, svc 4 a plain relay.
 */
import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { MAX_RELAY_BATCH } from "../../src/room/coalesce.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { decodeBatch } from "../../src/room/state.ts";
import { connect, decodeOutbound, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const stubFor = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`co-relay/${room}`));
const join = (user: string, room: string) => connect({ tenant: "co-relay", room, ticket: `dev:${user}` });

type Frame = NonNullable<ReturnType<typeof decodeOutbound>>;

/** A binary message as the frames it holds: one for a plain frame, each inner frame of a batch. */
function framesOf(bytes: Uint8Array): Frame[] {
  const inner = bytes[1] === 0 ? decodeBatch(bytes) : [bytes];
  expect(inner, "a well-formed batch").not.toBeNull();
  return inner!.map((f) => {
    const d = decodeOutbound(f);
    expect(d, "a gateway-to-client frame").not.toBeNull();
    return d!;
  });
}

/** Read binary messages until `count` frames arrived; returns the messages and their frames. */
async function receive(c: TestClient, count: number): Promise<{ messages: Uint8Array[]; frames: Frame[] }> {
  const messages: Uint8Array[] = [];
  const frames: Frame[] = [];
  while (frames.length < count) {
    const m = await c.nextBinary();
    messages.push(m);
    frames.push(...framesOf(m));
  }
  return { messages, frames };
}

const seqOf = (f: Frame) => new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0, true);
const payload = (i: number) => new Uint8Array(new Uint32Array([i]).buffer);

describe("coalesced relay", () => {
  it("a busy room packs the frames bound for one member into batches, in order per sender, with the senders' slots", async () => {
    const room = uniqueRoom("co");
    const senders = [await join("alice", room), await join("bob", room), await join("carol", room)];
    const rx = await join("dave", room);
    const perSender = 40;
    for (let i = 0; i < perSender; i++) for (const s of senders) s.sendHot(1, 7, payload(i));
    const { messages, frames } = await receive(rx, perSender * senders.length);
    expect(frames).toHaveLength(perSender * senders.length);
    // Fewer messages than frames: the busy room batched.
    expect(messages.length).toBeLessThan(frames.length);
    expect(messages.some((m) => m[1] === 0 && m[2] === 1)).toBe(true);
    for (const s of senders) {
      const slot = s.authed.data.slot as number;
      const mine = frames.filter((f) => f.sender === slot);
      expect(mine.map(seqOf)).toEqual([...Array(perSender).keys()]);
      for (const f of mine) expect(f).toMatchObject({ svc: 1, op: 7, flags: 0x80 });
    }
    expect(await rx.quiet(100)).toEqual([]);
    // The sender never gets its own frames: alice gets only bob's and carol's.
    const atAlice = await receive(senders[0]!, perSender * 2);
    expect(new Set(atAlice.frames.map((f) => f.sender))).toEqual(new Set([senders[1]!.authed.data.slot, senders[2]!.authed.data.slot]));
    expect((await senders[0]!.quiet(100)).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it("an idle room sends a lone frame at once, as the plain relay frame, and keeps no timer", async () => {
    const room = uniqueRoom("co");
    const a = await join("alice", room);
    const b = await join("bob", room);
    const slot = a.authed.data.slot as number;
    const sentAt = Date.now();
    a.sendHot(1, 9, [5, 6, 7], 0x01020304);
    const got = await b.nextBinary();
    expect(Date.now() - sentAt).toBeLessThan(1000);
    expect([...got]).toEqual([1, 1, 9, 0x81, 4, 3, 2, 1, slot, 0, 5, 6, 7]);
    expect(await b.quiet(100)).toEqual([]);
    expect((await a.quiet(0)).filter((m) => m.kind === "binary")).toEqual([]);
    // The window that frame opened closed empty: nothing keeps the room awake.
    expect(await runInDurableObject(stubFor(room), (o: RoomObject) => o.coalescer.busy())).toBe(false);
  });

  it("coalesce: false (svc 4) is unchanged: one plain frame per relayed frame, byte for byte", async () => {
    const room = uniqueRoom("co");
    const a = await join("alice", room);
    const b = await join("bob", room);
    const rx = await join("carol", room);
    const [sa, sb] = [a.authed.data.slot as number, b.authed.data.slot as number];
    for (let i = 0; i < 20; i++) {
      a.sendHot(4, 2, [i]);
      b.sendHot(4, 3, [i, 0xff], 1000 + i);
    }
    const messages: number[][] = [];
    for (let i = 0; i < 40; i++) messages.push([...(await rx.nextBinary())]);
    const fromA = messages.filter((m) => m[2] === 2);
    const fromB = messages.filter((m) => m[2] === 3);
    expect(fromA).toEqual([...Array(20).keys()].map((i) => [1, 4, 2, 0x80, sa, 0, i]));
    expect(fromB).toEqual([...Array(20).keys()].map((i) => [1, 4, 3, 0x81, (1000 + i) & 0xff, (1000 + i) >> 8, 0, 0, sb, 0, i, 0xff]));
    expect(await rx.quiet(100)).toEqual([]);
  });

  it("a burst over 65535 bytes splits into several batches, none over the limit; a frame too large for a batch goes plain, in order", async () => {
    const room = uniqueRoom("co");
    const a = await join("alice", room);
    const rx = await join("bob", room);
    const big = (i: number, size: number) => {
      const p = new Uint8Array(size).fill(i);
      p.set(payload(i));
      return p;
    };
    // 1 lone frame, then 40 × ~4 KB (160 KB) with a 66000-byte frame in the middle.
    const sizes = [...Array(41).keys()].map((i) => (i === 20 ? 66_000 : 4000));
    sizes.forEach((size, i) => a.sendHot(1, 1, big(i, size)));
    const { messages, frames } = await receive(rx, sizes.length);
    expect(frames.map(seqOf)).toEqual([...sizes.keys()]);
    frames.forEach((f, i) => expect(f.payload.byteLength).toBe(sizes[i]));
    const batches = messages.filter((m) => m[1] === 0);
    expect(batches.length).toBeGreaterThanOrEqual(3);
    for (const m of batches) expect(m.byteLength).toBeLessThanOrEqual(MAX_RELAY_BATCH);
    const plainLarge = messages.find((m) => m[1] === 1 && m.byteLength === 66_006);
    expect(plainLarge, "the 66000-byte frame as a plain relay frame").toBeDefined();
    expect(await rx.quiet(100)).toEqual([]);
  });

  it("counts relayed frames and batches sent", async () => {
    const room = uniqueRoom("co");
    const a = await join("alice", room);
    const rx = await join("bob", room);
    for (let i = 0; i < 30; i++) a.sendHot(1, 1, payload(i));
    const { messages } = await receive(rx, 30);
    const counts = await runInDurableObject(stubFor(room), (o: RoomObject) => ({
      frames: o.counters.get("wsprism_hot_frames_total", { tenant: "co-relay", mode: "relay" }),
      batches: o.counters.get("wsprism_hot_relay_batches_total", { tenant: "co-relay" }),
      sent: o.coalescer.batchesSent,
    }));
    const batches = messages.filter((m) => m[1] === 0).length;
    expect(counts).toEqual({ frames: 30, batches, sent: batches });
    expect(batches).toBeGreaterThan(0);
  });

  it("after a burst the room is idle again and can hibernate; relays keep working after the wake", async () => {
    const room = uniqueRoom("co");
    const a = await join("alice", room);
    const rx = await join("bob", room);
    for (let i = 0; i < 10; i++) a.sendHot(1, 1, payload(i));
    await receive(rx, 10);
    const stub = stubFor(room);
    // The window that sent the batch reopens once and closes empty a turn later: poll for that.
    await vi.waitFor(async () => expect(await runInDurableObject(stub, (o: RoomObject) => o.coalescer.busy())).toBe(false), {
      timeout: 1000,
      interval: 20,
    });
    await evictDurableObject(stub, { webSockets: "hibernate" });
    a.sendHot(1, 1, payload(10));
    const { messages, frames } = await receive(rx, 1);
    expect(messages[0]![1]).toBe(1); // a lone frame after the wake: plain
    expect(frames.map(seqOf)).toEqual([10]);
  });
});
