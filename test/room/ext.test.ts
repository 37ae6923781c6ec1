import { describe, expect, it } from "vitest";
import { originLog, uniqueEvents } from "../helpers/origin.ts";
import { connect, dev, uniqueRoom } from "../helpers/ws.ts";

describe("ext lane", () => {
  it("authed first, then broadcast with from, and ack on request", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    expect(a.authed.data).toMatchObject({ tenant: "lobby", user: "alice", room, slot: 1 });
    expect(typeof a.authed.data.sid).toBe("string");
    expect(a.authed.trace_id).toMatch(/^[0-9a-f]{32}$/);
    const b = await dev("bob", room);
    expect(b.authed.data.slot).toBe(2);
    a.send({ v: 1, svc: "chat", type: "send", flags: 4, seq: 7, room, data: { msg: "hi" } });
    const got = await b.nextOf("chat", "send");
    expect(got).toMatchObject({ v: 1, svc: "chat", type: "send", room, seq: 7, data: { msg: "hi" } });
    expect(got.from).toEqual({ user: "alice", sid: a.authed.data.sid });
    const ack = await a.nextOf("sys", "ack");
    expect(ack.data).toEqual({ seq: 7 });
    // The sender does not get its own broadcast.
    expect((await a.quiet()).filter((m) => m.kind === "text" && m.json.svc === "chat")).toEqual([]);
  });

  it("presence join and leave go to the other members", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room, { sid: "bob-tab-1" });
    const join = await a.nextOf("sys", "presence");
    expect(join.data).toEqual({ event: "join", user: "bob", sid: "bob-tab-1", slot: 2 });
    b.close();
    const leave = await a.nextOf("sys", "presence");
    expect(leave.data).toEqual({ event: "leave", user: "bob", sid: "bob-tab-1", slot: 2 });
  });

  it.each([
    ["invalid JSON", "{nope", "BAD_REQUEST", undefined],
    ["not an object", "[1,2]", "BAD_REQUEST", undefined],
    ["missing v", { svc: "chat", type: "send", seq: 3 }, "BAD_REQUEST", 3],
    ["missing svc", { v: 1, type: "send", seq: 4 }, "BAD_REQUEST", 4],
    ["missing type", { v: 1, svc: "chat" }, "BAD_REQUEST", undefined],
    ["unknown field", { v: 1, svc: "chat", type: "send", seq: 5, extra: 1 }, "BAD_REQUEST", 5],
    ["v 2", { v: 2, svc: "chat", type: "send", seq: 6 }, "UNSUPPORTED_VERSION", 6],
    ["bad svc", { v: 1, svc: "Chat!", type: "send" }, "BAD_REQUEST", undefined],
    ["negative seq", { v: 1, svc: "chat", type: "send", seq: -1 }, "BAD_REQUEST", undefined],
    ["fractional seq", { v: 1, svc: "chat", type: "send", seq: 1.5 }, "BAD_REQUEST", undefined],
    ["flags not u32", { v: 1, svc: "chat", type: "send", flags: 2 ** 33, seq: 8 }, "BAD_REQUEST", 8],
    ["other room", { v: 1, svc: "chat", type: "send", seq: 9, room: "elsewhere" }, "BAD_REQUEST", 9],
    ["ack without seq", { v: 1, svc: "chat", type: "send", flags: 4 }, "BAD_REQUEST", undefined],
    ["not allowlisted svc", { v: 1, svc: "game", type: "move", seq: 10 }, "NOT_ALLOWED", 10],
    ["sys from client", { v: 1, svc: "sys", type: "hello", seq: 11 }, "NOT_SUPPORTED", 11],
    ["room:join another room", { v: 1, svc: "room", type: "join", seq: 12, data: { room: "x" } }, "NOT_SUPPORTED", 12],
    ["room:unknown", { v: 1, svc: "room", type: "dance", seq: 13 }, "NOT_SUPPORTED", 13],
  ])("%s answers %s with the seq echoed", async (_name, frame, code, seq) => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.send(frame);
    const err = await a.nextOf("sys", "error");
    expect(err.data.code).toBe(code);
    expect(typeof err.data.msg).toBe("string");
    expect(err.data.seq).toBe(seq);
    // Nothing reached the other member, and the socket stays open.
    expect((await b.quiet()).filter((m) => m.kind === "text" && m.json.svc !== "sys")).toEqual([]);
    a.send({ v: 1, svc: "chat", type: "send", data: 1 });
    expect((await b.nextOf("chat", "send")).data).toBe(1);
  });

  it("room:join of its own room answers joined; room:leave answers left and closes 1000", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    a.send({ v: 1, svc: "room", type: "join", data: { room } });
    expect((await a.nextOf("sys", "joined")).data).toEqual({ room });
    a.send({ v: 1, svc: "room", type: "join", room });
    expect((await a.nextOf("sys", "joined")).data).toEqual({ room });
    a.send({ v: 1, svc: "room", type: "leave" });
    expect((await a.nextOf("sys", "left")).data).toEqual({ room });
    expect((await a.closed()).code).toBe(1000);
  });

  it("a frame over max_frame_bytes closes 1009 after PAYLOAD_TOO_LARGE", async () => {
    const a = await dev("alice", uniqueRoom());
    a.send({ v: 1, svc: "chat", type: "send", data: "x".repeat(70_000) });
    expect((await a.nextOf("sys", "error")).data.code).toBe("PAYLOAD_TOO_LARGE");
    expect((await a.closed()).code).toBe(1009);
  });

  it("multi-byte text is measured in UTF-8 bytes", async () => {
    const a = await dev("alice", uniqueRoom());
    // 22,000 three-byte characters = 66,000 bytes > 65,536 though only 22,000 UTF-16 units.
    a.send({ v: 1, svc: "chat", type: "send", data: "€".repeat(22_000) });
    expect((await a.nextOf("sys", "error")).data.code).toBe("PAYLOAD_TOO_LARGE");
    expect((await a.closed()).code).toBe(1009);
  });
});

