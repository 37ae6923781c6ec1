import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { connect, uniqueRoom } from "../helpers/ws.ts";

const chat = (n: number) => ({ v: 1, svc: "chat", type: "send", data: n });

describe("rate limits", () => {
  it("drop: frames over the bucket are dropped silently", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "dropper", room, ticket: "dev:alice" });
    const b = await connect({ tenant: "dropper", room, ticket: "dev:bob" });
    for (let i = 0; i < 4; i++) a.send(chat(i));
    const got = (await b.quiet(300)).filter((m) => m.kind === "text" && m.json.svc === "chat");
    expect(got.map((m) => (m.kind === "text" ? m.json.data : null))).toEqual([0, 1]);
    expect((await a.quiet(50)).filter((m) => m.kind === "text" && m.json.svc === "sys")).toEqual([]);
  });

  it("close: the frame over the bucket gets RATE_LIMITED and close 4008", async () => {
    const a = await connect({ tenant: "quiet", room: uniqueRoom(), ticket: "dev:alice" });
    for (let i = 0; i < 3; i++) a.send(chat(i));
    expect((await a.nextOf("sys", "error")).data.code).toBe("RATE_LIMITED");
    expect((await a.closed()).code).toBe(4008);
  });

  it("the bucket counts both lanes and survives eviction of the object", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "dropper", room, ticket: "dev:alice" });
    const b = await connect({ tenant: "dropper", room, ticket: "dev:bob" });
    a.sendHot(1, 1, [0]); // takes a token before the allowlist answers NOT_ALLOWED
    a.send(chat(2));
    expect((await a.nextOf("sys", "error")).data.code).toBe("NOT_ALLOWED");
    expect((await b.nextOf("chat", "send")).data).toBe(2);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`dropper/${room}`));
    await runInDurableObject(stub, (r) => r.metrics.flush()); // no pending flush timer to wait for
    await evictDurableObject(stub, { webSockets: "hibernate" });
    a.send(chat(3)); // still empty after the wake: dropped
    expect((await b.quiet(200)).filter((m) => m.kind === "text" && m.json.svc === "chat")).toEqual([]);
    await new Promise((r) => setTimeout(r, 1100)); // 1 rps refills one token
    a.send(chat(4));
    expect((await b.nextOf("chat", "send")).data).toBe(4);
  });

  it("tenant scope: the room's sockets share one bucket, and it survives eviction", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "shared", room, ticket: "dev:alice" });
    const b = await connect({ tenant: "shared", room, ticket: "dev:bob" });
    a.send(chat(1));
    b.send(chat(2));
    expect((await b.nextOf("chat", "send")).data).toBe(1);
    expect((await a.nextOf("chat", "send")).data).toBe(2);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`shared/${room}`));
    await runInDurableObject(stub, (r) => r.metrics.flush()); // no pending flush timer to wait for
    await evictDurableObject(stub, { webSockets: "hibernate" });
    a.send(chat(3));
    expect((await b.nextOf("chat", "send")).data).toBe(3);
    b.send(chat(4)); // the fourth frame in the room within a second: over the shared burst of 3
    expect((await b.nextOf("sys", "error")).data.code).toBe("RATE_LIMITED");
  });
});
