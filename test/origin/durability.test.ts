/**
 * When the outbox writes (src/origin/outbox.ts): a message for a healthy stream
 * that sends at once is held in memory while its POST is in flight; anything
 * that must wait (a retry, batch_ms, rows already stored) and every open/close
 * event is written first. Tenant `hooks`: `chat` (open/close/message, batch_ms 0).
 */
import fc from "fast-check";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { checked } from "../helpers/model.ts";
import { Outbox, type OriginEvent } from "../../src/origin/outbox.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { originLog, script, waitForLog } from "../helpers/origin.ts";
import { connect, uniqueRoom } from "../helpers/ws.ts";

const join = (user: string, room: string) => connect({ tenant: "hooks", room, ticket: `dev:${user}` });
const chat = (seq: number) => ({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { n: seq } });
const stub = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`hooks/${room}`));
const storedRows = (state: DurableObjectState) =>
  state.storage.sql.exec<{ kind: string; seq: number | null; batch: string | null }>("SELECT kind, seq, batch FROM outbox ORDER BY n").toArray();

type WatchedStorage = DurableObjectStorage & { readonly written?: string[] };
/**
 * Record every write made through the object's storage API from now on: the
 * SQL statements whose cursors wrote rows (cursor.rowsWritten, read when asked)
 * and kv puts and deletes, whoever makes them.
 */
function watchWrites(state: DurableObjectState): void {
  const storage = state.storage as WatchedStorage;
  const kvWrites: string[] = [];
  const cursors: Array<{ query: string; cursor: SqlStorageCursor<Record<string, SqlStorageValue>> }> = [];
  Object.defineProperty(storage, "written", {
    configurable: true,
    get: () => [
      ...cursors.filter((c) => c.cursor.rowsWritten > 0).map((c) => `sql ${c.query.trim().split(/\s+/).slice(0, 3).join(" ")}: ${c.cursor.rowsWritten} rows`),
      ...kvWrites,
    ],
  });
  const sql = storage.sql;
  const exec = sql.exec.bind(sql);
  sql.exec = ((query: string, ...args: SqlStorageValue[]) => {
    const cursor = exec(query, ...args);
    cursors.push({ query, cursor });
    return cursor;
  }) as typeof sql.exec;
  const written = kvWrites;
  const kv = storage.kv;
  const put = kv.put.bind(kv);
  const del = kv.delete.bind(kv);
  kv.put = ((key: string, value: unknown) => (written.push(`kv.put ${key}`), put(key, value))) as typeof kv.put;
  kv.delete = ((key: string) => (written.push(`kv.delete ${key}`), del(key))) as typeof kv.delete;
}

