/**
 * @wsprism/client against the real gateway (inside workerd). The SDK cannot open a
 * socket through `exports.default.fetch` by itself, so this test gives it a
 * WebSocket-like adapter over an upgrade fetch (the adapter lives here, not in
 * the SDK).
 */
import { env, exports } from "cloudflare:workers";
import { SignJWT } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { WsPrismClient, type WebSocketCtor, type WebSocketLike, type WsPrismClientOptions } from "../../client/src/index.ts";
import { runInDurableObject } from "cloudflare:test";
import type { RoomObject } from "../../src/room/room.ts";
import { uniqueRoom } from "../helpers/ws.ts";

let ipCounter = 0;

interface Adapter extends WebSocketLike {
  readonly url: string;
  protocol: string;
  /** Close code the gateway sent this socket (after the SDK stopped listening too). */
  serverClose: number | null;
  /** Binary WebSocket messages received (a batch frame counts once). */
  readonly binaryMessages: number;
  /** Simulate a dead network: the SDK sees 1006, the gateway still holds the socket. */
  dropNetwork(): void;
}

/** A WebSocket-like object over `exports.default.fetch` with an Upgrade header. */
function fetchSocket(headers: Record<string, string> = {}, made: Adapter[] = []): WebSocketCtor {
  return class FetchSocket implements Adapter {
    readyState = 0;
    binaryType = "blob";
    protocol = "";
    serverClose: number | null = null;
    binaryMessages = 0;
    readonly url: string;
    onopen: ((ev: any) => unknown) | null = null;
    onmessage: ((ev: any) => unknown) | null = null;
    onclose: ((ev: any) => unknown) | null = null;
    onerror: ((ev: any) => unknown) | null = null;
    private ws: WebSocket | null = null;
    private pendingClose: [number | undefined, string | undefined] | null = null;
    private chain: Promise<void> = Promise.resolve();
    private dead = false;

    constructor(url: string, protocols: string[] = []) {
      this.url = url;
      made.push(this);
      void this.start(url, protocols);
    }

    private async start(url: string, protocols: string[]): Promise<void> {
      const h: Record<string, string> = { Upgrade: "websocket", "CF-Connecting-IP": `198.19.${(ipCounter >> 8) & 0xff}.${ipCounter++ & 0xff}`, ...headers };
      if (protocols.length > 0) h["Sec-WebSocket-Protocol"] = protocols.join(", ");
      const res = await exports.default.fetch(url.replace(/^ws/, "http"), { headers: h });
      if (res.status !== 101 || !res.webSocket) {
        this.readyState = 3;
        this.onerror?.({});
        this.onclose?.({ code: 1006, reason: `HTTP ${res.status}` });
        return;
      }
      const ws = res.webSocket;
      ws.accept();
      this.ws = ws;
      this.protocol = res.headers.get("Sec-WebSocket-Protocol") ?? "";
      // workerd may deliver binary frames as Blobs: read them in arrival order.
      ws.addEventListener("message", (ev: MessageEvent) => {
        const d = ev.data as string | ArrayBuffer | Blob;
        if (typeof d !== "string") this.binaryMessages++;
        this.chain = this.chain.then(async () => {
          const data = d instanceof Blob ? await d.arrayBuffer() : d;
          if (!this.dead) this.onmessage?.({ data });
        });
      });
      ws.addEventListener("close", (ev: CloseEvent) => {
        this.chain = this.chain.then(() => {
          this.serverClose = ev.code;
          if (this.dead) return;
          this.readyState = 3;
          this.onclose?.({ code: ev.code, reason: ev.reason });
        });
      });
      if (this.pendingClose) {
        ws.close(...this.pendingClose);
        return;
      }
      this.readyState = 1;
      this.onopen?.({});
    }

    send(data: string | Uint8Array<ArrayBuffer>): void {
      if (this.readyState !== 1 || !this.ws) throw new Error("not open");
      this.ws.send(data);
    }

    close(code?: number, reason?: string): void {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      if (this.ws) this.ws.close(code, reason);
      else this.pendingClose = [code, reason];
    }

    dropNetwork(): void {
      this.dead = true;
      this.readyState = 3;
      this.onclose?.({ code: 1006, reason: "network" });
    }
  };
}

