/**
 * The ext envelope's checks, message by message: hostile inputs (wrong types,
 * unknown keys, huge numbers, missing fields, prototype keys) and the exact
 * error each gets. The messages are the ones the zod schema gave (its English
 * wording), so that replacing it by hand-written checks changes nothing a
 * client sees, except that a field present with the wrong type is no longer
 * called "missing".
 */
import { describe, expect, it } from "vitest";
import { parseEnvelope } from "../../src/protocol/envelope.ts";

const BASE = '"v":1,"svc":"a","type":"b"';
const bad = (msg: string, seq?: number) => ({ ok: false, code: "BAD_REQUEST", msg, seq });

describe("ext envelope: the error for each hostile input", () => {
  it.each([
    // missing fields, in the schema's order
    ['{"v":1}', "missing svc"],
    ['{"v":1,"type":"b"}', "missing svc"],
    ['{"v":1,"svc":"a"}', "missing type"],
    ['{"v":1,"x":1}', "missing svc"],
    // patterns
    ['{"v":1,"svc":"A","type":"b"}', "svc: svc must match ^[a-z0-9_-]{1,32}$"],
    ['{"v":1,"svc":"a\\u0000","type":"b"}', "svc: svc must match ^[a-z0-9_-]{1,32}$"],
    [`{"v":1,"svc":"${"a".repeat(33)}","type":"b"}`, "svc: svc must match ^[a-z0-9_-]{1,32}$"],
    ['{"v":1,"svc":"a","type":"B"}', "type: type must match ^[a-z0-9_-]{1,32}$"],
    [`{${BASE},"room":""}`, "room: room is malformed"],
    [`{${BASE},"room":"${"r".repeat(129)}"}`, "room: room is malformed"],
    // bounds, with zod's wording
    [`{${BASE},"flags":-1}`, "flags: Too small: expected number to be >=0"],
    [`{${BASE},"flags":4294967296}`, "flags: Too big: expected number to be <=4294967295"],
    [`{${BASE},"flags":9007199254740992}`, "flags: Too big: expected int to be <=9007199254740991"],
    [`{${BASE},"flags":-9007199254740992}`, "flags: Too small: expected int to be >=-9007199254740991"],
    [`{${BASE},"seq":-1}`, "seq: Too small: expected number to be >=0"],
    [`{${BASE},"seq":9007199254740992}`, "seq: Too big: expected int to be <=9007199254740991"],
    [`{${BASE},"seq":1e300}`, "seq: Too big: expected int to be <=9007199254740991"],
    // unknown fields, __proto__ and constructor included (own keys of the parsed JSON)
    [`{${BASE},"x":1}`, 'unknown field "x"'],
    [`{${BASE},"x":1,"y":2}`, 'unknown field "x", "y"'],
    [`{${BASE},"__proto__":{"seq":1}}`, 'unknown field "__proto__"'],
    [`{${BASE},"constructor":{"prototype":1}}`, 'unknown field "constructor"'],
    [`{${BASE},"toString":1,"hasOwnProperty":2}`, 'unknown field "toString", "hasOwnProperty"'],
    // a field error comes before unknown fields
    [`{${BASE},"x":1,"room":5}`, "room: Invalid input: expected string, received number"],
    // ACK_REQUESTED without a seq
    [`{${BASE},"flags":4}`, "ACK_REQUESTED needs a seq"],
  ])("%s -> %s", (text, msg) => {
    expect(parseEnvelope(text)).toEqual(bad(msg));
  });

  // zod reported these as "missing <field>": its issues do not carry the input, so
  // `input === undefined` held for every wrong type. The field is there; say what is wrong.
  it.each([
    [`{${BASE},"flags":"4"}`, "flags: Invalid input: expected number, received string"],
    [`{${BASE},"flags":null}`, "flags: Invalid input: expected number, received null"],
    [`{${BASE},"flags":true}`, "flags: Invalid input: expected number, received boolean"],
    [`{${BASE},"flags":[]}`, "flags: Invalid input: expected number, received array"],
    [`{${BASE},"flags":{}}`, "flags: Invalid input: expected number, received object"],
    [`{${BASE},"flags":1e400}`, "flags: Invalid input: expected number, received Infinity"],
    [`{${BASE},"flags":-1e400}`, "flags: Invalid input: expected number, received -Infinity"],
    [`{${BASE},"flags":1.5}`, "flags: Invalid input: expected int, received number"],
    [`{${BASE},"seq":-1.5}`, "seq: Invalid input: expected int, received number"],
    [`{${BASE},"seq":"1"}`, "seq: Invalid input: expected number, received string"],
    [`{${BASE},"room":null}`, "room: Invalid input: expected string, received null"],
    ['{"v":1,"svc":5,"type":"b"}', "svc: Invalid input: expected string, received number"],
    ['{"v":1,"svc":"a","type":{"__proto__":1}}', "type: Invalid input: expected string, received object"],
  ])("present with the wrong type: %s -> %s", (text, msg) => {
    expect(parseEnvelope(text)).toEqual(bad(msg));
  });

  it("echoes a valid top-level seq in the error, never another", () => {
    expect(parseEnvelope(`{${BASE},"seq":3,"x":1}`)).toEqual(bad('unknown field "x"', 3));
    expect(parseEnvelope(`{${BASE},"seq":3,"flags":1.5}`)).toEqual(bad("flags: Invalid input: expected int, received number", 3));
    expect(parseEnvelope(`{${BASE},"seq":-1}`)).toEqual(bad("seq: Too small: expected number to be >=0"));
  });

  it("bounds the unknown-field list: five names, 64 characters each", () => {
    const keys = Array.from({ length: 400 }, (_, i) => `"${"k".repeat(100)}${i}":0`).join(",");
    const r = parseEnvelope(`{${BASE},${keys}}`);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.msg).toBe(`unknown field ${Array(5).fill(`"${"k".repeat(64)}"`).join(", ")}`);
  });

  it("keeps only the contract's fields, with their values", () => {
    const r = parseEnvelope(`{${BASE},"flags":5,"seq":0,"room":"r:1","data":{"__proto__":{"x":1},"n":[1]}}`);
    expect(r).toEqual({ ok: true, ack: true, env: { v: 1, svc: "a", type: "b", flags: 5, seq: 0, room: "r:1", data: { ["__proto__"]: { x: 1 }, n: [1] } } });
    if (!r.ok) return;
    expect(Object.getPrototypeOf(r.env)).toBe(Object.prototype);
    expect(({} as { x?: unknown }).x).toBeUndefined(); // nothing polluted
    // -0 is a non-negative integer; data: null is data
    const zero = parseEnvelope(`{${BASE},"seq":-0,"data":null}`);
    expect(zero).toMatchObject({ ok: true, ack: false, env: { v: 1, svc: "a", type: "b", data: null } });
    expect(zero.ok && zero.env.seq === 0).toBe(true);
    expect(parseEnvelope(`{${BASE},"flags":4294967295,"seq":9007199254740991}`)).toMatchObject({ ok: true, ack: true });
  });
});
