import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeHot, decodeOutbound, encodeClientHot, encodeOutbound, outboundLength } from "../../src/protocol/hot.ts";

describe("hot codec", () => {
  it("decodes the header and exposes the payload as a view, not a copy", () => {
    const frame = encodeClientHot(3, 9, new Uint8Array([1, 2, 3]), 0x01020304);
    const d = decodeHot(frame.buffer as ArrayBuffer);
    if ("error" in d) throw new Error(d.msg);
    expect(d).toMatchObject({ svc: 3, op: 9, seq: 0x01020304, flags: 1 });
    expect(d.payload.buffer).toBe(frame.buffer);
    expect(d.payload.byteOffset).toBe(8);
  });

  it("writes the sender after seq, or after flags without seq", () => {
    const withSeq = decodeHot(encodeClientHot(1, 2, new Uint8Array([7]), 5));
    const noSeq = decodeHot(encodeClientHot(1, 2, new Uint8Array([7])));
    if ("error" in withSeq || "error" in noSeq) throw new Error("decode");
    expect(Array.from(encodeOutbound(withSeq, 0x0102))).toEqual([1, 1, 2, 0x81, 5, 0, 0, 0, 0x02, 0x01, 7]);
    expect(Array.from(encodeOutbound(noSeq, 0x0102))).toEqual([1, 1, 2, 0x80, 0x02, 0x01, 7]);
  });

  it("rejects short frames and other versions", () => {
    expect(decodeHot(new Uint8Array([]))).toMatchObject({ error: "BAD_REQUEST" });
    expect(decodeHot(new Uint8Array([1, 1, 1]))).toMatchObject({ error: "BAD_REQUEST" });
    expect(decodeHot(new Uint8Array([1, 1, 1, 1, 0, 0, 0]))).toMatchObject({ error: "BAD_REQUEST" });
    expect(decodeHot(new Uint8Array([2, 1, 1, 0]))).toMatchObject({ error: "UNSUPPORTED_VERSION" });
    expect(decodeHot(new Uint8Array([0, 1, 1, 0]))).toMatchObject({ error: "UNSUPPORTED_VERSION" });
  });

  it("property: client -> gateway -> client round-trips svc, op, seq, sender and payload", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.uint8Array({ maxLength: 512 }),
        fc.integer({ min: 0, max: 255 }),
        (svc, op, seq, sender, payload, extraFlags) => {
          const decoded = decodeHot(encodeClientHot(svc, op, payload, seq, extraFlags));
          if ("error" in decoded) return false;
          const out = encodeOutbound(decoded, sender);
          expect(out.byteLength).toBe(outboundLength(decoded));
          const back = decodeOutbound(out)!;
          expect(back.svc).toBe(svc);
          expect(back.op).toBe(op);
          expect(back.seq).toBe(seq ?? null);
          expect(back.sender).toBe(sender);
          expect(back.flags & 0x80).toBe(0x80);
          expect(Array.from(back.payload)).toEqual(Array.from(payload));
          return true;
        },
      ),
      { numRuns: 500 },
    );
  });

  it("property: arbitrary bytes never throw, and decode to a frame or a contract error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const d = decodeHot(bytes);
        if ("error" in d) return d.error === "BAD_REQUEST" || d.error === "UNSUPPORTED_VERSION";
        return d.payload.byteLength === bytes.byteLength - (d.seq === null ? 4 : 8);
      }),
      { numRuns: 2000 },
    );
  });

  it("property: encoding into a shared buffer at an offset matches a fresh encode", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 32 }), (payload, offset) => {
        const d = decodeHot(encodeClientHot(1, 1, payload));
        if ("error" in d) return false;
        const shared = new Uint8Array(offset + outboundLength(d));
        const view = encodeOutbound(d, 42, shared, offset);
        expect(Array.from(view)).toEqual(Array.from(encodeOutbound(d, 42)));
        return true;
      }),
    );
  });
});
