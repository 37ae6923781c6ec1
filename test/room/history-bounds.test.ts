/**
 * SPEC v1.2 section 10, "Bounds" (issue 18, item 8): a resume reads at most
 * `max_messages + 1` rows addressed to it, whatever the log's size, and no
 * session holds more than a quarter of a room's log, so one member sending large
 * frames cannot evict the others' history. Both failed before: a resume read every
 * row after its position before applying `max_messages`, and one member's frames
 * pushed everyone's history out of the byte budget.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { History } from "../../src/room/history.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { uniqueRoom } from "../helpers/ws.ts";

const stub = () => env.ROOMS.get(env.ROOMS.idFromName(`rec/history-bounds-${uniqueRoom()}`));
const frame = (data: string) => JSON.stringify({ v: 1, svc: "chat", type: "say", data });

/** Rows read by every SQL statement run while `fn` runs (the cursor's own count, as billed). */
function rowsRead(state: DurableObjectState, fn: () => void): number {
  const sql = state.storage.sql;
  const exec = sql.exec.bind(sql);
  const cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
  (sql as { exec: unknown }).exec = (query: string, ...args: SqlStorageValue[]) => {
    const c = exec(query, ...args);
    cursors.push(c);
    return c;
  };
  try {
    fn();
  } finally {
    (sql as { exec: unknown }).exec = exec;
  }
  return cursors.reduce((n, c) => n + c.rowsRead, 0);
}

/** Rows written by every SQL statement and KV write (one each, as billed) while `fn` runs. */
function rowsWritten(state: DurableObjectState, fn: () => void): number {
  const sql = state.storage.sql;
  const exec = sql.exec.bind(sql);
  const kv = state.storage.kv;
  const [put, del] = [kv.put.bind(kv), kv.delete.bind(kv)];
  const cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
  let kvWrites = 0;
  (sql as { exec: unknown }).exec = (query: string, ...args: SqlStorageValue[]) => {
    const c = exec(query, ...args);
    cursors.push(c);
    return c;
  };
  kv.put = ((k: string, v: unknown) => (kvWrites++, put(k, v))) as typeof kv.put;
  kv.delete = ((k: string) => (kvWrites++, del(k))) as typeof kv.delete;
  try {
    fn();
  } finally {
    (sql as { exec: unknown }).exec = exec;
    kv.put = put;
    kv.delete = del;
  }
  for (const c of cursors) c.toArray(); // a cursor counts what it wrote once it ran to its end
  return cursors.reduce((n, c) => n + c.rowsWritten, 0) + kvWrites;
}

describe("history: rows written per logged frame (SPEC v1.2 section 12)", () => {
  for (const owned of [false, true]) {
    it(`a log at its byte cap: 500 more frames${owned ? " (each with its sender as owner)" : ""} cost at most 2 rows written each, trims included`, async () => {
      await runInDurableObject(stub(), (_o: RoomObject, state: DurableObjectState) => {
        const h = new History(state.storage);
        const f = frame("x".repeat(200));
        const limits = { window_s: 3600, max_bytes: 1000 * 250 };
        for (let i = 0; i < 1500; i++) h.record(f, { room: true, except: [] }, limits, 1000 + i, owned ? `c${i % 10}` : undefined);
        const written = rowsWritten(state, () => {
          for (let i = 0; i < 500; i++) h.record(f, { room: true, except: [] }, limits, 5000 + i, owned ? `c${i % 10}` : undefined);
        });
        // Each frame is inserted once and deleted once over its life (no floor row, no index row): 2 rows.
        // The window's deletes may take a few frames logged before it, so allow that much slack.
        expect(written).toBeLessThanOrEqual(2 * 500 + 4);
      });
    });
  }
});

describe("history bounds", () => {
  it("a resume over 2,000 logged frames with max_messages 20 reads a bounded number of rows, not the log", async () => {
    await runInDurableObject(stub(), (_o: RoomObject, state: DurableObjectState) => {
      const h = new History(state.storage);
      const limits = { window_s: 3600, max_bytes: 16 * 1024 * 1024 };
      for (let i = 0; i < 2000; i++) h.record(frame(`m${i}`), { room: true, except: [] }, limits, 1000 + i);
      const who = { sid: "s1", user: "u1", cid: "c1", start: 0 };
      let answer: unknown;
      const read = rowsRead(state, () => (answer = h.replay({ ...h.position(), off: 0 }, who, 20)));
      expect(answer).toEqual({ refused: "too_many" });
      expect(read).toBeLessThanOrEqual(3 * 21);
    });
  });

  it("one owner keeps at most a quarter of max_bytes: its own oldest frames go, the others' history stays", async () => {
    await runInDurableObject(stub(), (_o: RoomObject, state: DurableObjectState) => {
      const h = new History(state.storage);
      const limits = { window_s: 3600, max_bytes: 8000 };
      for (let i = 0; i < 3; i++) h.record(frame(`victim ${i}`), { room: true, except: [] }, limits, 1000, "victim");
      for (let i = 0; i < 40; i++) h.record(frame("x".repeat(1000)), { room: true, except: [] }, limits, 1000, "flooder");
      expect(h.ownerBytes("flooder")).toBeLessThanOrEqual(2000 + 1100); // a quarter, plus the frame just logged
      const who = { sid: "s1", user: "u1", cid: "c1", start: 0 };
      const r = h.replay({ ...h.position(), off: 0 }, who, 1000);
      expect("count" in r).toBe(true); // the floor did not move: nobody's resume is too_old
      const frames: string[] = [];
      if ("stream" in r) r.stream((f) => frames.push(f));
      expect(frames.filter((f) => f.includes("victim")).length).toBe(3);
    });
  });
});
