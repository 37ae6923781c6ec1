/**
 * The load generator's hot-frame reader (bench/lib/hot-frames.ts): a relay
 * fan-out target may answer with plain frames (baseline, partyserver, the
 * gateway) or batch frames (a gateway relay service with `coalesce: true`,
 * SPEC section 5). Every inner frame must count as one delivered frame and be
 * timed from its own payload, and the reader must agree with the SDK's decoder.
 */
import { describe, expect, it } from "vitest";
import { decodeBinaryMessage } from "../../client/src/codec.ts";
import { forEachHotFrame, isBatch } from "../../bench/lib/hot-frames.ts";
import { decodeHot, encodeClientHot, encodeOutbound, type HotFrame } from "../../src/protocol/hot.ts";

/** The bench's payload: [send time f64][client idx u32][counter u32]. */
function payload(ts: number, idx: number, n: number): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeDoubleLE(ts, 0);
  b.writeUInt32LE(idx, 8);
  b.writeUInt32LE(n, 12);
  return b;
}

/** A frame as the gateway relays it: the client frame, decoded, re-encoded with the sender's slot. */
function outbound(ts: number, idx: number, n: number, seq?: number): Uint8Array {
  const f = decodeHot(encodeClientHot(1, 1, payload(ts, idx, n), seq)) as HotFrame;
  return encodeOutbound(f, 7);
}

/** A batch frame per SPEC section 5: [1][0][1][0][count u16] then count x [len u16][frame]. */
function batch(frames: Uint8Array[]): Buffer {
  const parts = [Buffer.from([1, 0, 1, 0, frames.length & 0xff, frames.length >> 8])];
  for (const f of frames) parts.push(Buffer.from([f.byteLength & 0xff, f.byteLength >> 8]), Buffer.from(f));
  return Buffer.concat(parts);
}

function read(buf: Buffer): Array<{ ts: number; idx: number; n: number }> {
  const out: Array<{ ts: number; idx: number; n: number }> = [];
  const count = forEachHotFrame(buf, 16, (b, p) => out.push({ ts: b.readDoubleLE(p), idx: b.readUInt32LE(p + 8), n: b.readUInt32LE(p + 12) }));
  expect(count).toBe(out.length);
  return out;
}

describe("bench hot-frame reader", () => {
  it("reads a client frame relayed as is (baseline, partyserver)", () => {
    const f = Buffer.from(encodeClientHot(1, 1, payload(12.5, 3, 9)));
    expect(isBatch(f)).toBe(false);
    expect(read(f)).toEqual([{ ts: 12.5, idx: 3, n: 9 }]);
  });

  it("reads the gateway-to-client form, with and without seq", () => {
    expect(read(Buffer.from(outbound(1.25, 4, 1)))).toEqual([{ ts: 1.25, idx: 4, n: 1 }]);
    expect(read(Buffer.from(outbound(2.5, 5, 2, 77)))).toEqual([{ ts: 2.5, idx: 5, n: 2 }]);
  });

  it("counts every inner frame of a batch, each with its own send time", () => {
    const inner = [outbound(10, 1, 1), outbound(11, 2, 1, 5), outbound(12.75, 3, 8)];
    const b = batch(inner);
    expect(isBatch(b)).toBe(true);
    expect(read(b)).toEqual([
      { ts: 10, idx: 1, n: 1 },
      { ts: 11, idx: 2, n: 1 },
      { ts: 12.75, idx: 3, n: 8 },
    ]);
  });

  it("agrees with the SDK's decoder on the payloads of a batch", () => {
    const b = batch(Array.from({ length: 40 }, (_, i) => outbound(100 + i / 8, i, i * 3, i % 2 ? i : undefined)));
    const sdk = decodeBinaryMessage(b).map((f) => Buffer.from(f.payload).readDoubleLE(0));
    expect(read(b).map((x) => x.ts)).toEqual(sdk);
    expect(sdk).toHaveLength(40);
  });

  it("skips frames too short to carry the bench's payload, and stops at a truncated inner frame", () => {
    const short = encodeOutbound(decodeHot(encodeClientHot(1, 1, new Uint8Array(4))) as HotFrame, 1);
    expect(read(batch([short, outbound(5, 1, 1)]))).toEqual([{ ts: 5, idx: 1, n: 1 }]);
    const whole = batch([outbound(6, 1, 1), outbound(7, 2, 2)]);
    expect(read(whole.subarray(0, whole.byteLength - 3))).toEqual([{ ts: 6, idx: 1, n: 1 }]);
  });

  it("does not take a relayed svc-0 frame with SENDER_PRESENT for a batch", () => {
    const f = decodeHot(encodeClientHot(0, 1, payload(3, 1, 1))) as HotFrame;
    expect(isBatch(Buffer.from(encodeOutbound(f, 2)))).toBe(false);
  });
});
