import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { Webhook } from "standardwebhooks";
import { describe, expect, it, vi } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { script, uniqueEvents, waitForLog, type Step } from "../helpers/origin.ts";
import { connect, isSys, uniqueRoom } from "../helpers/ws.ts";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const join = (user: string, room: string, sid?: string) => connect({ tenant: "hooks", room, ticket: `dev:${user}`, sid });
const chat = (seq: number, data: unknown = { msg: `m${seq}` }, flags = 4) => ({ v: 1, svc: "chat", type: "send", flags, seq, data });
const stub = (room: string) => env.ROOMS.get(env.ROOMS.idFromName(`hooks/${room}`));
const invalidAnswers = (room: string) =>
  runInDurableObject(stub(room), (o: RoomObject) => o.counters.get("wsprism_origin_invalid_answers_total", { tenant: "hooks", svc: "chat" }));
const messages = (log: { json: any }[]) => uniqueEvents(log as any).filter((e) => e.kind === "message");

describe("webhooks", () => {
  it("POSTs the contract's body, signed with Standard Webhooks, and acks only after the 2xx", async () => {
    const room = uniqueRoom();
    await script(room, [{ status: 200 }, { status: 200, delayMs: 300 }]);
    const a = await join("alice", room, "a-1");
    await waitForLog(room, (l) => l.length === 1); // the open event, alone
    a.send(chat(12, { msg: "hi" }));
    const log = await waitForLog(room, (l) => messages(l).length === 1);
    // No ack while the origin has not answered (it delays 300 ms).
    expect(a.inbox.filter((m) => m.kind === "text" && m.json.type === "ack")).toEqual([]);
    const ack = await a.nextOf("sys", "ack");
    expect(ack.data).toEqual({ seq: 12 });

    const req = log.find((r) => r.json.events.some((e: any) => e.kind === "message"))!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe("/hooks/chat");
    expect(req.headers["content-type"]).toBe("application/json");
    expect(new Webhook(SECRET).verify(req.body, req.headers)).toBeTruthy();
    expect(req.headers["webhook-id"]).toMatch(/^msg_/);
    expect(Object.keys(req.json).sort()).toEqual(["events", "room", "tenant"]);
    expect(req.json).toMatchObject({ tenant: "hooks", room });
    const ev = req.json.events[0];
    expect(ev).toMatchObject({ kind: "message", user: "alice", sid: "a-1", svc: "chat", type: "send", seq: 12, data: { msg: "hi" } });
    expect(ev.id).toMatch(/^evt_/);
    expect(typeof ev.ts).toBe("number");
    expect(ev.trace_id).toBe(a.authed.trace_id);
    // The open event went first, in its own POST (it was accepted before the message).
    expect(log[0]!.json.events[0]).toMatchObject({ kind: "open", user: "alice", sid: "a-1", svc: "chat" });
  });

  it("close events reach services that subscribe to them", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room, "a-1");
    a.close();
    const log = await waitForLog(room, (l) => uniqueEvents(l).some((e) => e.kind === "close"));
    expect(uniqueEvents(log).map((e) => e.kind)).toEqual(["open", "close"]);
  });

  it("applies reply, broadcast, send, reject and kick from the origin's answer", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room, "a-1");
    const b = await join("bob", room, "b-1");
    const c = await join("carol", room, "c-1");
    await waitForLog(room, (l) => uniqueEvents(l).length === 3); // three open events
    // Answer the next POST with every action; event ids are only known from the request,
    // so the origin echoes them via a placeholder we fill after reading the log.
    await script(room, [{ status: 503 }], { status: 200 });
    a.send(chat(1, { msg: "first" }));
    const log = await waitForLog(room, (l) => messages(l).length === 1);
    const evId = messages(log)[0].id;
    await script(room, [
      {
        status: 200,
        body: {
          actions: [
            { action: "reply", to: evId, svc: "chat", type: "delivered", data: { id: evId } },
            { action: "broadcast", svc: "chat", type: "msg", data: { text: "first" }, exclude: ["c-1"] },
            { action: "send", user: "carol", svc: "chat", type: "whisper", data: "psst" },
            { action: "reject", to: "evt_unknown", code: "NOT_ALLOWED", msg: "ignored: unknown event" },
            { action: "kick", sid: "b-1", reason: "bye bob" },
          ],
        },
      },
    ]);
    // The 503 is retried with the scripted answer.
    const reply = await a.nextOf("chat", "delivered", 5000);
    expect(reply).toMatchObject({ room, data: { id: evId }, from: { user: "@origin", sid: "@origin" } });
    expect((await a.nextOf("chat", "msg")).data).toEqual({ text: "first" });
    expect((await b.nextOf("chat", "msg")).data).toEqual({ text: "first" });
    expect((await c.nextOf("chat", "whisper")).data).toBe("psst");
    expect((await b.nextOf("sys", "kicked")).data).toEqual({ reason: "bye bob" });
    expect((await b.closed()).code).toBe(4003);
    expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
    expect(c.inbox.filter((m) => m.kind === "text" && m.json.type === "msg")).toEqual([]);
  });

  it("reject sends sys.error with the event's code and seq, and suppresses its ack", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [{ rejectMessages: { code: "NOT_ALLOWED", msg: "banned word" } }], { status: 200 });
    a.send(chat(5, { msg: "spam" }));
    const err = await a.nextOf("sys", "error");
    expect(err.data).toEqual({ code: "NOT_ALLOWED", msg: "banned word", seq: 5 });
    a.send(chat(6, { msg: "fine" }));
    expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 6 }); // 5 was never acked
    expect(a.inbox.filter((m) => m.kind === "text" && m.json.type === "ack")).toEqual([]);
  });

  it("an application reject code reaches the sender; a malformed one still rejects, as ORIGIN_REJECTED (fails closed)", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [{ rejectMessages: { code: "BANNED_WORD", msg: "no spam" } }, { rejectMessages: { code: "not-a-code!", msg: "x" } }], { status: 200 });
    a.send(chat(11, { msg: "spam" }));
    expect((await a.nextOf("sys", "error")).data).toEqual({ code: "BANNED_WORD", msg: "no spam", seq: 11 });
    a.send(chat(12, { msg: "spam again" }));
    expect((await a.nextOf("sys", "error")).data).toMatchObject({ code: "ORIGIN_REJECTED", seq: 12 });
    await a.expectQuiet(200, isSys("ack"), "sys.ack"); // never an ack for either
  });

  it("answers go to the connection that sent the event, never to another user who took its sid since", async () => {
    const room = uniqueRoom();
    const sid = `taken-${room}`;
    const a = await join("alice", room, sid);
    await waitForLog(room, (l) => l.length === 1);
    // The origin fails until bob holds alice's sid, so the answer can only come after that.
    await script(room, [], { status: 500 });
    a.send(chat(7, { msg: "spam" }));
    await waitForLog(room, (l) => l.length >= 2);
    a.close();
    await a.closed();
    let bob = null;
    for (let i = 0; i < 40 && !bob; i++) {
      bob = await join("bob", room, sid).catch(() => null); // 400 until the directory released alice's row
      if (!bob) await new Promise((r) => setTimeout(r, 50));
    }
    expect(bob).not.toBeNull();
    // Alice's message is still unanswered: in the outbox, not given up.
    const pending = () =>
      runInDurableObject(stub(room), (o: RoomObject) => ({
        events: o.bridge.outbox.size().events,
        dead: o.counters.get("wsprism_origin_dead_letters_total", { tenant: "hooks", svc: "chat" }),
      }));
    const before = await pending();
    expect(before.dead).toBe(0);
    expect(before.events).toBeGreaterThan(0);
    await script(room, [], { rejectMessages: { code: "BANNED_WORD", msg: "for alice only" } });
    // The retry that answers (a reject for alice's message) comes now, with bob connected.
    for (let i = 0; i < 160 && (await pending()).events > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await pending()).toEqual({ events: 0, dead: 0 });
    await bob!.expectQuiet(300, isSys("error"), "sys.error");
    await bob!.expectQuiet(0, isSys("ack"), "sys.ack");
  });

  it("other 4xx: not retried, the sender gets ORIGIN_REJECTED with its seq", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [{ status: 422, body: { error: "nope" } }]);
    a.send(chat(9));
    const err = await a.nextOf("sys", "error");
    expect(err.data).toMatchObject({ code: "ORIGIN_REJECTED", seq: 9 });
    await new Promise((r) => setTimeout(r, 800));
    const log = await waitForLog(room, () => true);
    expect(messages(log).length).toBe(1);
    expect(log.length).toBe(2); // open + one attempt, no retry
  });

  const retried = async (failures: Step[]) => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, failures, { status: 200 });
    const slow = (seq: number) => ({ v: 1, svc: "slow", type: "tick", flags: 4, seq });
    for (let i = 1; i <= 4; i++) a.send(slow(i));
    for (let i = 1; i <= 4; i++) expect((await a.nextOf("sys", "ack", 15_000)).data).toEqual({ seq: i });
    const log = (await waitForLog(room, () => true)).filter((r) => r.path === "/hooks/slow");
    // The first batch was attempted failures+1 times with one webhook id and the same body.
    const firstId = log[0]!.headers["webhook-id"];
    const sameBatch = log.filter((r) => r.headers["webhook-id"] === firstId);
    expect(sameBatch.length).toBe(failures.length + 1);
    expect(new Set(sameBatch.map((r) => r.body)).size).toBe(1);
    for (const r of log) expect(new Webhook(SECRET).verify(r.body, r.headers)).toBeTruthy();
    // Exactly once after deduplication by event id, in order; in order on the wire too.
    expect(uniqueEvents(log).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    const seqs = log.flatMap((r) => r.json.events.map((e: any) => e.seq));
    expect(seqs.filter((s, i) => seqs.indexOf(s) === i)).toEqual([1, 2, 3, 4]);
  };

  it("5xx and 408 are retried with the same webhook id and event ids, in order", () =>
    retried([{ status: 500 }, { status: 408 }]), 20_000);

  it("429 and timeouts are retried the same way", () =>
    retried([{ status: 429 }, { status: 200, delayMs: 800 } /* over timeout_ms 300 */]), 20_000);

  it("gives up after retry_for_s: ORIGIN_UNAVAILABLE to the sender and a dead letter", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [], { status: 503 });
    a.send(chat(3));
    const err = await a.nextOf("sys", "error", 10_000);
    expect(err.data).toMatchObject({ code: "ORIGIN_UNAVAILABLE", seq: 3 });
    const dead = await runInDurableObject(stub(room), (o: RoomObject) =>
      o.counters.get("wsprism_origin_dead_letters_total", { tenant: "hooks", svc: "chat" }),
    );
    expect(dead).toBe(1);
    const log = await waitForLog(room, () => true);
    expect(log.length).toBeGreaterThan(2); // retried before giving up
  }, 15_000);

  it("batches up to batch_max events that arrive within batch_ms", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1); // chat's open event; `slow` takes no open events
    for (let i = 1; i <= 5; i++) a.send({ v: 1, svc: "slow", type: "tick", seq: i });
    const log = await waitForLog(room, (l) => uniqueEvents(l).filter((e) => e.svc === "slow").length === 5);
    const posts = log.filter((r) => r.path === "/hooks/slow");
    expect(posts.map((r) => r.json.events.map((e: any) => e.seq))).toEqual([[1, 2, 3], [4, 5]]);
  });

  it("invalid actions are skipped, counted and logged with their index and reason; the others apply and the ack is sent", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [{ status: 503 }], { status: 200 });
    a.send(chat(1));
    const evId = messages(await waitForLog(room, (l) => messages(l).length === 1))[0].id;
    // The SDK acts on sys frames (kicked, authed, presence): an origin may not send them (SPEC section 6, v1.2).
    await script(room, [{ status: 200, body: { actions: [
      { action: "reply", to: evId, svc: "sys", type: "authed", data: { user: "mallory" } },
      { action: "broadcast", svc: "sys", type: "presence", data: { fake: true } },
      { action: "send", user: "alice", svc: "sys", type: "kicked", data: { reason: "fake" } },
      { action: "explode" },
      { action: "broadcast", svc: "chat", type: "msg", data: "real" },
    ] } }]);
    const warn = vi.spyOn(console, "warn");
    try {
      expect((await a.nextOf("chat", "msg", 5000)).data).toBe("real");
      expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
      const line = warn.mock.calls.map((c) => JSON.parse(String(c[0]))).find((l) => l.event === "origin.invalid_answer" && l.room === room);
      expect(line).toMatchObject({ unreadable: null, invalid: 4 });
      expect(line.skipped.map((x: { index: number }) => x.index)).toEqual([0, 1, 2, 3]);
      expect(line.skipped[0].reason).toMatch(/sys/);
    } finally {
      warn.mockRestore();
    }
    const forged = (await a.quiet(200)).filter((m) => m.kind === "text" && m.json.svc === "sys" && ["authed", "presence", "kicked"].includes(m.json.type));
    expect(forged).toEqual([]);
    expect(await invalidAnswers(room)).toBe(1);
    expect(a.closeEvent).toBeNull();
  });

  // SPEC section 6 (v1.2): these used to ack every event of the batch, rejected ones included.
  it("an answer the gateway cannot read fails closed: ORIGIN_REJECTED, no ack, nothing applied", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    const b = await join("bob", room);
    await waitForLog(room, (l) => uniqueEvents(l).length === 2);
    const leak = { action: "broadcast", svc: "chat", type: "leak", data: "x" };
    const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    // {"actions":[{…"data":X}]} is 3 levels around X.
    const deep = (depth: number) => `{"actions":[${JSON.stringify(leak).slice(0, -1)},"more":${nested(depth - 3)}}]}`;
    await script(room, [
      { status: 200, body: `{"actions":[${JSON.stringify(leak)}]` }, // not JSON
      { status: 200, body: { actions: { 0: leak } } }, // actions not a list
      { status: 200, body: { actions: [leak], pad: "p".repeat(1024 * 1024) } }, // over 1 MiB
      { status: 200, body: deep(10_000) },
      { status: 200, body: deep(65) },
      { status: 200, body: deep(64) },
    ]);
    for (let seq = 1; seq <= 5; seq++) {
      a.send(chat(seq));
      expect((await a.nextOf("sys", "error")).data, `seq ${seq}`).toEqual({ code: "ORIGIN_REJECTED", msg: expect.any(String), seq });
    }
    expect(await invalidAnswers(room)).toBe(5);
    expect(a.inbox.filter((m) => m.kind === "text" && m.json.type === "ack")).toEqual([]);
    // 64 levels are read and applied.
    a.send(chat(6));
    expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 6 });
    expect((await b.nextOf("chat", "leak")).data).toBe("x");
    expect((await b.quiet()).filter((m) => m.kind === "text" && m.json.type === "leak")).toEqual([]); // once only
    expect(a.closeEvent).toBeNull();
  });

  it("an unreadable answer rejects every event of its batch that asked for an ack, whoever sent it", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    const b = await join("bob", room);
    await waitForLog(room, (l) => uniqueEvents(l).length === 2);
    await script(room, [{ status: 200, delayMs: 300 }, { status: 200, body: "{not json" }]);
    a.send(chat(1));
    await waitForLog(room, (l) => messages(l).length === 1);
    // While the first POST is in flight: these three share the next one.
    a.send(chat(2));
    a.send(chat(3, undefined, 0)); // no ack asked: nothing to answer
    b.send(chat(4));
    expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
    expect((await a.nextOf("sys", "error")).data).toMatchObject({ code: "ORIGIN_REJECTED", seq: 2 });
    expect((await b.nextOf("sys", "error")).data).toMatchObject({ code: "ORIGIN_REJECTED", seq: 4 });
    const log = await waitForLog(room, () => true);
    expect(log.at(-1)!.json.events.map((e: any) => e.seq).sort()).toEqual([2, 3, 4]); // one batch (two sockets: any order)
    const late = [...(await a.quiet(200)), ...b.inbox].filter((m) => m.kind === "text" && m.json.svc === "sys" && ["ack", "error"].includes(m.json.type));
    expect(late).toEqual([]); // no ack for 2 or 4, nothing for 3
  });

  it("survives eviction during an origin outage: no event lost, order kept, ids stable", async () => {
    const room = uniqueRoom();
    const a = await join("alice", room);
    await waitForLog(room, (l) => l.length === 1);
    await script(room, [{ status: 503 }, { status: 503 }, { status: 503 }], { status: 200 });
    for (let i = 1; i <= 6; i++) a.send(chat(i));
    await waitForLog(room, (l) => l.length >= 2);
    await evictDurableObject(stub(room), { webSockets: "hibernate" });
    for (let i = 1; i <= 6; i++) expect((await a.nextOf("sys", "ack", 15_000)).data).toEqual({ seq: i });
    const log = await waitForLog(room, () => true);
    expect(messages(log).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    const outbox = await runInDurableObject(stub(room), (o: RoomObject) => o.bridge.outbox.size());
    expect(outbox).toEqual({ events: 0, bytes: 0 });
  }, 30_000);
});
