/**
 * Deploys strand nobody (SPEC v1.2 section 12): a room whose log and roster
 * were written by the code before v1.2 sessions (no `to_cid`/`owner` columns in
 * `history`, no `start_off`/`since` in `sessions`, an owner index from a later
 * build, the floor in KV) keeps working under today's code: its rows are read,
 * its ghosts resume, and the log goes on from its head under the same epoch.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { History } from "../../src/room/history.ts";
import { Roster } from "../../src/room/roster.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { uniqueRoom } from "../helpers/ws.ts";

describe("a room written by older code", () => {
  it("old history and sessions tables are upgraded in place: rows kept, position kept, old addresses still honoured", async () => {
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`rec/upgrade-${uniqueRoom()}`));
    await runInDurableObject(stub, (_o: RoomObject, state: DurableObjectState) => {
      const sql = state.storage.sql;
      // The tables and rows as the code before v1.2 sessions wrote them (the room object made today's on its start).
      sql.exec("DROP TABLE IF EXISTS history");
      sql.exec("DROP TABLE IF EXISTS sessions");
      sql.exec(`CREATE TABLE history (off INTEGER PRIMARY KEY, at INTEGER NOT NULL, bytes INTEGER NOT NULL, frame TEXT NOT NULL,
        to_sid TEXT, to_user TEXT, excl TEXT)`);
      sql.exec(`CREATE TABLE sessions (sid TEXT PRIMARY KEY, user TEXT NOT NULL, cid TEXT NOT NULL, slot INTEGER NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0, left_at INTEGER, announced INTEGER NOT NULL DEFAULT 0)`);
      state.storage.kv.put("history:epoch", "oldepoch");
      state.storage.kv.put("history:floor", 3);
      const now = Date.now();
      sql.exec("INSERT INTO history VALUES (4, ?, 30, '{\"v\":1,\"svc\":\"chat\",\"type\":\"say\",\"off\":4}', NULL, NULL, NULL)", now);
      sql.exec("INSERT INTO history VALUES (5, ?, 30, '{\"v\":1,\"svc\":\"sys\",\"type\":\"ack\",\"off\":5}', 'alice-1', NULL, NULL)", now);
      sql.exec("INSERT INTO history VALUES (6, ?, 30, '{\"v\":1,\"svc\":\"sys\",\"type\":\"ack\",\"off\":6}', 'bob-1', NULL, NULL)", now);
      sql.exec("INSERT INTO sessions VALUES ('alice-1', 'alice', 'c-alice', 1, 5, ?, 0)", now - 1000);

      const h = new History(state.storage);
      expect(h.position()).toEqual({ epoch: "oldepoch", off: 6 });
      const roster = new Roster(state.storage);
      expect(roster.get("alice-1")).toMatchObject({ user: "alice", cid: "c-alice", last_seq: 5, start_off: 0, since: 0 });
      // A resume of the old ghost from before the floor is too_old; from the floor it gets what was addressed to it.
      const who = { sid: "alice-1", user: "alice", cid: "c-alice", start: 0 };
      expect(h.replay({ epoch: "oldepoch", off: 2 }, who, 100)).toEqual({ refused: "too_old" });
      const r = h.replay({ epoch: "oldepoch", off: 3 }, who, 100);
      const frames: string[] = [];
      if ("stream" in r) r.stream((f) => frames.push(f));
      expect(frames.map((f) => JSON.parse(f).off)).toEqual([4, 5]); // the room-wide frame and her own ack, not bob's
      // The log goes on under the same epoch.
      h.record('{"v":1,"svc":"chat","type":"say"}', { room: true, except: [] }, { window_s: 3600, max_bytes: 1 << 20 }, Date.now(), "c-alice");
      expect(h.position()).toEqual({ epoch: "oldepoch", off: 7 });
      expect(h.ownerBytes("c-alice")).toBeGreaterThan(0);
    });
  });
});
