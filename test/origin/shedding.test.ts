/**
 * Issue 11: past capacity the bridge sheds instead of wedging. When a healthy
 * stream (its last POST did not fail) has had an event waiting longer than
 * BACKLOG_SHED_MS, new messages for it are answered RESOURCE_EXHAUSTED (with their
 * seq) instead of growing a backlog that nobody will see in time. An outage (a
 * stream whose POSTs fail and are retried) keeps buffering: the outbox is for that.
 */
import { describe, expect, it } from "vitest";
import { BACKLOG_SHED_MS } from "../../src/origin/outbox.ts";
import { script, waitForLog } from "../helpers/origin.ts";
import { connect, uniqueRoom } from "../helpers/ws.ts";

const chat = (seq: number) => ({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { n: seq } });

describe("shedding past capacity", () => {
  it("a slow healthy origin: messages beyond the backlog age are refused with their seq, the others are delivered", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 200, delayMs: BACKLOG_SHED_MS + 1500 }); // every POST takes that long
    const a = await connect({ tenant: "shed", room, ticket: "dev:alice" });
    a.send(chat(1)); // goes out at once; its POST hangs
    await waitForLog(room, (l) => l.length >= 1);
    a.send(chat(2)); // waits behind it
    await new Promise((r) => setTimeout(r, BACKLOG_SHED_MS + 300));
    a.send(chat(3)); // chat 2 has waited too long: shed
    const err = await a.next((e) => e.type === "error", 3000);
    expect(err.data).toMatchObject({ code: "RESOURCE_EXHAUSTED", seq: 3 });
    // The accepted ones still arrive.
    const acks = [(await a.nextOf("sys", "ack", 8000)).data.seq, (await a.nextOf("sys", "ack", 8000)).data.seq];
    expect(acks).toEqual([1, 2]);
  }, 20_000);

  it("an outage keeps buffering: a failing stream sheds nothing", async () => {
    const room = uniqueRoom();
    await script(room, [{ status: 503 }, { status: 503 }, { status: 503 }], { status: 200 });
    const a = await connect({ tenant: "shed", room, ticket: "dev:bob" });
    a.send(chat(1));
    await waitForLog(room, (l) => l.length >= 1);
    await new Promise((r) => setTimeout(r, BACKLOG_SHED_MS + 300));
    a.send(chat(2));
    const acks = [(await a.nextOf("sys", "ack", 10000)).data.seq, (await a.nextOf("sys", "ack", 10000)).data.seq];
    expect(acks.sort()).toEqual([1, 2]);
    expect(a.inbox.filter((m) => m.kind === "text" && m.json.type === "error")).toEqual([]);
  }, 20_000);

  it("one flooder behind a slow origin: its messages are refused, another member's still get in and are delivered", async () => {
    const room = uniqueRoom();
    await script(room, [{ status: 200, delayMs: BACKLOG_SHED_MS + 800 }], { status: 200 }); // the first POST hangs
    const a = await connect({ tenant: "shed", room, ticket: "dev:alice" });
    const b = await connect({ tenant: "shed", room, ticket: "dev:bob" });
    a.send(chat(1));
    await waitForLog(room, (l) => l.length >= 1);
    for (let seq = 2; seq <= 6; seq++) a.send(chat(seq)); // alice holds the whole backlog
    await new Promise((r) => setTimeout(r, BACKLOG_SHED_MS + 300));
    b.send(chat(1)); // bob holds nothing of it: within his share
    a.send(chat(7)); // alice holds all of it: refused
    expect((await a.next((e) => e.type === "error", 3000)).data).toMatchObject({ code: "RESOURCE_EXHAUSTED", seq: 7 });
    b.send(chat(2)); // bob holds 1 of 7: alice holds more, so only she is shed
    const acks = [(await b.nextOf("sys", "ack", 8000)).data.seq, (await b.nextOf("sys", "ack", 8000)).data.seq];
    expect(acks).toEqual([1, 2]);
    expect(b.inbox.filter((m) => m.kind === "text" && m.json.type === "error")).toEqual([]);
  }, 20_000);
});
