import { env } from "cloudflare:workers";
import { createExecutionContext, evictDurableObject, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  collect,
  flushWorkerMetrics,
  GAUGE_TTL_MS,
  METRICS_ALARM,
  MAX_BATCH_AGE_MS,
  recordWorkerMetric,
  RoomMetrics,
  ROOM_STATE_KEY,
  type FlushBatch,
  type MetricsObject,
  type MetricsSnapshot,
  type MetricsSink,
  type RetryScheduler,
  type SessionCounts,
} from "../../src/observability/aggregator.ts";
import { Counters } from "../../src/observability/metrics.ts";
import { seriesKey } from "../../src/observability/prometheus.ts";

let n = 0;
const unique = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;
/**
 * A private aggregator object (not one of the /metrics shards). A stub belongs to
 * the context that made it, so this handle makes a fresh one for each use (the
 * flushers run inside other objects).
 */
class Agg {
  readonly name = unique("agg");
  stub(): DurableObjectStub<MetricsObject> {
    return env.METRICS.get(env.METRICS.idFromName(this.name));
  }
  add(batches: FlushBatch[]) {
    return this.stub().add(batches);
  }
  snapshot() {
    return this.stub().snapshot();
  }
}
const aggregator = () => new Agg();
/** An object whose storage hosts a test flusher (a MetricsObject: it has no flusher of its own). */
const host = () => env.METRICS.get(env.METRICS.idFromName(unique("host")));
const sinkOf = (agg: Agg): MetricsSink => ({ add: (b) => agg.add(b) as Promise<{ applied: number; duplicates: number }> });
const down: MetricsSink = { add: async () => Promise.reject(new Error("aggregator down")) };

const EXT = (tenant: string) => seriesKey("wsprism_ext_messages_total", { tenant });
const SESSIONS = (tenant: string) => seriesKey("wsprism_ws_sessions_active", { tenant });

async function snapshot(agg: Agg) {
  const s = (await agg.snapshot()) as MetricsSnapshot;
  return { counters: new Map(s.counters), gauges: new Map(s.gauges) };
}

const batch = (source: string, seq: number, deltas: Array<[string, number]>, gauges?: Array<[string, number]>): FlushBatch => ({
  source,
  seq,
  at: Date.now(),
  deltas,
  ...(gauges ? { gauges } : {}),
});

/** Run `fn` with a fresh flusher over `hostStub`'s storage (a new instance each call, like a wake). */
function withFlusher<R>(
  hostStub: DurableObjectStub<MetricsObject>,
  sink: MetricsSink,
  fn: (m: RoomMetrics, counters: Counters, state: DurableObjectState) => Promise<R>,
  opts: { sessions?: SessionCounts; alarms?: RetryScheduler; delayMs?: number } = {},
): Promise<R> {
  return runInDurableObject(hostStub, async (_instance, state) => {
    const counters = new Counters();
    const m = new RoomMetrics(state, env, counters, opts.sessions ?? (() => []), {
      sink: () => sink,
      alarms: opts.alarms,
      delayMs: opts.delayMs ?? 60_000,
      intervalMs: 0,
    });
    return fn(m, counters, state);
  });
}