describe("outbox writes: when waiting, not on receipt", () => {
  it("a message to a healthy idle stream is never written: nothing stored while its POST is in flight, nor after", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1); // the open event (written: lifecycle events always are)
    await script(room, [{ status: 200, delayMs: 400 }], { status: 200 });
    const leaseBefore = await runInDurableObject(stub(room), (o: RoomObject) => o.alarms.get("outbox/chat"));
    a.send(chat(1));
    await waitForLog(room, (l) => l.length === 2); // the POST is now in flight (answer delayed)
    const inFlight = await runInDurableObject(stub(room), (o: RoomObject, state: DurableObjectState) => ({
      rows: storedRows(state),
      size: o.bridge.outbox.size().events,
      lease: o.alarms.get("outbox/chat"),
    }));
    expect(inFlight.rows).toEqual([]);
    expect(inFlight.size).toBe(1); // counted against the room's bounds all the same
    expect(inFlight.lease).toBe(leaseBefore); // no lease written for it either
    expect((await a.nextOf("sys", "ack", 3000)).data).toEqual({ seq: 1 });
    const after = await runInDurableObject(stub(room), (o: RoomObject, state: DurableObjectState) => ({
      rows: storedRows(state),
      size: o.bridge.outbox.size().events,
    }));
    expect(after).toEqual({ rows: [], size: 0 });
  });

  it("a message whose POST fails is written with its batch before the retry, and retried with the same webhook id", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [{ status: 503 }], { status: 200, delayMs: 300 });
    a.send(chat(1));
    const log = await waitForLog(room, (l) => l.length === 3); // the failed POST, then the retry (in flight)
    const stored = await runInDurableObject(stub(room), (o: RoomObject, state: DurableObjectState) => ({
      rows: storedRows(state),
      batch: state.storage.kv.get<{ id: string; attempts: number }>("outbox:batch:chat"),
    }));
    const id = log[1]!.headers["webhook-id"];
    expect(stored.rows).toEqual([{ kind: "message", seq: 1, batch: id }]);
    expect(stored.batch).toMatchObject({ id, attempts: 1 });
    expect(log[2]!.headers["webhook-id"]).toBe(id);
    expect((await a.nextOf("sys", "ack", 5000)).data).toEqual({ seq: 1 });
  });

  it("an open event behind a message in flight: both written in order, with a lease; the origin gets them in order", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [{ status: 200, delayMs: 500 }], { status: 200 });
    a.send(chat(1));
    await waitForLog(room, (l) => l.length === 2);
    await join("bob", room); // bob's open event arrives while alice's message is in flight
    const mid = await runInDurableObject(stub(room), (o: RoomObject, state: DurableObjectState) => ({
      rows: storedRows(state).map((r) => [r.kind, r.seq, r.batch !== null]),
      lease: o.alarms.get("outbox/chat") !== undefined,
    }));
    expect(mid.rows).toEqual([
      ["message", 1, true], // the batch in flight, written with its webhook id
      ["open", null, false],
    ]);
    expect(mid.lease).toBe(true); // a restart now finds and resumes them
    const log = await waitForLog(room, (l) => l.length === 3);
    expect(log[1]!.json.events.map((e: OriginEvent) => e.kind)).toEqual(["message"]);
    expect(log[2]!.json.events.map((e: OriginEvent) => [e.kind, e.user])).toEqual([["open", "bob"]]);
  });

  it("a long busy run of a healthy stream writes nothing and sets no alarm: batch after batch stays in memory", async () => {
    // The bench's collapse past 16,000 events/s: after 50 batches in a row the
    // run yielded to the alarm, which wrote every held message and put the
    // stream on the storage path (a write per event, the output gate on every
    // send), where it never caught up again.
    const room = `shed-${uniqueRoom()}`;
    const shedStub = env.ROOMS.get(env.ROOMS.idFromName(`shed/${room}`));
    await script(room, [{ status: 200, delayMs: 400 }], { status: 200 });
    const a = await connect({ tenant: "shed", room, ticket: "dev:alice" }); // batch_max 5, messages only
    await runInDurableObject(shedStub, (o: RoomObject, state: DurableObjectState) => {
      const outbox = o.bridge.outbox as Outbox & { writes?: number };
      const persist = outbox.persist.bind(outbox);
      outbox.writes = 0;
      outbox.persist = (svc: string) => {
        const wrote = persist(svc);
        if (wrote) outbox.writes! += 1;
        return wrote;
      };
      o.bridge.outbox.size(); // its table is created now, not during the run
      watchWrites(state);
    });
    a.send(chat(1));
    await waitForLog(room, (l) => l.length === 1); // its POST hangs for 400 ms
    const n = 300; // 60 batches of 5 behind it, more than one run's 50
    for (let i = 2; i <= n; i++) a.send(chat(i));
    const acked = new Set<number>();
    while (acked.size < n) acked.add((await a.nextOf("sys", "ack", 5000)).data.seq as number);
    const after = await runInDurableObject(shedStub, (o: RoomObject, state: DurableObjectState) => ({
      storageWrites: (state.storage as WatchedStorage).written,
      writes: (o.bridge.outbox as Outbox & { writes?: number }).writes,
      rows: storedRows(state).length,
      streamAlarm: o.alarms.get("outbox/chat") ?? null,
    }));
    // Nothing written through the storage API itself, at any time of the run (not only persist() after the fact).
    expect(after).toEqual({ storageWrites: [], writes: 0, rows: 0, streamAlarm: null });
    const log = await originLog(room);
    expect(log.flatMap((r) => r.json.events.map((e: OriginEvent) => e.seq))).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  }, 20_000);
});

// --- Model-based: the outbox against a model, with restarts ------------------

interface MRow {
  id: string;
  durable: boolean;
  batch: string | null;
}
interface Model {
  rows: MRow[]; // one stream, in order
  batch: { id: string; durable: boolean } | null;
  next: number;
}
interface Real {
  state: DurableObjectState;
  outbox: Outbox;
}

const SVC = "s";
const event = (id: string, kind: "message" | "open"): OriginEvent => ({
  id,
  kind,
  user: "u",
  sid: "sid",
  svc: SVC,
  type: "t",
  ts: 1,
  trace_id: "c",
});
const persistModel = (m: Model) => {
  for (const r of m.rows) r.durable = true;
  if (m.batch) m.batch.durable = true;
};

