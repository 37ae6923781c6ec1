/**
 * The connection storm's order of targets (bench/lib/storm.ts sliceOrder): the
 * storms of gateway, partyserver and the bare baseline take turns so that a
 * machine getting busier or calmer during the run does not favour one of them.
 * With two targets it must stay the ABBA order the other scenarios use.
 */
import { describe, expect, it } from "vitest";
import { sliceOrder } from "../../bench/lib/storm.ts";

/** Sum of each target's positions over the slices [from, to). */
function positionSums(targets: string[], from: number, to: number): Record<string, number> {
  const sums: Record<string, number> = Object.fromEntries(targets.map((t) => [t, 0]));
  for (let i = from; i < to; i++) sliceOrder(targets, i).forEach((t, pos) => (sums[t]! += pos));
  return sums;
}

describe("storm sliceOrder", () => {
  const three = ["gateway", "party", "baseline"];

  it("runs every target once per slice", () => {
    for (let i = 0; i < 12; i++) expect([...sliceOrder(three, i)].sort()).toEqual([...three].sort());
  });

  it("gives every target the same mean position in each pair of slices (the quick run has one pair)", () => {
    for (let pair = 0; pair < 6; pair++) {
      const sums = positionSums(three, 2 * pair, 2 * pair + 2);
      expect(new Set(Object.values(sums)).size, JSON.stringify(sums)).toBe(1);
    }
  });

  it("lets each target go first in turn over the pairs", () => {
    const firsts = [0, 2, 4].map((i) => sliceOrder(three, i)[0]);
    expect(firsts).toEqual(["gateway", "party", "baseline"]);
  });

  it("is ABBA for two targets", () => {
    expect([0, 1, 2, 3].map((i) => sliceOrder(["g", "b"], i).join(""))).toEqual(["gb", "bg", "bg", "gb"]);
  });

  it("does not reorder the caller's array", () => {
    const targets = ["a", "b", "c"];
    sliceOrder(targets, 1);
    sliceOrder(targets, 2);
    expect(targets).toEqual(["a", "b", "c"]);
  });
});
