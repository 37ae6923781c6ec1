import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/protocol/codes.ts";
import { parseEnvelope, PEEK_SEQ_CHARS, peekSeq } from "../../src/protocol/envelope.ts";

describe("ext envelope parser", () => {
  it("accepts the contract's example", () => {
    const r = parseEnvelope('{"v":1,"svc":"chat","type":"send","flags":4,"seq":12,"room":"match:1","data":{"msg":"hi"}}');
    expect(r).toMatchObject({ ok: true, ack: true, env: { svc: "chat", type: "send", seq: 12, room: "match:1" } });
  });

  it("accepts the minimum", () => {
    expect(parseEnvelope('{"v":1,"svc":"a","type":"b"}')).toMatchObject({ ok: true, ack: false });
  });

  it.each([
    ['{"v":1,"svc":"a","type":"b","__proto__":{"x":1}}', "BAD_REQUEST"],
    ['{"v":"1","svc":"a","type":"b"}', "UNSUPPORTED_VERSION"],
    ['{"v":1,"svc":"a","type":"b","room":""}', "BAD_REQUEST"],
    ['{"v":1,"svc":"' + "a".repeat(33) + '","type":"b"}', "BAD_REQUEST"],
    ['{"v":1,"svc":"a","type":"b","seq":9007199254740993}', "BAD_REQUEST"],
    ["null", "BAD_REQUEST"],
    ['"str"', "BAD_REQUEST"],
    ["", "BAD_REQUEST"],
  ])("%s -> %s", (text, code) => {
    expect(parseEnvelope(text)).toMatchObject({ ok: false, code });
  });

  it("JSON nested deeper than 64 levels: BAD_REQUEST, echoing only a top-level seq", () => {
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
    const tooDeep = { ok: false, code: "BAD_REQUEST", msg: "JSON nested deeper than 64 levels" };
    expect(parseEnvelope(`{"v":1,"svc":"a","type":"b","seq":7,"data":${deep(10_000)}}`)).toEqual({ ...tooDeep, seq: 7 });
    expect(parseEnvelope(`{"v":1,"svc":"a","type":"b","data":[{"seq":7},${deep(64)}]}`)).toEqual({ ...tooDeep, seq: undefined });
    expect(parseEnvelope(`{"v":1,"svc":"a","type":"b","seq":7,"data":${deep(64)}}`)).toEqual({ ...tooDeep, seq: 7 });
    expect(parseEnvelope(`{"v":1,"svc":"a","type":"b","seq":7,"data":${deep(63)}}`)).toMatchObject({ ok: true });
  });

  it("property: arbitrary strings and JSON values never throw and always map to a contract code", () => {
    const codes = new Set<string>(ERROR_CODES);
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.json({ maxDepth: 4 })), (text) => {
        const r = parseEnvelope(text);
        return r.ok || codes.has(r.code);
      }),
      { numRuns: 2000 },
    );
  });

  it("property: deeply nested data does not throw", () => {
    const deep = "[".repeat(50_000) + "]".repeat(50_000);
    const r = parseEnvelope(`{"v":1,"svc":"a","type":"b","data":${deep}}`);
    expect(typeof r.ok).toBe("boolean");
  });
});

describe("peekSeq: the seq of a frame refused before parsing", () => {
  it("reads the top-level seq, never one inside data or a string", () => {
    expect(peekSeq('{"v":1,"svc":"chat","type":"send","seq":12,"data":{}}')).toBe(12);
    expect(peekSeq('{ "seq" : 7 }')).toBe(7);
    expect(peekSeq('{"v":1,"data":{"seq":5},"seq":3}')).toBe(3);
    expect(peekSeq('{"v":1,"data":{"seq":5}}')).toBeUndefined();
    expect(peekSeq('{"type":"seq","x":1}')).toBeUndefined();
    expect(peekSeq('{"a":"\\"seq\\":4","seq":9}')).toBe(9);
    expect(peekSeq('[{"seq":1}]')).toBeUndefined();
  });

  it("refuses what is not a safe non-negative integer, and reads only the first chars", () => {
    expect(peekSeq('{"seq":-1}')).toBeUndefined();
    expect(peekSeq('{"seq":1.5}')).toBeUndefined();
    expect(peekSeq('{"seq":1e3}')).toBeUndefined();
    expect(peekSeq('{"seq":99999999999999999}')).toBeUndefined();
    expect(peekSeq(`{"data":"${"x".repeat(PEEK_SEQ_CHARS)}","seq":1}`)).toBeUndefined();
    expect(peekSeq("not json at all")).toBeUndefined();
  });
});
