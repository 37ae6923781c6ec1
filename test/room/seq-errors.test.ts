/**
 * SPEC v1.1 section 4: every `sys.error` that answers a client message carries
 * its `seq`, RATE_LIMITED and PAYLOAD_TOO_LARGE included (issue 10 finding 3).
 */
import { describe, expect, it } from "vitest";
import { connect, uniqueRoom } from "../helpers/ws.ts";

const chat = (seq: number) => ({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { n: seq } });

describe("errors carry the seq of the message they answer", () => {
  it("RATE_LIMITED (action error) names the seq of the refused message", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "shared", room, ticket: "dev:alice" });
    for (let seq = 1; seq <= 4; seq++) a.send(chat(seq)); // burst 3: the 4th is over
    const err = await a.nextOf("sys", "error");
    expect(err.data).toMatchObject({ code: "RATE_LIMITED", seq: 4 });
  });

  it("RATE_LIMITED (action close) too, before close 4008", async () => {
    const a = await connect({ tenant: "quiet", room: uniqueRoom(), ticket: "dev:alice" });
    for (let seq = 10; seq < 13; seq++) a.send(chat(seq)); // burst 2
    expect((await a.nextOf("sys", "error")).data).toMatchObject({ code: "RATE_LIMITED", seq: 12 });
    expect((await a.closed()).code).toBe(4008);
  });

  it("RATE_LIMITED on the hot lane names the frame's seq", async () => {
    const a = await connect({ tenant: "shared", room: uniqueRoom(), ticket: "dev:hot" });
    // `shared` allows no hot pair: the first three are NOT_ALLOWED (after taking a token), the fourth is over the burst.
    for (let seq = 1; seq <= 4; seq++) a.sendHot(1, 1, [0], 100 + seq);
    const limited = await a.next((e) => e.type === "error" && e.data.code === "RATE_LIMITED");
    expect(limited.data.seq).toBe(104);
  });

  it("PAYLOAD_TOO_LARGE names the seq, then close 1009", async () => {
    const a = await connect({ tenant: "quiet", room: uniqueRoom(), ticket: "dev:big" });
    a.send({ v: 1, svc: "chat", type: "send", flags: 4, seq: 77, data: "x".repeat(5000) }); // over 4096
    expect((await a.nextOf("sys", "error")).data).toMatchObject({ code: "PAYLOAD_TOO_LARGE", seq: 77 });
    expect((await a.closed()).code).toBe(1009);
  });

  it("a nested seq is not mistaken for the message's", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "shared", room, ticket: "dev:nest" });
    for (let i = 0; i < 3; i++) a.send(chat(i + 1));
    a.send({ v: 1, svc: "chat", type: "send", data: { seq: 999 } });
    const err = await a.nextOf("sys", "error");
    expect(err.data.code).toBe("RATE_LIMITED");
    expect(err.data.seq).toBeUndefined();
  });
});
