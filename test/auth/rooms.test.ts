import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { roomAllowed } from "../../src/auth/rooms.ts";

describe("roomAllowed", () => {
  it("null patterns (no rooms claim) admit every room", () => {
    expect(roomAllowed(null, "lobby")).toBe(true);
    expect(roomAllowed(null, "match:1")).toBe(true);
  });

  it("an empty list admits nothing", () => {
    expect(roomAllowed([], "lobby")).toBe(false);
  });

  it("exact patterns match exactly", () => {
    expect(roomAllowed(["lobby"], "lobby")).toBe(true);
    expect(roomAllowed(["lobby"], "lobby2")).toBe(false);
    expect(roomAllowed(["lobby"], "lob")).toBe(false);
    expect(roomAllowed(["lobby"], "Lobby")).toBe(false);
    expect(roomAllowed(["lobby", "chat"], "chat")).toBe(true);
  });

  it("a trailing * matches any suffix, including the empty one", () => {
    expect(roomAllowed(["match:*"], "match:1")).toBe(true);
    expect(roomAllowed(["match:*"], "match:a:b.c")).toBe(true);
    expect(roomAllowed(["match:*"], "match:")).toBe(true);
    expect(roomAllowed(["match:*"], "match")).toBe(false);
    expect(roomAllowed(["match:*"], "xmatch:1")).toBe(false);
    expect(roomAllowed(["match:*"], "MATCH:1")).toBe(false);
  });

  it("a bare * matches every room", () => {
    expect(roomAllowed(["*"], "lobby")).toBe(true);
    expect(roomAllowed(["*"], "a")).toBe(true);
  });

  it("a * not at the end is literal", () => {
    expect(roomAllowed(["a*b"], "a*b")).toBe(true);
    expect(roomAllowed(["a*b"], "axb")).toBe(false);
    expect(roomAllowed(["a*b"], "ab")).toBe(false);
    expect(roomAllowed(["*b"], "ab")).toBe(false);
    expect(roomAllowed(["*b"], "*b")).toBe(true);
  });

  it("only the last * is special", () => {
    expect(roomAllowed(["a**"], "a*x")).toBe(true);
    expect(roomAllowed(["a**"], "ax")).toBe(false);
    expect(roomAllowed(["a*b*"], "a*bc")).toBe(true);
    expect(roomAllowed(["a*b*"], "axbc")).toBe(false);
  });

  it("the empty pattern matches nothing real", () => {
    expect(roomAllowed([""], "lobby")).toBe(false);
  });

  it("property: a pattern without * admits exactly itself; prefix + * admits every extension", () => {
    const noStar = fc.string().filter((s) => !s.endsWith("*"));
    // The room is the pattern itself, an extension of it, a prefix of it, or anything: equality is drawn often.
    const pair = noStar.chain((p) => fc.tuple(fc.constant(p), fc.oneof(fc.constant(p), fc.string().map((x) => p + x), fc.nat(p.length).map((n) => p.slice(0, n)), fc.string())));
    fc.assert(
      fc.property(pair, fc.string(), ([p, room], ext) => {
        expect(roomAllowed([p], room)).toBe(p === room);
        expect(roomAllowed([`${p}*`], room)).toBe(room.startsWith(p));
        expect(roomAllowed([`${p}*`], p + ext)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