describe("JSON depth (SPEC section 4: deeper than 64 levels is BAD_REQUEST, never INTERNAL)", () => {
  const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  /** An envelope whose document is `depth` levels deep (the envelope object is level 1). */
  const frame = (depth: number, seq: number) => `{"v":1,"svc":"chat","type":"send","seq":${seq},"data":${nested(depth - 1)}}`;

  it("data nested 10,000 deep for an origin service: BAD_REQUEST with the seq (was INTERNAL), nothing posted", async () => {
    const room = uniqueRoom("depth");
    const a = await connect({ tenant: "depth-hooks", room, ticket: "dev:alice" });
    a.send(frame(10_001, 41).replace('"seq"', '"flags":4,"seq"'));
    const err = await a.nextOf("sys", "error");
    expect(err.data).toEqual({ code: "BAD_REQUEST", msg: "JSON nested deeper than 64 levels", seq: 41 });
    a.send({ v: 1, svc: "chat", type: "send", flags: 4, seq: 42, data: "after" });
    expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 42 });
    expect(uniqueEvents(await originLog(room)).map((e) => e.data)).toEqual(["after"]);
  });

  it("data nested 10,000 deep for a broadcast service: BAD_REQUEST with the seq; the socket stays usable", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.send(frame(10_001, 43));
    const err = await a.nextOf("sys", "error");
    expect(err.data).toEqual({ code: "BAD_REQUEST", msg: "JSON nested deeper than 64 levels", seq: 43 });
    a.send({ v: 1, svc: "chat", type: "send", data: "after" });
    expect((await b.nextOf("chat", "send")).data).toBe("after");
  });

  it("65 levels: BAD_REQUEST; 64 levels: relayed as sent", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.send(frame(65, 1));
    expect((await a.nextOf("sys", "error")).data).toEqual({ code: "BAD_REQUEST", msg: "JSON nested deeper than 64 levels", seq: 1 });
    a.send(frame(64, 2));
    const got = await b.nextOf("chat", "send");
    expect(got.seq).toBe(2);
    expect(got.data).toEqual(JSON.parse(nested(63)));
    expect((await a.quiet()).filter((m) => m.kind === "text" && m.json.type === "error")).toEqual([]);
  });

  it("brackets inside strings do not count", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    const text = `[{\\"${"[".repeat(100)}`;
    a.send({ v: 1, svc: "chat", type: "send", data: { text } });
    expect((await b.nextOf("chat", "send")).data).toEqual({ text });
  });
});
