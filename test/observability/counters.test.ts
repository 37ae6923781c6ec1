/**
 * What increments the room's counters (SPEC section 9): a text frame that does
 * not decode counts one ext decode error, a binary one one hot decode error, a
 * valid frame none; every webhook POST counts one request by outcome (ok, retry,
 * rejected), every attempt after the first one retry. And a webhook service
 * whose secret is not set sends nothing (never unsigned): its events are
 * retried, then given up.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { originLog, script, waitForLog } from "../helpers/origin.ts";
import { connect, dev, uniqueRoom } from "../helpers/ws.ts";

const counter = (tenant: string, room: string, name: string, labels: Record<string, string>) =>
  runInDurableObject(env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`)), (o: RoomObject) => o.counters.get(name, labels));
const chat = (seq: number) => ({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { n: seq } });

describe("decode error counters", () => {
  it("one per frame that does not decode, by lane; none for valid frames", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const decodeErrors = (lane: string) => counter("lobby", room, "wsprism_decode_errors_total", { tenant: "lobby", lane });
    a.send("{not json");
    a.send('{"v":1,"svc":"chat"}'); // no type
    await a.nextOf("sys", "error");
    await a.nextOf("sys", "error");
    expect(await decodeErrors("ext")).toBe(2);
    expect(await decodeErrors("hot")).toBe(0);
    a.ws.send(new Uint8Array([0xff, 0, 0]));
    await a.nextOf("sys", "error");
    expect(await decodeErrors("hot")).toBe(1);
    a.send({ v: 1, svc: "chat", type: "send", seq: 9, flags: 4, data: {} });
    expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 9 });
    a.sendHot(1, 1, [1]);
    await a.expectQuiet(100, (m) => m.kind === "text" && m.json.type === "error", "sys.error");
    expect([await decodeErrors("ext"), await decodeErrors("hot")]).toEqual([2, 1]);
  });
});

describe("origin counters", () => {
  it("requests by outcome and retries, one per POST", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "hooks", room, ticket: "dev:alice" });
    await waitForLog(room, (l) => l.length === 1); // the open event: one POST, ok
    const requests = (outcome: string) => counter("hooks", room, "wsprism_origin_requests_total", { tenant: "hooks", svc: "chat", outcome });
    const retries = () => counter("hooks", room, "wsprism_origin_retries_total", { tenant: "hooks", svc: "chat" });
    expect([await requests("ok"), await requests("retry"), await retries()]).toEqual([1, 0, 0]);
    await script(room, [{ status: 500 }, { status: 200 }, { status: 422 }]);
    a.send(chat(1));
    expect((await a.nextOf("sys", "ack", 5000)).data).toEqual({ seq: 1 });
    expect([await requests("ok"), await requests("retry"), await retries()]).toEqual([2, 1, 1]);
    a.send(chat(2));
    expect((await a.nextOf("sys", "error")).data).toMatchObject({ code: "ORIGIN_REJECTED", seq: 2 });
    expect([await requests("ok"), await requests("retry"), await requests("rejected"), await retries()]).toEqual([2, 1, 1, 1]);
  });
});

describe("a webhook service with no secret set", () => {
  it("sends nothing: the event is retried, then given up with ORIGIN_UNAVAILABLE and a dead letter", async () => {
    const room = uniqueRoom();
    await script(room, [], { status: 200 });
    const a = await connect({ tenant: "nosecret", room, ticket: "dev:alice" });
    a.send(chat(1));
    const err = await a.nextOf("sys", "error", 5000);
    expect(err.data).toMatchObject({ code: "ORIGIN_UNAVAILABLE", seq: 1 });
    expect(await originLog(room)).toEqual([]);
    const labels = { tenant: "nosecret", svc: "chat" };
    expect(await counter("nosecret", room, "wsprism_origin_requests_total", { ...labels, outcome: "retry" })).toBeGreaterThan(0);
    expect(await counter("nosecret", room, "wsprism_origin_dead_letters_total", labels)).toBe(1);
  });
});
