/**
 * The bounded JSON parser (src/protocol/json.ts): SPEC section 4, "JSON nested
 * deeper than 64 levels is BAD_REQUEST (here and in every HTTP body)".
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jsonDepth, MAX_JSON_DEPTH, parseJson } from "../../src/protocol/json.ts";

const nested = (depth: number, leaf = "1") => "[".repeat(depth) + leaf + "]".repeat(depth);

/** The reference: nesting depth of a parsed value (a scalar is 0, `[]` and `{}` are 1). */
function depthOf(v: unknown): number {
  if (v === null || typeof v !== "object") return 0;
  const children = Array.isArray(v) ? v : Object.values(v);
  return 1 + children.reduce<number>((m, c) => Math.max(m, depthOf(c)), 0);
}

describe("jsonDepth", () => {
  it.each([
    ["1", 0],
    ['"x"', 0],
    ["[]", 1],
    ["{}", 1],
    ['{"a":[1]}', 2],
    ['[[],[[]],{"b":{}}]', 3],
    [" [ [ ] ] ", 2],
  ])("%s is %i deep", (text, depth) => {
    expect(jsonDepth(text)).toBe(depth);
  });

  it("ignores brackets inside strings, and quotes escaped inside them", () => {
    expect(jsonDepth('"[[[[{{{{"')).toBe(0);
    expect(jsonDepth('["\\"[[[[", "]]]"]')).toBe(1);
    // An escaped backslash does not escape the closing quote: the [ after it counts.
    expect(jsonDepth('["\\\\",[1]]')).toBe(2);
    expect(jsonDepth('{"k\\"{{":"\\\\\\"[["}')).toBe(1);
  });

  it("stops counting once past the limit", () => {
    expect(jsonDepth(nested(1_000), 64)).toBe(65);
    // What follows the point of refusal is never looked at.
    expect(jsonDepth("[".repeat(65) + "this is not JSON at all", 64)).toBe(65);
  });

  it("property: equals the depth of the parsed value, whitespace and strings included", () => {
    const deep = fc
      .tuple(fc.jsonValue({ maxDepth: 3 }), fc.array(fc.boolean(), { maxLength: 80 }))
      .map(([leaf, wraps]) => wraps.reduce<unknown>((v, inArray) => (inArray ? [v] : { "[k\\\"{": v }), leaf));
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), deep), fc.constantFrom(undefined, 1, "\t"), (value, indent) => {
        const text = JSON.stringify(value, null, indent);
        expect(jsonDepth(text)).toBe(depthOf(value));
      }),
      { numRuns: 500 },
    );
  });
});

describe("parseJson", () => {
  it(`MAX_JSON_DEPTH is 64: exactly ${MAX_JSON_DEPTH} levels parse, 65 are refused`, () => {
    expect(MAX_JSON_DEPTH).toBe(64);
    expect(parseJson(nested(64))).toEqual({ ok: true, value: JSON.parse(nested(64)) });
    expect(parseJson(nested(65))).toEqual({ ok: false, error: "too_deep", msg: "JSON nested deeper than 64 levels" });
    expect(parseJson(`{"a":${nested(63)}}`).ok).toBe(true);
    expect(parseJson(`{"a":${nested(64)}}`).ok).toBe(false);
  });

  it("honours another maxDepth", () => {
    expect(parseJson("[[1]]", { maxDepth: 2 }).ok).toBe(true);
    expect(parseJson("[[[1]]]", { maxDepth: 2 })).toMatchObject({ ok: false, error: "too_deep", msg: "JSON nested deeper than 2 levels" });
  });

  it("refuses huge depth without parsing it", () => {
    expect(parseJson(nested(1_000_000))).toMatchObject({ ok: false, error: "too_deep" });
    // Too deep first, invalid later: the scan stopped before JSON.parse could see it.
    expect(parseJson("[".repeat(100) + "}".repeat(1_000_000))).toMatchObject({ ok: false, error: "too_deep" });
  });

  it("invalid JSON is an error result, never an exception", () => {
    for (const text of ["", "{nope", "[1,]", "]", "\"open", "1 2"]) {
      expect(parseJson(text)).toEqual({ ok: false, error: "invalid", msg: "invalid JSON" });
    }
  });

  it("property: never throws; ok exactly when JSON.parse succeeds within the depth", () => {
    const text = fc.oneof(
      fc.string(),
      fc.string({ unit: "binary" }),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.stringMatching(/^[[\]{}",:\\a1 ]{0,200}$/),
    );
    fc.assert(
      fc.property(text, fc.integer({ min: 0, max: 70 }), (t, maxDepth) => {
        const r = parseJson(t, { maxDepth });
        let expected: { ok: true; value: unknown } | { ok: false } = { ok: false };
        try {
          const value: unknown = JSON.parse(t);
          if (depthOf(value) <= maxDepth) expected = { ok: true, value };
        } catch {
          /* invalid */
        }
        if (expected.ok) expect(r).toEqual(expected);
        else expect(r.ok).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });
});
