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

  it("property: near-valid envelopes (each field good or bad) are accepted exactly when every rule holds", () => {
    // Random strings almost never make an envelope: draw each field from good and bad values instead,
    // so acceptance and each refusal are drawn often, and check the verdict against the rules.
    const good = { svc: fc.constantFrom("chat", "a", "x_y-1"), seq: fc.nat(), flags: fc.constantFrom(0, 1, 4, 0xffffffff), room: fc.constantFrom("lobby", "match:1") };
    const bad = { svc: fc.constantFrom("", "Chat", "a b", "x".repeat(33), 7), seq: fc.constantFrom(-1, 1.5, "3", 2 ** 60), flags: fc.constantFrom(-1, 2 ** 32, "4"), room: fc.constantFrom("", "-x", "a b", 5) };
    const field = <T, U>(g: fc.Arbitrary<T>, b: fc.Arbitrary<U>) => fc.oneof({ weight: 4, arbitrary: g.map((value) => ({ ok: true, value })) }, { weight: 1, arbitrary: b.map((value) => ({ ok: false, value })) });
    const absent = <T,>(a: fc.Arbitrary<{ ok: boolean; value: T }>) => fc.option(a, { nil: undefined, freq: 3 });
    const arb = fc.record({
      v: fc.constantFrom(1, 1, 1, 2, "1", undefined),
      svc: field(good.svc, bad.svc),
      type: field(good.svc, bad.svc),
      flags: absent(field(good.flags, bad.flags)),
      seq: absent(field(good.seq, bad.seq)),
      room: absent(field(good.room, bad.room)),
      extra: fc.boolean(),
    });
    fc.assert(
      fc.property(arb, (e) => {
        const obj: Record<string, unknown> = { svc: e.svc.value, type: e.type.value };
        if (e.v !== undefined) obj.v = e.v;
        for (const k of ["flags", "seq", "room"] as const) if (e[k]) obj[k] = e[k]!.value;
        if (e.extra) obj.nope = 1;
        const r = parseEnvelope(JSON.stringify(obj));
        const fieldsOk = e.svc.ok && e.type.ok && (e.flags?.ok ?? true) && (e.seq?.ok ?? true) && (e.room?.ok ?? true) && !e.extra;
        const ackWithoutSeq = e.flags?.ok === true && ((e.flags.value as number) & 4) !== 0 && e.seq === undefined;
        if (e.v === undefined) expect(r).toMatchObject({ ok: false, code: "BAD_REQUEST" });
        else if (e.v !== 1) expect(r).toMatchObject({ ok: false, code: "UNSUPPORTED_VERSION" });
        else if (!fieldsOk || ackWithoutSeq) expect(r).toMatchObject({ ok: false, code: "BAD_REQUEST" });
        else expect(r.ok).toBe(true);
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
