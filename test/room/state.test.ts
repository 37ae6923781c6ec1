import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeOutbound } from "../../src/protocol/hot.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { decodeBatch, encodeBatches, MAX_BATCH_BYTES } from "../../src/room/state.ts";
import { dev, TestClient, uniqueRoom } from "../helpers/ws.ts";

const stub = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`lobby/${room}`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Next batch frame as [{sender, op, value}], where value is the payload's first byte. */
async function nextBatch(c: TestClient, timeoutMs = 2000) {
  const bytes = await c.nextBinary(timeoutMs);
  const inner = decodeBatch(bytes);
  if (!inner) throw new Error(`not a batch frame: ${Array.from(bytes.subarray(0, 8))}`);
  return inner.map((f) => {
    const d = decodeOutbound(f)!;
    return { sender: d.sender, svc: d.svc, op: d.op, value: d.payload[0] };
  });
}

describe("hot lane state mode", () => {
  it("keeps only the newest state per (sender, svc, opcode): superseded states are never sent", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    for (let v = 1; v <= 5; v++) a.sendHot(3, 1, [v]);
    a.sendHot(3, 2, [42]);
    const batch = await nextBatch(b);
    expect(batch).toEqual([
      { sender: a.authed.data.slot, svc: 3, op: 1, value: 5 },
      { sender: a.authed.data.slot, svc: 3, op: 2, value: 42 },
    ]);
    // Nothing new: no further batch.
    expect((await b.quiet(200)).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it("sends each member at most one batch per tick whatever the input rate, and never its own state", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    const started = Date.now();
    let v = 0;
    while (Date.now() - started < 400) {
      a.sendHot(3, 1, [v++ & 0xff]);
      b.sendHot(3, 1, [v++ & 0xff]);
      await sleep(2);
    }
    const elapsed = Date.now() - started;
    await sleep(150);
    const batchesB = b.inbox.filter((m) => m.kind === "binary").length;
    const batchesA = a.inbox.filter((m) => m.kind === "binary").length;
    expect(v).toBeGreaterThan(100); // far more frames than ticks
    const ticks = Math.ceil((elapsed + 150) / 50) + 1;
    expect(batchesB).toBeLessThanOrEqual(ticks);
    expect(batchesB).toBeGreaterThanOrEqual(3);
    expect(batchesA).toBeLessThanOrEqual(ticks);
    for (const c of [a, b]) {
      const other = c === a ? b : a;
      while (c.inbox.some((m) => m.kind === "binary")) {
        const batch = await nextBatch(c);
        expect(batch.length).toBe(1); // one state of the other member
        expect(batch[0]!.sender).toBe(other.authed.data.slot);
      }
    }
  });

  it("a late joiner gets every current state of the others in its first batch; a leaver's states are dropped", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.sendHot(3, 1, [10]);
    b.sendHot(3, 1, [20]);
    b.sendHot(3, 7, [21]);
    await nextBatch(a);
    await nextBatch(b);
    const c = await dev("carol", room);
    const first = await nextBatch(c);
    expect(first.map((e) => [e.sender, e.op, e.value]).sort()).toEqual(
      [
        [a.authed.data.slot, 1, 10],
        [b.authed.data.slot, 1, 20],
        [b.authed.data.slot, 7, 21],
      ].sort(),
    );
    b.close();
    await a.nextOf("sys", "presence"); // carol joined
    await a.nextOf("sys", "presence"); // bob left
    const d = await dev("dave", room);
    expect(await nextBatch(d)).toEqual([{ sender: a.authed.data.slot, svc: 3, op: 1, value: 10 }]);
  });

  it("the tick timer stops when nothing changes, and the states survive hibernation", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.sendHot(3, 4, [99]);
    await nextBatch(b);
    expect(await runInDurableObject(stub(room), (o: RoomObject) => o.state.ticking())).toBe(true);
    await sleep(150); // the next tick finds nothing to send and stops
    expect(await runInDurableObject(stub(room), (o: RoomObject) => o.state.ticking())).toBe(false);
    await evictDurableObject(stub(room), { webSockets: "hibernate" });
    const c = await dev("carol", room);
    expect(await nextBatch(c)).toEqual([{ sender: a.authed.data.slot, svc: 3, op: 4, value: 99 }]);
    // b already had it: no batch for b after the wake.
    expect((await b.quiet(150)).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it("batch frames are split so none exceeds the bound, and decode back to the same inner frames", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 6, max: 20_000 }), { minLength: 1, maxLength: 30 }), (sizes) => {
        const frames = sizes.map((n, i) => new Uint8Array(n).fill(i & 0xff));
        const batches = encodeBatches(frames);
        const back: Uint8Array[] = [];
        for (const b of batches) {
          expect(b.byteLength).toBeLessThanOrEqual(MAX_BATCH_BYTES);
          back.push(...decodeBatch(b)!);
        }
        expect(back.map((f) => f.byteLength)).toEqual(sizes);
        expect(back.map((f) => f[0])).toEqual(sizes.map((_, i) => i & 0xff));
        return true;
      }),
      { numRuns: 100 },
    );
  });

  it("decodeBatch rejects malformed batches", () => {
    expect(decodeBatch(new Uint8Array([1, 0, 1, 0, 1, 0]))).toBeNull(); // count 1, no frame
    expect(decodeBatch(new Uint8Array([1, 0, 1, 0, 0, 0, 9]))).toBeNull(); // trailing byte
    expect(decodeBatch(new Uint8Array([1, 1, 1, 0, 0, 0]))).toBeNull(); // not svc 0
    expect(decodeBatch(new Uint8Array([1, 0, 1, 0, 0, 0]))).toEqual([]);
  });
});
