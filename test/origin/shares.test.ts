/**
 * SPEC v1.2 section 6, fair share (issue 19): the share is per user (not per
 * sid), each service's stream has its own budget (a dead service fills only its
 * own), open/close events have a budget of their own, and sizes are UTF-8 bytes.
 * Tenant `hooks`: `chat` (open/close/message, batch_ms 0) and `slow` (messages,
 * batch_ms 200). Bounds are lowered on the live object to keep the tests small.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Outbox, type OriginEvent } from "../../src/origin/outbox.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { script, waitForLog } from "../helpers/origin.ts";
import { connect, isSys, uniqueRoom, type Envelope } from "../helpers/ws.ts";

const join = (user: string, room: string) => connect({ tenant: "hooks", room, ticket: `dev:${user}` });
const msg = (svc: string, seq: number) => ({ v: 1, svc, type: "send", flags: 4, seq, data: { n: seq } });
const stub = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`hooks/${room}`));
const setLimits = (room: string, limits: { events: number; bytes: number }) =>
  runInDurableObject(stub(room), (o: RoomObject) => {
    o.bridge.outbox.limits = limits;
  });
const queued = (room: string) => runInDurableObject(stub(room), (o: RoomObject) => o.bridge.outbox.size().events);
const exhausted = (e: Envelope) => e.type === "error" && (e.data as { code?: string }).code === "RESOURCE_EXHAUSTED";

describe("fair share v1.2", () => {
  it("per user: two sessions of one user share one quarter of the stream", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 503 }); // the origin is down: everything stays
    const a1 = await join("alice", room);
    const a2 = await join("alice", room); // the same user, another sid
    await waitForLog(room, (l) => l.length >= 1);
    await setLimits(room, { events: 40, bytes: 1 << 20 }); // a quarter: 10 messages per user
    for (let seq = 1; seq <= 6; seq++) a1.send(msg("chat", seq));
    await a1.expectQuiet(150, isSys("error"), "sys.error");
    for (let seq = 1; seq <= 5; seq++) a2.send(msg("chat", seq)); // alice's 11th is over her quarter
    const refused = await a2.next(exhausted);
    expect(refused.data.seq).toBe(5);
    expect(refused.data.msg).toMatch(/this user holds a quarter/);
    // Another member is not starved by alice.
    const b = await join("bob", room);
    b.send(msg("chat", 1));
    await b.expectQuiet(150, isSys("error"), "sys.error");
  });

  it("a dead service fills only its own stream: the healthy service's messages still get in and are delivered", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 200 });
    await script(room, [], { status: 500 }, "/hooks/slow"); // slow is down for good
    const members = [await join("alice", room), await join("bob", room), await join("carol", room), await join("dave", room)];
    await waitForLog(room, (l) => l.length >= 1);
    await setLimits(room, { events: 8, bytes: 1 << 20 }); // a quarter: 2 per user and stream
    for (const m of members) for (let seq = 1; seq <= 2; seq++) m.send(msg("slow", seq));
    await members[3]!.expectQuiet(300, isSys("error"), "sys.error");
    members[0]!.send(msg("slow", 3)); // slow's budget is full
    expect((await members[0]!.next(exhausted)).data.seq).toBe(3);
    for (const [i, m] of members.entries()) m.send(msg("chat", 10 + i)); // chat has its own budget
    for (const [i, m] of members.entries()) expect((await m.nextOf("sys", "ack", 3000)).data).toEqual({ seq: 10 + i });
  });

  it("open/close events have a budget of their own: a join/leave flood does not refuse messages", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 503 });
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length >= 1);
    await setLimits(room, { events: 8, bytes: 1 << 20 });
    for (let i = 0; i < 3; i++) {
      const c = await join(`cycler${i}`, room);
      c.close();
      await c.closed();
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(await queued(room)).toBe(7); // alice's open, three opens and three closes
    a.send(msg("chat", 1));
    a.send(msg("chat", 2)); // 9 events in the stream, over 8: messages are counted apart
    await a.expectQuiet(150, isSys("error"), "sys.error");
    expect(await queued(room)).toBe(9);
  });

  it("sizes are UTF-8 bytes", async () => {
    const s = env.ROOMS.get(env.ROOMS.idFromName(`hooks/utf8-${uniqueRoom()}`));
    await runInDurableObject(s, (_o: RoomObject, state: DurableObjectState) => {
      const outbox = new Outbox(state.storage);
      const event: OriginEvent = { id: "e1", kind: "message", user: "u", sid: "s", svc: "chat", type: "t", data: "é€😀", ts: 1, trace_id: "c" };
      expect(outbox.push("chat", event, false, 1)).toBe("ok");
      const bytes = new TextEncoder().encode(JSON.stringify(event)).length;
      expect(bytes).toBe(JSON.stringify(event).length + 1 + 2 + 2); // é: 2 bytes, €: 3, 😀: 4 (2 UTF-16 units)
      expect(outbox.size().bytes).toBe(bytes);
    });
  });

  it("a table from before the user column gets it; its old rows count for their user (read from the event)", async () => {
    const s = env.ROOMS.get(env.ROOMS.idFromName(`hooks/legacy-user-${uniqueRoom()}`));
    await runInDurableObject(s, (_o: RoomObject, state: DurableObjectState) => {
      state.storage.sql.exec(`CREATE TABLE outbox (n INTEGER PRIMARY KEY, svc TEXT NOT NULL, event_id TEXT NOT NULL,
        kind TEXT NOT NULL, sid TEXT NOT NULL, seq INTEGER, ack INTEGER NOT NULL DEFAULT 0, event TEXT NOT NULL,
        bytes INTEGER NOT NULL, created INTEGER NOT NULL, batch TEXT, cid TEXT)`);
      for (const [i, sid] of ["s1", "s2"].entries()) {
        const ev = JSON.stringify({ id: `old${i}`, kind: "message", user: "alice", sid, svc: "chat", type: "t", ts: 1, trace_id: "c" });
        state.storage.sql.exec("INSERT INTO outbox (svc, event_id, kind, sid, event, bytes, created) VALUES ('chat', ?, 'message', ?, ?, ?, ?)", `old${i}`, sid, ev, ev.length, Date.now());
      }
      const outbox = new Outbox(state.storage);
      outbox.limits = { events: 8, bytes: 1 << 20 }; // a quarter: 2
      const ev = (user: string, sid: string): OriginEvent => ({ id: `n-${user}`, kind: "message", user, sid, svc: "chat", type: "t", ts: 1, trace_id: "c" });
      expect(outbox.push("chat", ev("alice", "s3"), false, Date.now())).not.toBe("ok"); // alice holds her quarter already
      expect(outbox.push("chat", ev("bob", "s1"), false, Date.now())).toBe("ok"); // s1 is no share of its own
      const cols = state.storage.sql.exec<{ name: string }>("PRAGMA table_info(outbox)").toArray().map((c) => c.name);
      expect(cols).toContain("user");
    });
  });
});