describe("MetricsObject", () => {
  it("sums the deltas of several flushers", async () => {
    const agg = aggregator();
    const [a, b] = [host(), host()];
    await withFlusher(a, sinkOf(agg), async (m, c) => {
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 3);
      c.inc("wsprism_hot_frames_total", { tenant: "demo", mode: "relay" });
      expect(await m.flush()).toBe(true);
    });
    await withFlusher(b, sinkOf(agg), async (m, c) => {
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 4);
      c.inc("wsprism_ext_messages_total", { tenant: "hooks" });
      expect(await m.flush()).toBe(true);
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 10);
      expect(await m.flush()).toBe(true);
      expect(m.pendingBatches()).toBe(0);
    });
    const s = await snapshot(agg);
    expect(s.counters.get(EXT("demo"))).toBe(17);
    expect(s.counters.get(EXT("hooks"))).toBe(1);
    expect(s.counters.get(seriesKey("wsprism_hot_frames_total", { tenant: "demo", mode: "relay" }))).toBe(1);
  });

  it("applies a batch once: the same (source, seq) again is a duplicate", async () => {
    const agg = aggregator();
    const b1 = batch("r_src", 1, [[EXT("demo"), 5]]);
    expect(await agg.add([b1])).toEqual({ applied: 1, duplicates: 0 });
    expect(await agg.add([b1])).toEqual({ applied: 0, duplicates: 1 });
    // A retry of 1 together with the new 2: only 2 counts.
    expect(await agg.add([b1, batch("r_src", 2, [[EXT("demo"), 1]])])).toEqual({ applied: 1, duplicates: 1 });
    // Another source's seq 1 is its own.
    expect(await agg.add([batch("r_other", 1, [[EXT("demo"), 100]])])).toEqual({ applied: 1, duplicates: 0 });
    expect((await snapshot(agg)).counters.get(EXT("demo"))).toBe(106);
  });

  it("refuses malformed batches and series, negative deltas and batches that are too old", async () => {
    const agg = aggregator();
    const r = await agg.add([
      batch("r_x", 1, [
        ["not a series{", 1],
        [EXT("demo"), -5],
        [EXT("demo"), 2],
      ]),
      { source: "r_x", seq: 0, at: Date.now(), deltas: [] },
      { ...batch("r_y", 1, [[EXT("demo"), 50]]), at: Date.now() - MAX_BATCH_AGE_MS - 1000 },
    ]);
    expect(r.applied).toBe(1);
    const s = await snapshot(agg);
    expect(s.counters.get(EXT("demo"))).toBe(2);
    expect(s.counters.get(seriesKey("wsprism_metrics_dropped_total", { reason: "malformed" }))).toBe(3);
    expect([...s.counters.keys()].some((k) => k.startsWith("not a series"))).toBe(false);
  });

  it("gauges are absolute per source, summed over sources, cleared by 0 and expired when not refreshed", async () => {
    const agg = aggregator();
    await agg.add([batch("r_a", 1, [], [[SESSIONS("demo"), 3]])]);
    await agg.add([batch("r_b", 1, [], [[SESSIONS("demo"), 2], [SESSIONS("hooks"), 1]])]);
    expect((await snapshot(agg)).gauges.get(SESSIONS("demo"))).toBe(5);
    // A new report replaces the old one (it is not added to it).
    await agg.add([batch("r_a", 2, [], [[SESSIONS("demo"), 1]])]);
    expect((await snapshot(agg)).gauges.get(SESSIONS("demo"))).toBe(3);
    // A batch without gauges leaves them alone; an empty report clears them.
    await agg.add([batch("r_b", 2, [[EXT("demo"), 1]])]);
    expect((await snapshot(agg)).gauges.get(SESSIONS("hooks"))).toBe(1);
    await agg.add([batch("r_b", 3, [], [])]);
    let s = await snapshot(agg);
    expect(s.gauges.get(SESSIONS("demo"))).toBe(1);
    expect(s.gauges.has(SESSIONS("hooks"))).toBe(false);
    // r_a dies without reporting 0: its report stops counting once GAUGE_TTL_MS passed
    // (simulated by moving the report's expiry into the past).
    await runInDurableObject(agg.stub(), (_i, state) => {
      const row = state.storage.sql.exec<{ expires: number }>("SELECT expires FROM gauges WHERE source = 'r_a'").one();
      expect(row.expires - Date.now()).toBeGreaterThan(GAUGE_TTL_MS - 5_000);
      state.storage.sql.exec("UPDATE gauges SET expires = ? WHERE source = 'r_a'", Date.now() - 1);
    });
    s = await snapshot(agg);
    expect(s.gauges.has(SESSIONS("demo"))).toBe(false);
    // A refresh before the expiry keeps it: report again, then it counts again.
    await agg.add([batch("r_a", 3, [], [[SESSIONS("demo"), 4]])]);
    expect((await snapshot(agg)).gauges.get(SESSIONS("demo"))).toBe(4);
  });

  it("keeps its totals across an eviction (SQLite)", async () => {
    const agg = aggregator();
    await agg.add([batch("r_e", 1, [[EXT("demo"), 7]])]);
    await evictDurableObject(agg.stub());
    await agg.add([batch("r_e", 1, [[EXT("demo"), 7]])]); // still a duplicate after the restart
    expect((await snapshot(agg)).counters.get(EXT("demo"))).toBe(7);
  });
});

