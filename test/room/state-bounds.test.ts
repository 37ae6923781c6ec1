/**
 * Bounded hot `state` storage (SPEC v1.1 section 5, issue 9 finding 3): at most
 * 64 kept (svc, op) keys per sender and `limits.max_state_bytes` per room; a frame
 * over either is RESOURCE_EXHAUSTED (or dropped when silent) and the kept states
 * stay intact and persistable. Also: closing a member never depends on cleanup
 * succeeding. A sender's quarter of the budget (v1.2): state-share.test.ts.
 *
 * Tenants `state-bound` / `state-bound-silent` (test-tenants.yaml): 200 KiB per
 * room, 51,200 bytes per sender: two BIG states.
 */
import { env, exports } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { decodeOutbound } from "../../src/protocol/hot.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { decodeBatch } from "../../src/room/state.ts";
import { connect, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const TENANT = "state-bound";
const SILENT = "state-bound-silent";
const MAX_STATE_BYTES = 204_800;
const BIG = 24_000;
/**
 * Two sockets flooding 24 KB states on 150 opcodes each: 7 MB if nothing were
 * bounded, more than one storage value can hold (2 MB on Cloudflare).
 */
const FLOOD = 150;
const flood = (c: TestClient) => {
  for (let op = 100; op < 100 + FLOOD; op++) c.sendHot(3, op, payload(BIG, op));
};

const join = (user: string, room: string, tenant = TENANT) => connect({ tenant, room, ticket: `dev:${user}` });
const stub = (room: string, tenant = TENANT) => env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const payload = (size: number, first: number) => new Uint8Array(size).fill(first);

interface Kept {
  len: number;
  value: number;
}

/** Read batch frames until `count` states arrived: "sender:op" -> payload length and first byte. */
async function states(c: TestClient, count: number, timeoutMs = 3000): Promise<Map<string, Kept>> {
  const out = new Map<string, Kept>();
  while (out.size < count) {
    const inner = decodeBatch(await c.nextBinary(timeoutMs));
    if (!inner) throw new Error("not a batch frame");
    for (const f of inner) {
      const d = decodeOutbound(f)!;
      out.set(`${d.sender}:${d.op}`, { len: d.payload.byteLength, value: d.payload[0]! });
    }
  }
  return out;
}

/** The sys.error frames in what arrived within `ms`. */
async function errorsWithin(c: TestClient, ms = 300) {
  return (await c.quiet(ms)).flatMap((m) => (m.kind === "text" && m.json.type === "error" ? [m.json.data] : []));
}

type Inc = { name: string; labels: Record<string, string> };
type Recording = { testIncs: Inc[] };
/** Record counter increments as they happen (the metrics flush drains the counters themselves). */
function recordCounters(o: RoomObject): void {
  const incs: Inc[] = [];
  (o as unknown as Recording).testIncs = incs;
  const inc = o.counters.inc.bind(o.counters);
  o.counters.inc = (name, labels, by) => {
    incs.push({ name, labels });
    inc(name, labels, by);
  };
}
const recorded = (room: string, name: string, tenant = TENANT) =>
  runInDurableObject(stub(room, tenant), (o: RoomObject) =>
    (o as unknown as Recording).testIncs.filter((i) => i.name === name).map((i) => i.labels),
  );
/** Tenant labels of the recorded `wsprism_internal_errors_total` increments. */
const recordedErrors = async (room: string) =>
  (await recorded(room, "wsprism_internal_errors_total")).map((l) => l.tenant ?? "-");

/** Wait until the tick stopped, i.e. the room saved its states and could hibernate. */
async function untilIdle(room: string, tenant = TENANT): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (!(await runInDurableObject(stub(room, tenant), (o: RoomObject) => o.state.ticking()))) return;
    await sleep(50);
  }
  throw new Error("state tick never stopped");
}

