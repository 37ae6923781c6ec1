import { describe, expect, it } from "vitest";
import { Counters } from "../../src/observability/metrics.ts";

describe("Counters", () => {
  it("tells every listener of each increment after counting it, until it unsubscribes", () => {
    const c = new Counters();
    const seen: Array<[string, Record<string, string>, number, number]> = [];
    const off = c.onInc((name, labels, by) => seen.push([name, labels, by, c.get(name, labels)]));
    const other: string[] = [];
    c.onInc((name) => other.push(name));
    c.inc("wsprism_ext_messages_total", { tenant: "a" });
    c.inc("wsprism_ext_messages_total", { tenant: "a" }, 3);
    off();
    c.inc("wsprism_ext_messages_total", { tenant: "a" });
    // The count was already updated when the listener ran (a flusher may drain at once).
    expect(seen).toEqual([
      ["wsprism_ext_messages_total", { tenant: "a" }, 1, 1],
      ["wsprism_ext_messages_total", { tenant: "a" }, 3, 4],
    ]);
    expect(other).toHaveLength(3);
    expect(c.get("wsprism_ext_messages_total", { tenant: "a" })).toBe(5);
  });
});