const clients: WsPrismClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function client(opts: Partial<WsPrismClientOptions> & Pick<WsPrismClientOptions, "room" | "getTicket">, ctor = fetchSocket()) {
  const c = new WsPrismClient({ url: "ws://gw.test", tenant: "lobby", WebSocket: ctor, heartbeatMs: 0, ...opts });
  clients.push(c);
  return c;
}

function authed(c: WsPrismClient) {
  return new Promise<NonNullable<WsPrismClient["session"]>>((resolve) => {
    const off = c.on("authed", (a) => {
      off();
      resolve(a);
    });
  });
}

const until = <T>(fn: () => T) => vi.waitFor(fn, { timeout: 5000, interval: 10 });

describe("SDK against the gateway", () => {
  it("two clients chat with acks, see presence and exchange relay, echo and state frames", async () => {
    const room = uniqueRoom("sdk");
    const alice = client({ room, getTicket: () => "dev:alice", heartbeatMs: 50 });
    const a = await authed(alice);
    const bob = client({ room, getTicket: async () => "dev:bob" });
    const b = await authed(bob);
    expect(a).toMatchObject({ tenant: "lobby", user: "alice", room });
    expect(b.slot).not.toBe(a.slot);

    // presence: alice learns bob's slot from the join
    await until(() => expect(alice.members.get(b.slot)).toEqual({ user: "bob", sid: b.sid }));
    expect(bob.members.get(b.slot)).toEqual({ user: "bob", sid: b.sid });

    // chat (broadcast handler) with an ack
    const chats: unknown[] = [];
    alice.onMessage("chat", "*", (data, env) => chats.push({ data, from: env.from, seq: env.seq }));
    await bob.send("chat", "send", { msg: "hi alice" }, { ack: true });
    await until(() => expect(chats).toEqual([{ data: { msg: "hi alice" }, from: { user: "bob", sid: b.sid }, seq: 1 }]));

    // an ack refused by the gateway: NOT_ALLOWED with the seq
    await expect(alice.send("nope", "x", {}, { ack: true })).rejects.toMatchObject({ code: "NOT_ALLOWED", seq: 1 });

    // hot relay (svc 1) with a seq
    const atBob: unknown[] = [];
    bob.onHot(1, "*", (sender, payload, seq) => atBob.push(["relay", sender, [...payload], seq]));
    bob.onHot(3, "*", (sender, payload, seq) => atBob.push(["state", sender, [...payload], seq]));
    expect(alice.sendHot(1, 5, new Uint8Array([1, 2, 3]), { seq: 7 })).toBe(true);
    await until(() => expect(atBob).toContainEqual(["relay", a.slot, [1, 2, 3], 7]));

    // hot echo (svc 2) back to the sender
    const echoes: unknown[] = [];
    alice.onHot(2, "*", (sender, payload, seq) => echoes.push([sender, [...payload], seq]));
    alice.sendHot(2, 9, new Uint8Array([42]));
    await until(() => expect(echoes).toEqual([[a.slot, [42], null]]));

    // hot state (svc 3) arrives in batch frames: the newest state wins
    alice.sendHot(3, 1, new Uint8Array([10]));
    alice.sendHot(3, 1, new Uint8Array([11]));
    await until(() => expect(atBob.at(-1)).toEqual(["state", a.slot, [11], null]));

    // the heartbeat's pong is the runtime's auto-response
    await until(() => expect(alice.rtt).not.toBeNull());

    bob.close();
    await until(() => expect(alice.members.has(b.slot)).toBe(false));
    expect(bob.status).toBe("closed");
  });

  it("reconnects after a network drop with a new ticket and the same sid, replacing the old session", async () => {
    const room = uniqueRoom("sdk");
    const sockets: Adapter[] = [];
    const getTicket = vi.fn(() => "dev:carol");
    const carol = client({ room, getTicket, backoff: { baseMs: 20, maxMs: 50 } }, fetchSocket({}, sockets));
    const first = await authed(carol);
    const queued: unknown[] = [];
    const watcher = client({ room, getTicket: () => "dev:dave" });
    await authed(watcher);
    watcher.onMessage("chat", "*", (d) => queued.push(d));

    const again = authed(carol);
    sockets[0]!.dropNetwork();
    expect(carol.status).toBe("reconnecting");
    void carol.send("chat", "send", { n: "queued while offline" });
    const second = await again;
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(new URL(sockets[1]!.url).searchParams.get("sid")).toBe(first.sid);
    expect(second.sid).toBe(first.sid);
    expect(second.slot).toBe(first.slot); // a replaced session keeps its slot
    await until(() => expect(sockets[0]!.serverClose).toBe(4004)); // the old session was replaced
    expect(carol.status).toBe("open");
    await until(() => expect(queued).toEqual([{ n: "queued while offline" }]));
  });

  it("lists the members who were there before (presence sync), and still after a reconnect", async () => {
    const room = uniqueRoom("sdk");
    const users = (c: WsPrismClient) => [...c.members.values()].map((m) => m.user).sort();
    const alice = client({ room, getTicket: () => "dev:alice" });
    const a = await authed(alice);
    const sockets: Adapter[] = [];
    const bob = client({ room, getTicket: () => "dev:bob", backoff: { baseMs: 20, maxMs: 50 } }, fetchSocket({}, sockets));
    await authed(bob);
    await until(() => expect(users(bob)).toEqual(["alice", "bob"])); // alice joined first
    const again = authed(bob);
    sockets[0]!.dropNetwork();
    expect(bob.members.get(a.slot)?.user).toBe("alice"); // kept while reconnecting
    await again;
    await until(() => expect(users(bob)).toEqual(["alice", "bob"]));
    await until(() => expect(users(alice)).toEqual(["alice", "bob"]));
  });

  it("passes a JWT as a subprotocol and refreshes it before exp", async () => {
    const secret = new TextEncoder().encode(env.TEST_JWT_SECRET);
    const getTicket = vi.fn(() =>
      new SignJWT({ sub: "erin" })
        .setProtectedHeader({ alg: "HS256" })
        .setAudience("wsprism-test")
        // 37-38 s of life (exp is whole seconds): the refresh is due 3-4 s after the
        // connect, minus the connect's own time. With 35 s the margin was under a
        // second, and when rounding plus a slow connect ate it, the time left was
        // under refreshBeforeExpMs and the SDK waited half the life (17 s) instead.
        .setExpirationTime(Math.floor(Date.now() / 1000) + 38)
        .sign(secret),
    );
    const sockets: Adapter[] = [];
    const erin = client(
      { tenant: "jwt-t", room: uniqueRoom("sdk"), getTicket, refreshBeforeExpMs: 34_000 },
      fetchSocket({ Origin: "https://app.example.com" }, sockets),
    );
    const errors: unknown[] = [];
    erin.on("error", (e) => errors.push(e));
    const acks: number[] = [];
    erin.onMessage("sys", "ack", (d: { seq: number }) => acks.push(d.seq));
    expect((await authed(erin)).user).toBe("erin");
    expect(sockets[0]!.protocol).toBe("wsprism.v1");
    expect(new URL(sockets[0]!.url).searchParams.has("ticket")).toBe(false);
    // 3-4 s later (37-38 s life, refresh 34 s before exp): sys:refresh with a new ticket, acked
    // (a generous wait: under a loaded full run the refresh's round trip has taken over 4 s)
    await vi.waitFor(() => expect(acks).toEqual([1]), { timeout: 12_000, interval: 10 });
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(errors).toEqual([]);
    expect(erin.status).toBe("open");
  }, 20_000);

  it("a coalesced relay's batch frames reach onHot as the single frames, with their senders' slots, in order", async () => {
    const room = uniqueRoom("co-sdk");
    const tenant = "co-relay";
    const sockets: Adapter[] = [];
    const rx = client({ tenant, room, getTicket: () => "dev:rx" }, fetchSocket({}, sockets));
    await authed(rx);
    const alice = client({ tenant, room, getTicket: () => "dev:alice" });
    const a = await authed(alice);
    const carol = client({ tenant, room, getTicket: () => "dev:carol" });
    const c = await authed(carol);
    const got: Array<[number, number, number[], number | null]> = [];
    rx.onHot(1, "*", (sender, payload, seq) => got.push([1, sender, [...payload], seq]));
    rx.onHot(4, "*", (sender, payload, seq) => got.push([4, sender, [...payload], seq]));
    for (let i = 0; i < 30; i++) {
      alice.sendHot(1, 2, new Uint8Array([i]), { seq: i });
      carol.sendHot(1, 3, new Uint8Array([i, i]));
    }
    carol.sendHot(4, 1, new Uint8Array([99])); // an uncoalesced relay: the same handler form
    await until(() => expect(got).toHaveLength(61));
    const range = [...Array(30).keys()];
    expect(got.filter(([, s]) => s === a.slot)).toEqual(range.map((i) => [1, a.slot, [i], i]));
    expect(got.filter(([svc, s]) => svc === 1 && s === c.slot)).toEqual(range.map((i) => [1, c.slot, [i, i], null]));
    expect(got).toContainEqual([4, c.slot, [99], null]);
    // Batches did arrive: fewer binary messages than frames.
    expect(sockets[0]!.binaryMessages).toBeLessThan(61);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`));
    expect(await runInDurableObject(stub, (o: RoomObject) => o.coalescer.batchesSent)).toBeGreaterThan(0);
  });
});

describe("SDK resume against the gateway (SPEC section 10)", () => {
  it("after a network drop: the missed chat arrives once and in order, an unacked message is acked once, no presence flap", async () => {
    const room = uniqueRoom("sdk-rec");
    const sockets: Adapter[] = [];
    const alice = client({ tenant: "rec", room, getTicket: () => "dev:alice" }, fetchSocket({}, sockets));
    await authed(alice);
    const bob = client({ tenant: "rec", room, getTicket: () => "dev:bob" });
    await authed(bob);
    const got: number[] = [];
    alice.onMessage("chat", "say", (d: { n: number }) => got.push(d.n));
    const presence: string[] = [];
    bob.onMessage("sys", "presence", (d: { event: string; user: string }) => presence.push(`${d.event}:${d.user}`));
    const recovered: number[] = [];
    alice.on("recovered", (r: { count: number }) => recovered.push(r.count));
    await bob.send("chat", "say", { n: 1 }, { ack: true });
    await until(() => expect(got).toEqual([1]));
    sockets[0]!.dropNetwork(); // alice's SDK sees 1006; the gateway still holds her socket
    const acked = alice.send("chat", "say", { n: 100 }, { ack: true }); // queued while away, resent after the resume
    for (let n = 2; n <= 6; n++) await bob.send("chat", "say", { n }, { ack: true });
    await until(() => expect(recovered).toEqual([5]));
    await acked;
    expect(got).toEqual([1, 2, 3, 4, 5, 6]);
    await bob.send("chat", "say", { n: 7 }, { ack: true });
    await until(() => expect(got).toEqual([1, 2, 3, 4, 5, 6, 7]));
    expect(presence.filter((p) => p.endsWith(":alice"))).toEqual([]);
    expect(alice.position?.off).toBeGreaterThan(0);
  });

  it("a resume naming a sid another user took meanwhile: a new session under a fresh sid, reported as resync", async () => {
    const room = uniqueRoom("sdk-sid");
    const sid = `S${crypto.randomUUID().replaceAll("-", "")}`;
    const sockets: Adapter[] = [];
    const carol = client({ tenant: "rec", room, sid, getTicket: () => "dev:carol", backoff: { baseMs: 20, maxMs: 50 } }, fetchSocket({}, sockets));
    await authed(carol);
    carol.close(); // deliberate (1000): the session ends, its sid is free
    const dir = env.DIRECTORY.get(env.DIRECTORY.idFromName("t/rec"));
    await until(async () => expect((await dir.list()).some((r) => r.sid === sid)).toBe(false));
    const dave = client({ tenant: "rec", room, sid, getTicket: () => "dev:dave" });
    expect((await authed(dave)).sid).toBe(sid);
    const got: unknown[] = [];
    dave.onMessage("chat", "*", (d) => got.push(d));
    const resyncs: unknown[] = [];
    carol.on("resync", (r) => resyncs.push(r));
    const gaveUp = new Promise<never>((_, no) => carol.on("close", (c) => c.willReconnect || no(new Error(`stopped at ${c.code}`))));
    const again = Promise.race([authed(carol), gaveUp]);
    carol.connect();
    const acked = carol.send("chat", "send", { n: "queued" }, { ack: true });
    const fresh = await again;
    const [refused, next] = [1, 2].map((i) => new URL(sockets[i]!.url).searchParams);
    expect([refused!.get("sid"), refused!.has("resume")]).toEqual([sid, true]);
    expect(carol.lastError).toEqual({ code: "BAD_REQUEST", msg: "sid is held by another user" });
    expect([next!.has("sid"), next!.has("resume")]).toEqual([false, false]);
    expect(fresh.sid).not.toBe(sid);
    expect(carol.sid).toBe(fresh.sid);
    expect(resyncs).toEqual([{ reason: "sid_taken" }]);
    await acked;
    await until(() => expect(got).toEqual([{ n: "queued" }]));
  });
});
