/** The send loop both flushers share (src/observability/sender.ts). */
import { describe, expect, it } from "vitest";
import type { FlushBatch, MetricsSink } from "../../src/observability/batch.ts";
import { Counters } from "../../src/observability/metrics.ts";
import { BatchSender, MAX_PENDING_BATCHES, newOutbox, queueBatch, type Outbox } from "../../src/observability/sender.ts";
import { MAX_BATCH_AGE_MS } from "../../src/observability/batch.ts";

const EXT = "wsprism_ext_messages_total";

/** A sink that fails while `down` and records every call's seqs. */
function fakeSink() {
  const calls: number[][] = [];
  const sink = {
    down: false,
    calls,
    add: async (b: FlushBatch[]) => {
      calls.push(b.map((x) => x.seq));
      if (sink.down) throw new Error("down");
      return { applied: b.length, duplicates: 0 };
    },
  };
  return sink satisfies MetricsSink;
}

describe("queueBatch", () => {
  it("numbers batches, skips an empty one unless gauges go, and stops draining at MAX_PENDING_BATCHES", () => {
    const box = newOutbox("r");
    const c = new Counters();
    expect(queueBatch(box, c, Date.now())).toBe(false); // nothing to say
    expect(queueBatch(box, c, Date.now(), [])).toBe(true); // an empty gauge report still goes (it clears)
    c.inc(EXT, { tenant: "a" }, 2);
    expect(queueBatch(box, c, Date.now())).toBe(true);
    expect(box.pending.map((b) => [b.seq, b.deltas.length, b.gauges])).toEqual([[1, 0, []], [2, 1, undefined]]);
    while (box.pending.length < MAX_PENDING_BATCHES) queueBatch(box, c, Date.now(), []);
    c.inc(EXT, { tenant: "a" }, 5);
    expect(queueBatch(box, c, Date.now())).toBe(false);
    expect(c.get(EXT, { tenant: "a" })).toBe(5); // kept in the counters, not lost
  });

  it("drops batches too old for the aggregator to apply", () => {
    const box: Outbox = newOutbox("w");
    const now = Date.now();
    box.pending.push({ source: box.source, seq: 1, at: now - MAX_BATCH_AGE_MS - 1, deltas: [["x", 1]] });
    box.seq = 1;
    queueBatch(box, new Counters(), now);
    expect(box.pending).toEqual([]);
  });
});

describe("BatchSender", () => {
  it("persists before sending and after the ack, keeps seqs across a failure, and reports failures and the recovery", async () => {
    const sink = fakeSink();
    const persisted: number[][] = [];
    const failures: number[] = [];
    let recovered = 0;
    const sender = new BatchSender({
      persist: (box) => persisted.push(box.pending.map((b) => b.seq)),
      failed: (n) => failures.push(n),
      recovered: () => recovered++,
    });
    const box = newOutbox("r");
    const c = new Counters();
    c.inc(EXT, { tenant: "a" });
    queueBatch(box, c, Date.now());
    sink.down = true;
    expect(await sender.send(box, sink)).toBe(false);
    c.inc(EXT, { tenant: "a" });
    queueBatch(box, c, Date.now());
    expect(await sender.send(box, sink)).toBe(false);
    sink.down = false;
    expect(await sender.send(box, sink)).toBe(true);
    expect(sink.calls).toEqual([[1], [1, 2], [1, 2]]); // the same seqs again: the aggregator dedupes them
    expect(failures).toEqual([1, 2]);
    expect(recovered).toBe(1);
    expect(persisted).toEqual([[1], [1, 2], [1, 2], []]);
    expect(await sender.send(box, sink)).toBe(true); // nothing pending: no call
    expect(sink.calls).toHaveLength(3);
  });
});