class Push implements fc.Command<Model, Real> {
  readonly durable: boolean;
  readonly kind: "message" | "open";
  constructor(durable: boolean, kind: "message" | "open") {
    this.durable = durable;
    this.kind = kind;
  }
  check = () => true;
  run(m: Model, r: Real) {
    const id = `e${m.next++}`;
    const durable = this.durable || this.kind === "open";
    expect(r.outbox.push(SVC, event(id, this.kind), false, 1, false, durable)).toBe("ok");
    // A durable push writes the held rows first; any other message is held in memory.
    if (durable) persistModel(m);
    m.rows.push({ id, durable, batch: null });
  }
  toString = () => `push(${this.kind}${this.durable ? ", durable" : ""})`;
}
class Seal implements fc.Command<Model, Real> {
  readonly max: number;
  constructor(max: number) {
    this.max = max;
  }
  check = (m: Readonly<Model>) => m.batch === null && m.rows.some((x) => x.batch === null);
  run(m: Model, r: Real) {
    const run = r.outbox.headRun(SVC, this.max);
    // Stored rows first while there are any, then memory rows; a batch never mixes them.
    const pool = m.rows.some((x) => x.durable) ? m.rows.filter((x) => x.durable) : m.rows;
    const want = pool.filter((x) => x.batch === null).slice(0, this.max);
    expect(run.map((x) => x.event_id)).toEqual(want.map((x) => x.id));
    const id = `b${m.next++}`;
    r.outbox.seal(run, id, 1);
    for (const x of want) x.batch = id;
    m.batch = { id, durable: want[0]!.durable };
  }
  toString = () => `seal(${this.max})`;
}
class Finish implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>) => m.batch !== null;
  run(m: Model, r: Real) {
    const id = m.batch!.id;
    r.outbox.finish(SVC, id, r.outbox.rows(id));
    m.rows = m.rows.filter((x) => x.batch !== id);
    m.batch = null;
  }
  toString = () => "finish";
}
class Retry implements fc.Command<Model, Real> {
  check = (m: Readonly<Model>) => m.batch !== null;
  run(m: Model, r: Real) {
    const state = r.outbox.current(SVC)!;
    state.attempts += 1;
    r.outbox.update(state); // a batch that waits for a retry is written, with what is behind it
    persistModel(m);
  }
  toString = () => "retry";
}
class Persist implements fc.Command<Model, Real> {
  check = () => true;
  run(m: Model, r: Real) {
    r.outbox.persist(SVC);
    persistModel(m);
  }
  toString = () => "persist";
}
class Restart implements fc.Command<Model, Real> {
  check = () => true;
  run(m: Model, r: Real) {
    r.outbox = new Outbox(r.state.storage); // what was only in memory is gone
    m.rows = m.rows.filter((x) => x.durable);
    if (m.batch && !m.batch.durable) m.batch = null;
  }
  toString = () => "restart";
}

function checkInvariants(m: Model, r: Real): void {
  expect(r.outbox.size().events).toBe(m.rows.length); // (also creates the table)
  const stored = r.state.storage.sql
    .exec<{ event_id: string; batch: string | null }>("SELECT event_id, batch FROM outbox ORDER BY n")
    .toArray();
  expect(stored.map((x) => x.event_id)).toEqual(m.rows.filter((x) => x.durable).map((x) => x.id));
  // Stored rows are the oldest of the stream: a prefix of its order.
  expect(m.rows.slice(0, stored.length).map((x) => x.id)).toEqual(stored.map((x) => x.event_id));
  expect(r.outbox.current(SVC)?.id ?? null).toBe(m.batch?.id ?? null);
  expect(r.outbox.streams()).toEqual(m.rows.length > 0 ? [SVC] : []);
  if (m.batch) expect(r.outbox.rows(m.batch.id).map((x) => x.event_id)).toEqual(m.rows.filter((x) => x.batch === m.batch!.id).map((x) => x.id));
}

describe("outbox model", () => {
  it("memory and storage rows, batches, retries and restarts agree with a model", async () => {
    const s = env.ROOMS.get(env.ROOMS.idFromName(`hooks/model-${uniqueRoom()}`));
    await runInDurableObject(s, (_o: RoomObject, state: DurableObjectState) => {
      const commands = [
        fc.tuple(fc.boolean(), fc.constantFrom("message" as const, "message" as const, "open" as const)).map(([d, k]) => new Push(d, k)),
        fc.constant(new Push(false, "message")),
        fc.integer({ min: 1, max: 4 }).map((n) => new Seal(n)),
        fc.constant(new Finish()),
        fc.constant(new Retry()),
        fc.constant(new Persist()),
        fc.constant(new Restart()),
      ];
      fc.assert(
        fc.property(fc.commands(commands, { maxCommands: 40 }), (cmds) => {
          state.storage.sql.exec("DROP TABLE IF EXISTS outbox");
          state.storage.kv.delete(`outbox:batch:${SVC}`);
          const real: Real = { state, outbox: new Outbox(state.storage) };
          const model: Model = { rows: [], batch: null, next: 0 };
          fc.modelRun(() => ({ model, real }), [...cmds].map((c) => checked(c, checkInvariants)));
        }),
        { numRuns: 150 },
      );
    });
  });
});