describe("state storage: 64 keys per sender", () => {
  it("the 65th distinct (svc, op) of a sender is RESOURCE_EXHAUSTED; replacing a kept key still works", async () => {
    const room = uniqueRoom("keys");
    const a = await join("alice", room);
    for (let op = 0; op < 64; op++) a.sendHot(3, op, [op]);
    a.sendHot(3, 64, [200], 65);
    a.sendHot(3, 7, [77]); // a kept key: a same-size replacement always succeeds
    const errors = await errorsWithin(a);
    expect(errors).toEqual([expect.objectContaining({ code: "RESOURCE_EXHAUSTED", seq: 65 })]);

    const c = await join("carol", room);
    const kept = await states(c, 64);
    const slot = a.authed.data.slot;
    expect(kept.size).toBe(64);
    expect(kept.has(`${slot}:64`)).toBe(false);
    expect(kept.get(`${slot}:7`)).toEqual({ len: 1, value: 77 });
    expect(kept.get(`${slot}:63`)).toEqual({ len: 1, value: 63 });
    expect((await c.quiet(200)).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it("with hot_error_mode silent the 65th key is dropped without an answer, and counted", async () => {
    const room = uniqueRoom("keys-silent");
    const a = await join("alice", room, SILENT);
    await runInDurableObject(stub(room, SILENT), recordCounters);
    for (let op = 0; op < 65; op++) a.sendHot(3, op, [op], op);
    expect(await errorsWithin(a)).toEqual([]);
    const c = await join("carol", room, SILENT);
    const kept = await states(c, 64);
    expect(kept.size).toBe(64);
    expect(kept.has(`${a.authed.data.slot}:64`)).toBe(false);
    const refused = (await recorded(room, "wsprism_policy_decisions_total", SILENT)).filter((l) => l.decision !== "allow");
    expect(refused).toEqual([{ tenant: SILENT, lane: "hot", decision: "drop", reason: "state_limit" }]);
  });
});

describe("state storage: max_state_bytes per room", () => {
  it("refuses what would exceed the room budget, counts only the growth of a replacement, keeps states intact", async () => {
    const room = uniqueRoom("bytes");
    const b = await join("bob", room);
    b.sendHot(3, 1, [9]); // the innocent member's small state first
    // Four members at (nearly) their quarter each: 4 x 48,140 bytes.
    const heavy: TestClient[] = [];
    for (const u of ["alice", "dave", "erin", "frank"]) heavy.push(await join(u, room));
    for (const h of heavy) {
      h.sendHot(3, 1, payload(BIG, 1));
      h.sendHot(3, 2, payload(BIG, 2));
    }
    await sleep(100); // 192,631 bytes kept now, 12,169 left
    b.sendHot(3, 5, payload(12_100, 5), 5); // a new key over the budget (12,174)
    b.sendHot(3, 1, payload(12_200, 22), 22); // growth of a kept key over the budget (12,203)
    const a = heavy[0]!;
    a.sendHot(3, 1, payload(BIG, 11)); // same size: always fits
    a.sendHot(3, 2, payload(1000, 33)); // smaller: frees room
    const refused = expect.stringContaining("the room's kept states");
    expect(await errorsWithin(b)).toEqual([
      expect.objectContaining({ code: "RESOURCE_EXHAUSTED", seq: 5, msg: refused }),
      expect.objectContaining({ code: "RESOURCE_EXHAUSTED", seq: 22, msg: refused }),
    ]);
    b.sendHot(3, 5, payload(12_100, 55), 55); // fits now that alice's op 2 shrank
    expect(await errorsWithin(b)).toEqual([]);
    for (const h of heavy) expect(await errorsWithin(h, 0)).toEqual([]);

    const used = await runInDurableObject(stub(room), (o: RoomObject) => o.state.bytes());
    expect(used).toBeLessThanOrEqual(MAX_STATE_BYTES);

    const c = await join("carol", room);
    const kept = await states(c, 10);
    const sb = b.authed.data.slot;
    const sa = a.authed.data.slot;
    const others = heavy.slice(1).flatMap((h) => [
      [`${h.authed.data.slot}:1`, { len: BIG, value: 1 }],
      [`${h.authed.data.slot}:2`, { len: BIG, value: 2 }],
    ]);
    expect(Object.fromEntries(kept)).toEqual({
      [`${sb}:1`]: { len: 1, value: 9 }, // the refused growth left the old state
      [`${sb}:5`]: { len: 12_100, value: 55 },
      [`${sa}:1`]: { len: BIG, value: 11 },
      [`${sa}:2`]: { len: 1000, value: 33 },
      ...Object.fromEntries(others),
    });
  });

  it("a late joiner after hibernation gets every kept state, the innocent member's included", async () => {
    const room = uniqueRoom("evict");
    const a = await join("alice", room);
    const b = await join("bob", room);
    b.sendHot(3, 1, [7]);
    await sleep(100);
    const m = await join("mallory", room);
    flood(a);
    flood(m);
    await untilIdle(room);
    const kept = await runInDurableObject(stub(room), (o: RoomObject) => o.state.size());
    expect(kept).toBeGreaterThan(1);
    expect(kept).toBeLessThanOrEqual(1 + Math.floor(MAX_STATE_BYTES / BIG));

    await evictDurableObject(stub(room), { webSockets: "hibernate" });
    const c = await join("carol", room);
    const got = await states(c, kept);
    expect(got.size).toBe(kept);
    expect(got.get(`${b.authed.data.slot}:1`)).toEqual({ len: 1, value: 7 });
    for (const [key, s] of got) if (!key.startsWith(`${b.authed.data.slot}:`)) expect(s.len).toBe(BIG);
  });
});

describe("state storage: persisted in pieces", () => {
  type Rows = Array<[string, number]>;
  const rows = (room: string) =>
    runInDurableObject(stub(room), (o: RoomObject): Rows =>
      [...o.roomState.storage.kv.list<Uint8Array>({ prefix: "state/" })].map(([k, v]) => [k, v.byteLength]),
    );

  it("one storage row per kept state, written when idle; a leaver's rows are deleted", async () => {
    const room = uniqueRoom("rows");
    const a = await join("alice", room);
    const b = await join("bob", room);
    a.sendHot(3, 1, payload(BIG, 1));
    a.sendHot(3, 2, [2]);
    b.sendHot(3, 1, [3]);
    await untilIdle(room);
    const saved = await rows(room);
    expect(saved.map(([, len]) => len).sort((x, y) => x - y)).toEqual([7, 7, BIG + 6]);
    a.close();
    await b.nextOf("sys", "presence");
    expect(await rows(room)).toEqual([[expect.stringMatching(/^state\/[0-9a-f]{8}$/), 7]]);
  });

  it("a save that fails on the idle tick is counted, and retried by the next save", async () => {
    const room = uniqueRoom("save-fails");
    const a = await join("alice", room);
    await runInDurableObject(stub(room), (o: RoomObject) => {
      recordCounters(o);
      const table = o.state as unknown as { persist(): void; realPersist?: () => void };
      table.realPersist = table.persist.bind(table);
      table.persist = () => {
        throw new Error("simulated storage failure");
      };
    });
    a.sendHot(3, 1, [1]);
    await untilIdle(room);
    expect(await recordedErrors(room)).toEqual(["-"]);
    expect(await rows(room)).toEqual([]);
    await runInDurableObject(stub(room), (o: RoomObject) => {
      const table = o.state as unknown as { persist(): void; realPersist: () => void };
      table.persist = table.realPersist;
    });
    a.sendHot(3, 2, [2]);
    await untilIdle(room);
    expect((await rows(room)).length).toBe(2);
  });

  it("a pre-v1.1 snapshot (one value) is read once, then kept as rows", async () => {
    const room = uniqueRoom("legacy");
    const a = await join("alice", room);
    const slot = a.authed.data.slot;
    const frame = new Uint8Array([1, 3, 9, 0x80, slot & 0xff, slot >> 8, 42]);
    await runInDurableObject(stub(room), (o: RoomObject) => {
      o.roomState.storage.kv.put("state:snapshot", [[(slot << 16) | (3 << 8) | 9, slot, frame.buffer]]);
    });
    await evictDurableObject(stub(room), { webSockets: "hibernate" });
    const c = await join("carol", room);
    expect(Object.fromEntries(await states(c, 1))).toEqual({ [`${slot}:9`]: { len: 1, value: 42 } });
    await untilIdle(room);
    expect(await runInDurableObject(stub(room), (o: RoomObject) => o.roomState.storage.kv.get("state:snapshot"))).toBeUndefined();
    expect((await rows(room)).length).toBe(1);
  });
});

describe("closing a member never depends on its cleanup", () => {
  async function kick(room: string, user: string): Promise<Response> {
    return exports.default.fetch(`http://gw.test/v1/tenants/${TENANT}/rooms/${room}/kick`, {
      method: "POST",
      headers: { Authorization: "Bearer test-api-key-0123456789", "Content-Type": "application/json" },
      body: JSON.stringify({ user }),
    });
  }

  it("a kick through the HTTP API of a member holding much state answers 202 and closes it", async () => {
    const room = uniqueRoom("kick");
    const a = await join("alice", room);
    const m = await join("mallory", room);
    m.sendHot(3, 1, [5]);
    await sleep(100);
    flood(a);
    flood(m);
    await untilIdle(room);
    const res = await kick(room, "alice");
    expect(res.status, await res.clone().text()).toBe(202);
    expect(await res.json()).toEqual({ kicked: 1 });
    expect((await a.nextOf("sys", "kicked")).data).toEqual({ reason: "kicked" });
    expect((await a.closed()).code).toBe(4003);
    // Only alice's states went with her.
    const left = await runInDurableObject(stub(room), (o: RoomObject) => o.state.size());
    expect(left).toBeGreaterThan(0);
    const c = await join("carol", room);
    for (const key of (await states(c, left)).keys()) expect(key.startsWith(`${m.authed.data.slot}:`)).toBe(true);
  });

  it("when state cleanup throws, the socket is still closed, the others still see the leave, the error is counted", async () => {
    const room = uniqueRoom("throw");
    const a = await join("alice", room);
    const b = await join("bob", room);
    a.sendHot(3, 1, [1]);
    await untilIdle(room);
    await runInDurableObject(stub(room), (o: RoomObject) => {
      recordCounters(o);
      o.state.left = () => {
        throw new Error("simulated storage failure");
      };
    });
    const res = await kick(room, "alice");
    expect(res.status, await res.clone().text()).toBe(202);
    expect((await a.closed()).code).toBe(4003);
    const leave = await b.nextOf("sys", "presence");
    expect(leave.data).toMatchObject({ event: "leave", user: "alice" });
    expect(await recordedErrors(room)).toEqual([TENANT]);
  });
});
