/**
 * SPEC v1.1 section 6: one stream per (room, service). A slow or failing service
 * never delays another; an idle stream sends at once; order holds within a stream.
 * Tenant `hooks`: `chat` (batch_ms 0) and `slow` (timeout 300 ms, retried 30 s).
 */
import { describe, expect, it } from "vitest";
import { originLog, script, waitForLog } from "../helpers/origin.ts";
import { connect, uniqueRoom } from "../helpers/ws.ts";

const join = (user: string, room: string) => connect({ tenant: "hooks", room, ticket: `dev:${user}` });
const msg = (svc: string, seq: number) => ({ v: 1, svc, type: "x", flags: 4, seq, data: { n: seq } });
const eventsTo = (log: Awaited<ReturnType<typeof originLog>>, path: string) =>
  log.filter((r) => r.path === path).flatMap((r) => (r.json?.events ?? []).filter((e: { kind: string }) => e.kind === "message"));

describe("origin streams per service", () => {
  it("a dead service beside a healthy one: the healthy one's events arrive at once, in order", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 500 }, "/hooks/slow"); // slow is down for good
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length >= 1); // chat's open event
    a.send(msg("slow", 1));
    await waitForLog(room, (l) => l.some((r) => r.path === "/hooks/slow"));
    // slow now has a batch in flight or waiting for its retry; chat must not wait behind it.
    const t0 = Date.now();
    for (let seq = 10; seq < 15; seq++) a.send(msg("chat", seq));
    const acks: number[] = [];
    while (acks.length < 5) acks.push((await a.nextOf("sys", "ack", 2000)).data.seq);
    expect(acks).toEqual([10, 11, 12, 13, 14]);
    expect(Date.now() - t0).toBeLessThan(1500);
    const chat = eventsTo(await originLog(room), "/hooks/chat").map((e: { seq: number }) => e.seq);
    expect(chat).toEqual([10, 11, 12, 13, 14]);
  });

  it("an idle stream sends a lone event at once (no batch wait)", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length >= 1);
    const t0 = Date.now();
    a.send(msg("chat", 1));
    await a.nextOf("sys", "ack");
    expect(Date.now() - t0).toBeLessThan(300);
  });
});

describe("outbox schema", () => {
  it("a table from before the cid column gets it, and its old rows are still readable", async () => {
    const { env } = await import("cloudflare:workers");
    const { runInDurableObject } = await import("cloudflare:test");
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`hooks/legacy-${uniqueRoom()}`));
    const cols = await runInDurableObject(stub, (o: any, state: DurableObjectState) => {
      state.storage.sql.exec(`CREATE TABLE outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, svc TEXT NOT NULL, event_id TEXT NOT NULL,
        kind TEXT NOT NULL, sid TEXT NOT NULL, seq INTEGER, ack INTEGER NOT NULL DEFAULT 0, event TEXT NOT NULL,
        bytes INTEGER NOT NULL, created INTEGER NOT NULL, batch TEXT)`);
      state.storage.sql.exec("INSERT INTO outbox (svc, event_id, kind, sid, event, bytes, created) VALUES ('chat', 'e1', 'message', 's1', '{}', 2, 1)");
      expect(o.bridge.outbox.size().events).toBe(1);
      expect(o.bridge.outbox.headRun("chat", 10)[0].cid).toBeNull();
      return state.storage.sql.exec<{ name: string }>("PRAGMA table_info(outbox)").toArray().map((c) => c.name);
    });
    expect(cols).toContain("cid");
  });
});
