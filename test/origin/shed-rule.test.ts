/**
 * Shedding behind a late healthy stream (SPEC v1.2 section 6): "the senders
 * holding the most of its backlog are refused first; a member within its share
 * is never refused because another floods". Retried live against `npm start`
 * (issue 19): a member sending once a second behind a 1.5-s origin was shed as
 * soon as its few waiting messages reached "an equal part" of a backlog the
 * flooder kept refilling. Only the strictly biggest holder is shed now.
 */
import { describe, expect, it } from "vitest";
import { SHED_FLOOR, StreamShares } from "../../src/origin/shares.ts";

const holding = (counts: Record<string, number>) => {
  const s = new StreamShares();
  for (const [user, n] of Object.entries(counts)) s.add(true, user, n, n * 100);
  return s;
};

describe("shedding: the biggest holder only", () => {
  it("a light sender holding as much as the flooder right now is not shed; the flooder is once it holds more", () => {
    expect(holding({ flooder: 11, occasional: 11 }).overPart("occasional")).toBe(false);
    expect(holding({ flooder: 11, occasional: 11 }).overPart("flooder")).toBe(false);
    expect(holding({ flooder: 12, occasional: 11 }).overPart("flooder")).toBe(true);
    expect(holding({ flooder: 12, occasional: 11 }).overPart("occasional")).toBe(false);
  });

  it("a lone sender behind a late stream is shed (from SHED_FLOOR on); a newcomer with nothing waiting never is", () => {
    expect(holding({ alice: SHED_FLOOR }).overPart("alice")).toBe(true);
    expect(holding({ alice: SHED_FLOOR - 1 }).overPart("alice")).toBe(false);
    expect(holding({ alice: 50 }).overPart("bob")).toBe(false);
  });
});