describe("RoomMetrics (the room's flusher)", () => {
  it("keeps unacknowledged deltas in storage and a new instance re-sends them", async () => {
    const agg = aggregator();
    const h = host();
    const retries: Array<[string, number]> = [];
    const alarms: RetryScheduler = { scheduleBy: (name, at) => retries.push([name, at]), clear: () => {} };
    await withFlusher(h, down, async (m, c, state) => {
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 2);
      expect(await m.flush()).toBe(false);
      expect(m.pendingBatches()).toBe(1);
      expect(state.storage.kv.get<{ pending: FlushBatch[] }>(ROOM_STATE_KEY)!.pending[0]!.deltas).toEqual([[EXT("demo"), 2]]);
      // More increments while the aggregator is down go into a second batch.
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 3);
      expect(await m.flush()).toBe(false);
      expect(m.pendingBatches()).toBe(2);
    }, { alarms });
    // A durable retry was scheduled on the room's alarm.
    expect(retries.length).toBeGreaterThan(0);
    expect(retries[0]![0]).toBe(METRICS_ALARM);
    expect(retries[0]![1]).toBeGreaterThan(Date.now() - 1000);

    await evictDurableObject(h);
    await withFlusher(h, sinkOf(agg), async (m) => {
      expect(m.pendingBatches()).toBe(2);
      expect(await m.flush()).toBe(true); // the alarm's retry
      expect(m.pendingBatches()).toBe(0);
    }, { alarms });
    expect((await snapshot(agg)).counters.get(EXT("demo"))).toBe(5);
  });

  it("re-sends after a lost answer without double counting", async () => {
    const agg = aggregator();
    // The aggregator applies the batch, but the answer never arrives.
    const lostAnswer: MetricsSink = {
      add: async (batches) => {
        await agg.add(batches);
        throw new Error("connection reset");
      },
    };
    await withFlusher(host(), lostAnswer, async (m, c) => {
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 4);
      expect(await m.flush()).toBe(false);
      expect(await m.flush()).toBe(false); // retried, applied again? no: a duplicate
    });
    expect((await snapshot(agg)).counters.get(EXT("demo"))).toBe(4);
  });

  it("a new instance re-sends a batch left pending by an eviction on its own, shortly after the wake", async () => {
    const agg = aggregator();
    const h = host();
    // With the room's alarm for retries, a failed flush leaves no timer behind (the object may sleep).
    const alarms: RetryScheduler = { scheduleBy: () => {}, clear: () => {} };
    await withFlusher(h, down, async (m, c) => {
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 9);
      await m.flush();
    }, { alarms });
    await evictDurableObject(h); // would wait for a pending timer
    await withFlusher(h, sinkOf(agg), async (m) => {
      expect(m.pendingBatches()).toBe(1);
      // No explicit flush: the constructor armed the timer (delay 30 ms here).
      await waitFor(() => m.pendingBatches() === 0);
    }, { delayMs: 30 });
    expect((await snapshot(agg)).counters.get(EXT("demo"))).toBe(9);
  });

  it("every increment arms the flush timer (nothing waits for an explicit flush)", async () => {
    const agg = aggregator();
    await withFlusher(host(), sinkOf(agg), async (_m, c) => {
      c.inc("wsprism_ext_messages_total", { tenant: "demo" });
      c.inc("wsprism_ext_messages_total", { tenant: "demo" });
      await waitFor(async () => (await snapshot(agg)).counters.get(EXT("demo")) === 2);
      expect(c.values.size).toBe(0);
      // It listens (Counters.onInc) instead of replacing the method of an object the room owns.
      expect(Object.hasOwn(c, "inc")).toBe(false);
    }, { delayMs: 30 });
  });

  it("reports the session gauge with each flush while it has sessions, and 0 at once when the last one leaves", async () => {
    const agg = aggregator();
    let sessions = 0;
    await withFlusher(host(), sinkOf(agg), async (m, c) => {
      sessions = 2;
      await m.sessionsChanged(); // debounced (not the last leaving)
      await m.flush();
      expect((await snapshot(agg)).gauges.get(SESSIONS("demo"))).toBe(2);
      // A counter-only flush refreshes the report too.
      c.inc("wsprism_ext_messages_total", { tenant: "demo" });
      await m.flush();
      expect((await snapshot(agg)).gauges.get(SESSIONS("demo"))).toBe(2);
      // The housekeeping refresh sends right away.
      expect(await m.touchGauge()).toBe(true);
      sessions = 0;
      expect(await m.sessionsChanged()).toBe(true); // flushed immediately
      expect((await snapshot(agg)).gauges.has(SESSIONS("demo"))).toBe(false);
    }, { sessions: () => [["demo", sessions]] });
  });

  it("a flush asked for during a send runs after it", async () => {
    const agg = aggregator();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: MetricsSink = { add: async (b) => { await gate; return agg.add(b); } };
    await withFlusher(host(), slow, async (m, c) => {
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 1);
      const first = m.flush();
      c.inc("wsprism_ext_messages_total", { tenant: "demo" }, 2);
      const second = m.flush();
      release();
      expect(await first).toBe(true);
      expect(await second).toBe(true);
    });
    expect((await snapshot(agg)).counters.get(EXT("demo"))).toBe(3);
  });
});

describe("Worker-side metrics", () => {
  it("recordWorkerMetric batches increments and sends them from ctx.waitUntil", async () => {
    const before = (await collect(env)).counters.find(([k]) => k === seriesKey("wsprism_ws_upgrades_total", { tenant: "demo", status: "401" }))?.[1] ?? 0;
    const ctx = createExecutionContext();
    recordWorkerMetric(env, ctx, "wsprism_ws_upgrades_total", { tenant: "demo", status: "401" });
    recordWorkerMetric(env, ctx, "wsprism_ws_upgrades_total", { tenant: "demo", status: "401" }, 2);
    await waitOnExecutionContext(ctx);
    const after = (await collect(env)).counters.find(([k]) => k === seriesKey("wsprism_ws_upgrades_total", { tenant: "demo", status: "401" }))?.[1];
    expect(after).toBe(before + 3);
  });

  it("keeps a failed Worker batch and re-sends it, counted once", async () => {
    const agg = aggregator();
    const key = seriesKey("wsprism_handshake_rejections_total", { tenant: "-", reason: "handshake_ip" });
    recordWorkerMetric(env, undefined, "wsprism_handshake_rejections_total", { tenant: "-", reason: "handshake_ip" }, 5);
    const lostAnswer: MetricsSink = { add: async (b) => { await agg.add(b); throw new Error("lost"); } };
    expect(await flushWorkerMetrics(env, lostAnswer)).toBe(false);
    expect(await flushWorkerMetrics(env, sinkOf(agg))).toBe(true);
    expect((await snapshot(agg)).counters.get(key)).toBe(5);
  });
});

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
