/** @wsprism/client: codecs and backoff, checked against the gateway's own encoders. */
import { describe, expect, it } from "vitest";
import { backoffCeiling, backoffDelay } from "../../client/src/backoff.ts";
import {
  decodeBatchFrame,
  decodeBinaryMessage,
  decodeHotFrame,
  encodeEnvelope,
  encodeHotFrame,
  isProtocolToken,
  jwtExp,
  parseEnvelope,
} from "../../client/src/codec.ts";
import { decodeHot, encodeOutbound } from "../../src/protocol/hot.ts";
import { encodeBatches } from "../../src/room/state.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

function b64url(s: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function fakeJwt(claims: Record<string, unknown>): string {
  return `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}.c2ln`;
}

describe("hot frame codec", () => {
  it("encodes client frames the gateway decodes, with and without seq", () => {
    const a = encodeHotFrame(1, 7, bytes(0xca, 0xfe));
    expect([...a]).toEqual([1, 1, 7, 0, 0xca, 0xfe]);
    expect(decodeHot(a)).toMatchObject({ svc: 1, op: 7, seq: null, payload: bytes(0xca, 0xfe) });
    const b = encodeHotFrame(2, 10, bytes(9), 0x01020304);
    expect([...b]).toEqual([1, 2, 10, 1, 4, 3, 2, 1, 9]);
    expect(decodeHot(b)).toMatchObject({ svc: 2, op: 10, seq: 0x01020304, payload: bytes(9) });
    expect(decodeHot(encodeHotFrame(3, 0, bytes(), 0xffffffff))).toMatchObject({ seq: 0xffffffff });
  });

  it("decodes gateway frames: relay with seq, without seq, origin sender 0, empty payload", () => {
    const withSeq = encodeOutbound({ svc: 1, op: 5, flags: 1, seq: 42, payload: bytes(1, 2, 3) }, 513);
    expect(decodeHotFrame(withSeq)).toEqual({ svc: 1, op: 5, flags: 0x81, seq: 42, sender: 513, payload: bytes(1, 2, 3) });
    const noSeq = encodeOutbound({ svc: 2, op: 9, flags: 0, seq: null, payload: bytes(7) }, 3);
    expect(decodeHotFrame(noSeq)).toEqual({ svc: 2, op: 9, flags: 0x80, seq: null, sender: 3, payload: bytes(7) });
    const origin = encodeOutbound({ svc: 1, op: 0, flags: 0, seq: null, payload: bytes() }, 0);
    expect(decodeHotFrame(origin)).toMatchObject({ sender: 0, payload: bytes() });
  });

  it("gives payload views into the received buffer (no copy)", () => {
    const frame = encodeOutbound({ svc: 1, op: 1, flags: 0, seq: null, payload: bytes(5, 6) }, 1);
    const d = decodeHotFrame(frame)!;
    expect(d.payload.buffer).toBe(frame.buffer);
  });

  it("rejects malformed gateway frames without throwing", () => {
    for (const bad of [
      bytes(),
      bytes(1, 1, 1),
      bytes(1, 1, 1, 0x80, 1), // 5 bytes: no room for the sender
      bytes(2, 1, 1, 0x80, 1, 0), // version 2
      bytes(1, 1, 1, 0x00, 1, 0), // no SENDER_PRESENT: a client frame
      bytes(1, 1, 1, 0x81, 1, 0, 0, 0, 1), // seq but no sender
    ]) {
      expect(decodeHotFrame(bad)).toBeNull();
      expect(decodeBinaryMessage(bad)).toEqual([]);
    }
  });

  it("splits state batches made by the gateway into their inner frames", () => {
    const inner = [
      encodeOutbound({ svc: 3, op: 1, flags: 0, seq: null, payload: bytes(1) }, 1),
      encodeOutbound({ svc: 3, op: 2, flags: 1, seq: 7, payload: bytes(2, 2) }, 2),
      encodeOutbound({ svc: 3, op: 1, flags: 0, seq: null, payload: bytes() }, 9),
    ];
    const [batch] = encodeBatches(inner);
    expect(decodeBatchFrame(batch!)?.map((f) => [...f])).toEqual(inner.map((f) => [...f]));
    expect(decodeBinaryMessage(batch!)).toEqual([
      { svc: 3, op: 1, flags: 0x80, seq: null, sender: 1, payload: bytes(1) },
      { svc: 3, op: 2, flags: 0x81, seq: 7, sender: 2, payload: bytes(2, 2) },
      { svc: 3, op: 1, flags: 0x80, seq: null, sender: 9, payload: bytes() },
    ]);
  });

  it("ignores malformed batches and skips malformed inner frames", () => {
    const good = encodeOutbound({ svc: 3, op: 1, flags: 0, seq: null, payload: bytes(1) }, 1);
    const [batch] = encodeBatches([good]);
    expect(decodeBinaryMessage(batch!.subarray(0, batch!.byteLength - 1))).toEqual([]); // truncated
    const trailing = new Uint8Array(batch!.byteLength + 1);
    trailing.set(batch!);
    expect(decodeBinaryMessage(trailing)).toEqual([]); // trailing garbage
    const lying = batch!.slice();
    lying[4] = 5; // count says 5
    expect(decodeBinaryMessage(lying)).toEqual([]);
    const [mixed] = encodeBatches([bytes(1, 2), good]); // a 2-byte inner frame is not a frame
    expect(decodeBinaryMessage(mixed!)).toHaveLength(1);
    expect(decodeBinaryMessage(bytes(1, 0, 1, 0, 0, 0))).toEqual([]); // empty batch
  });
});

describe("envelopes", () => {
  it("encodes with flags 4 only when an ack is asked, and omits absent data", () => {
    expect(JSON.parse(encodeEnvelope("chat", "send", 3, { msg: "hi" }, true))).toEqual({
      v: 1,
      svc: "chat",
      type: "send",
      flags: 4,
      seq: 3,
      data: { msg: "hi" },
    });
    expect(JSON.parse(encodeEnvelope("chat", "send", 4, undefined, false))).toEqual({ v: 1, svc: "chat", type: "send", seq: 4 });
  });

  it("parses envelopes and refuses anything else", () => {
    expect(parseEnvelope('{"v":1,"svc":"sys","type":"ack","data":{"seq":1}}')).toMatchObject({ type: "ack" });
    for (const bad of ["pong", "[]", "null", "{", '{"svc":1,"type":"x"}', '"str"']) expect(parseEnvelope(bad)).toBeNull();
  });
});

describe("tickets", () => {
  it("reads exp from a JWT without verifying it", () => {
    expect(jwtExp(fakeJwt({ sub: "a", exp: 1_900_000_000 }))).toBe(1_900_000_000);
    expect(jwtExp(fakeJwt({ sub: "é€", exp: 12 }))).toBe(12); // UTF-8 claims
  });

  it("is null for anything that is not a JWT with a numeric exp", () => {
    for (const t of ["dev:alice", "a.b", "a.b.c.d", "abc", fakeJwt({ sub: "a" }), fakeJwt({ exp: "soon" }), "x.!!!.y", "e30..x"]) {
      expect(jwtExp(t)).toBeNull();
    }
  });

  it("knows which tickets fit in a subprotocol", () => {
    expect(isProtocolToken(`ticket.${fakeJwt({ exp: 1 })}`)).toBe(true);
    expect(isProtocolToken("ticket.dev:alice")).toBe(false);
    expect(isProtocolToken("ticket.a b")).toBe(false);
  });
});

describe("backoff", () => {
  it("grows exponentially up to maxMs", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffCeiling(a))).toEqual([
      250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000,
    ]);
    expect(backoffCeiling(10_000, { baseMs: 100, maxMs: 5000 })).toBe(5000); // no overflow
    expect(backoffCeiling(2, { baseMs: 100, maxMs: 5000 })).toBe(400);
  });

  it("uses full jitter: random(0, ceiling)", () => {
    expect(backoffDelay(3, {}, () => 0)).toBe(0);
    expect(backoffDelay(3, {}, () => 0.5)).toBe(1000);
    expect(backoffDelay(3, {}, () => 0.999999)).toBe(1999);
    expect(backoffDelay(20, { baseMs: 250, maxMs: 15000 }, () => 0.999999)).toBe(14999);
    for (let attempt = 0; attempt < 12; attempt++) {
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(backoffCeiling(attempt));
      }
    }
  });
});
