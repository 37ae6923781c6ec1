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

  it("tenant scope: the shared bucket lives in memory and is written at most once a second, never holding a send for its commit (SPEC v1.2 section 12)", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "shared-fast", room, ticket: "dev:alice" });
    const b = await connect({ tenant: "shared-fast", room, ticket: "dev:bob" });
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`shared-fast/${room}`));
    // Count every write of the bucket, through either storage API.
    await runInDurableObject(stub, (_r, state: DurableObjectState) => {
      const counted = globalThis as { bucketWrites?: number };
      counted.bucketWrites = 0;
      const kvPut = state.storage.kv.put.bind(state.storage.kv);
      const put = state.storage.put.bind(state.storage) as (...args: unknown[]) => Promise<void>;
      state.storage.kv.put = ((key: string, value: unknown) => ((key === "rl:tenant" && counted.bucketWrites!++), kvPut(key, value))) as typeof state.storage.kv.put;
      (state.storage as { put: unknown }).put = (key: unknown, ...rest: unknown[]) => ((key === "rl:tenant" && counted.bucketWrites!++), put(key, ...rest));
    });
    for (let i = 0; i < 20; i++) a.send(chat(i));
    for (let i = 0; i < 20; i++) await b.nextOf("chat", "send");
    const writes = await runInDurableObject(stub, () => (globalThis as { bucketWrites?: number }).bucketWrites);
    expect(writes).toBeLessThanOrEqual(1);
  });

  it("tenant scope: the room's sockets share one bucket, and it survives eviction (as last written, at most a second old)", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "shared", room, ticket: "dev:alice" });
    const b = await connect({ tenant: "shared", room, ticket: "dev:bob" });
    a.send(chat(1)); // 3 -> 2 tokens, written
    b.send(chat(2)); // 2 -> 1, in memory only (within the second)
    expect((await b.nextOf("chat", "send")).data).toBe(1);
    expect((await a.nextOf("chat", "send")).data).toBe(2);
    await new Promise((r) => setTimeout(r, 1100));
    a.send(chat(3)); // ~2.1 -> ~1.1 tokens, written (a second since the last write)
    expect((await b.nextOf("chat", "send")).data).toBe(3);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`shared/${room}`));
    await runInDurableObject(stub, (r) => r.metrics.flush()); // no pending flush timer to wait for
    await evictDurableObject(stub, { webSockets: "hibernate" });
    b.send(chat(4)); // the bucket read back: ~1.1 tokens, one more frame
    expect((await a.nextOf("chat", "send")).data).toBe(4);
    a.send(chat(5)); // a fresh bucket would have 3: the shared one is exhausted
    expect((await a.nextOf("sys", "error")).data.code).toBe("RATE_LIMITED");
  });
});
