/** @wsprism/client against a scripted fake WebSocket, with fake timers. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { WsPrismError } from "../../client/src/index.ts";
import { encodeOutbound } from "../../src/protocol/hot.ts";
import { encodeBatches } from "../../src/room/state.ts";
import { fakeJwt, flush, setup } from "./fake.ts";

beforeEach(() => {
  vi.useFakeTimers({ now: new Date("2026-01-01T00:00:00Z") });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("connecting", () => {
  it("opens with the ticket as a subprotocol, tenant and room in the query, arraybuffer binaries", async () => {
    const { client, sockets, statuses, connect } = setup();
    const authed = vi.fn();
    client.on("authed", authed);
    expect(client.status).toBe("connecting");
    const s = await connect(5);
    expect(sockets).toHaveLength(1);
    const u = new URL(s.url);
    expect(u.protocol).toBe("wss:");
    expect(u.pathname).toBe("/v1/ws");
    expect(Object.fromEntries(u.searchParams)).toEqual({ tenant: "acme", room: "r1" });
    expect(s.protocols).toEqual(["wsprism.v1", "ticket.t1"]);
    expect(s.binaryType).toBe("arraybuffer");
    expect(authed).toHaveBeenCalledWith({ tenant: "acme", user: "alice", sid: "sid-a", room: "r1", slot: 5 });
    expect(client.status).toBe("open");
    expect(statuses).toEqual(["open"]);
    expect(client.session?.slot).toBe(5);
    expect(client.sid).toBe("sid-a");
  });

  it("puts a ticket that is not a valid subprotocol token (dev:<user>) in the query", async () => {
    const { last } = setup({ getTicket: () => "dev:alice", url: "http://127.0.0.1:8787/custom/path", sid: "tab-1" });
    await flush();
    const u = new URL(last().url);
    expect(u.protocol).toBe("ws:");
    expect(u.pathname).toBe("/custom/path");
    expect(u.searchParams.get("ticket")).toBe("dev:alice");
    expect(u.searchParams.get("sid")).toBe("tab-1");
    expect(last().protocols).toEqual(["wsprism.v1"]);
  });

  it("does not connect with autoConnect: false until connect()", async () => {
    const { client, sockets } = setup({ autoConnect: false });
    await flush();
    expect(sockets).toHaveLength(0);
    expect(client.status).toBe("closed");
    client.connect();
    await flush();
    expect(sockets).toHaveLength(1);
    expect(client.status).toBe("connecting");
  });

  it("rejects a malformed url at construction", () => {
    expect(() => setup({ url: "ftp://x" })).toThrow(/ws\(s\)/);
  });
});

describe("reconnecting", () => {
  it("reconnects after 1006 with a NEW ticket, the same sid, after the jittered backoff", async () => {
    const { client, sockets, getTicket, closes, statuses, connect } = setup();
    const first = await connect();
    first.drop(1006, "gone");
    expect(closes).toEqual([{ code: 1006, reason: "gone", willReconnect: true }]);
    expect(client.status).toBe("reconnecting");
    // random 0.5 × min(15000, 250 × 2^0) = 125 ms
    await vi.advanceTimersByTimeAsync(124);
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(2);
    expect(getTicket).toHaveBeenCalledTimes(2);
    const second = sockets[1]!;
    expect(second.protocols).toEqual(["wsprism.v1", "ticket.t2"]);
    expect(second.query().get("sid")).toBe("sid-a"); // replaces the old session
    second.open();
    second.authed();
    expect(statuses).toEqual(["open", "reconnecting", "open"]);
  });

  it.each([
    [4001, "auth expired"],
    [4003, "kicked"],
    [4004, "session replaced"],
    [1008, "policy"],
    [1000, "left the room"],
  ])("does not reconnect after close %i (%s)", async (code) => {
    const { client, sockets, closes, connect } = setup();
    await connect();
    client.send("chat", "send", { q: 1 }); // sent
    sockets[0]!.drop(code, "bye");
    expect(closes).toEqual([{ code, reason: "bye", willReconnect: false }]);
    expect(client.status).toBe("closed");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(1);
    expect(() => client.send("chat", "send", {})).toThrow(expect.objectContaining({ code: "CLOSED" }));
  });

  it("does not reconnect after close(), even from the backoff wait", async () => {
    const { client, sockets, closes, statuses, connect } = setup();
    const s = await connect();
    client.close();
    expect(s.closedWith).toEqual({ code: 1000, reason: "client closed" });
    expect(closes).toEqual([{ code: 1000, reason: "client closed", willReconnect: false }]);
    expect(statuses.at(-1)).toBe("closed");
    s.drop(1000); // the late close event of the old socket changes nothing
    expect(closes).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(1);

    // close() while waiting to reconnect
    const b = setup();
    const bs = await b.connect();
    bs.drop(1006);
    b.client.close();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(b.sockets).toHaveLength(1);
    expect(b.client.status).toBe("closed");
  });

  it("can connect() again after a terminal close", async () => {
    const { client, sockets, connect } = setup();
    (await connect()).drop(4003);
    client.connect();
    const s = await connect();
    expect(sockets).toHaveLength(2);
    expect(s.query().get("sid")).toBe("sid-a");
    expect(client.status).toBe("open");
  });

  it("grows the backoff on failed attempts and resets it after authed", async () => {
    const { sockets, connect } = setup({ random: () => 0.999999 });
    await flush();
    // Attempts that fail before authed (e.g. a handshake refused: the browser sees 1006).
    const expected = [249, 499, 999, 1999, 3999];
    for (const delay of expected) {
      const count = sockets.length;
      sockets.at(-1)!.drop(1006);
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(sockets).toHaveLength(count);
      await vi.advanceTimersByTimeAsync(1);
      expect(sockets).toHaveLength(count + 1);
    }
    sockets.at(-1)!.open();
    sockets.at(-1)!.authed();
    // after a successful authed the next drop waits the base delay again
    sockets.at(-1)!.drop(1006);
    const count = sockets.length;
    await vi.advanceTimersByTimeAsync(249);
    expect(sockets).toHaveLength(count + 1);
    await connect();
  });

  it("caps the backoff at maxMs", async () => {
    const { sockets } = setup({ random: () => 0.999999, backoff: { baseMs: 1000, maxMs: 3000 } });
    await flush();
    for (const delay of [999, 1999, 2999, 2999, 2999]) {
      const count = sockets.length;
      sockets.at(-1)!.drop(1006);
      await vi.advanceTimersByTimeAsync(delay);
      expect(sockets).toHaveLength(count + 1);
    }
  });

  it("retries with backoff when getTicket() fails, and reports it", async () => {
    let calls = 0;
    const { client, sockets, statuses } = setup({
      getTicket: async () => {
        if (++calls < 3) throw new Error("auth server down");
        return "t-ok";
      },
    });
    const errors: unknown[] = [];
    client.on("error", (e) => errors.push(e));
    await flush();
    expect(sockets).toHaveLength(0);
    expect(errors).toEqual([{ code: "TICKET_FAILED", msg: "auth server down" }]);
    expect(statuses).toEqual(["reconnecting"]);
    await vi.advanceTimersByTimeAsync(125 + 250);
    expect(calls).toBe(3);
    expect(sockets).toHaveLength(1);
    expect(sockets[0]!.protocols).toEqual(["wsprism.v1", "ticket.t-ok"]);
  });
});

describe("heartbeat", () => {
  it("pings at open, then every heartbeatMs, and measures rtt from the pong", async () => {
    const { client, connect } = setup({ heartbeatMs: 1000, pongTimeoutMs: 500 });
    const s = await connect();
    expect(s.sent[0]).toBe("ping"); // the first frame, at open
    expect(client.rtt).toBeNull();
    await vi.advanceTimersByTimeAsync(30);
    s.recv("pong");
    expect(client.rtt).toBe(30);
    await vi.advanceTimersByTimeAsync(970);
    expect(s.pings()).toBe(2);
    await vi.advanceTimersByTimeAsync(20);
    s.recv("pong");
    expect(client.rtt).toBe(20);
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.pings()).toBe(3);
    expect(client.status).toBe("open");
  });

  it("sends ping as its first frame even with the heartbeat off, and nothing more", async () => {
    // Why: workerd closes a socket late when the client's first frame is its answering close.
    const { client, connect } = setup({ heartbeatMs: 0 });
    const s = await connect();
    expect(s.sent).toEqual(["ping"]);
    await vi.advanceTimersByTimeAsync(60_000);
    s.recv("pong");
    expect(s.sent).toEqual(["ping"]); // no heartbeat, no pong timeout
    expect(client.rtt).toBeNull();
    expect(client.status).toBe("open");
  });

  it("closes and reconnects when the pong does not arrive", async () => {
    const { client, sockets, closes, connect } = setup({ heartbeatMs: 1000, pongTimeoutMs: 500 });
    const s = await connect(); // pinged at open
    await vi.advanceTimersByTimeAsync(499);
    expect(closes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.closedWith).toEqual({ code: 4000, reason: "pong timeout" });
    expect(closes).toEqual([{ code: 4000, reason: "pong timeout", willReconnect: true }]);
    expect(client.status).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(125);
    expect(sockets).toHaveLength(2);
    s.drop(1006); // the dead socket's late close is ignored
    expect(closes).toHaveLength(1);
    // no more pings on the old socket
    await vi.advanceTimersByTimeAsync(5000);
    expect(s.pings()).toBe(1);
  });
});

describe("ext lane", () => {
  it("assigns incrementing seqs and resolves sends without ack at once", async () => {
    const { client, connect } = setup();
    const s = await connect();
    await expect(client.send("chat", "send", { msg: "a" })).resolves.toBeUndefined();
    await client.send("chat", "send");
    expect(s.json()).toEqual([
      { v: 1, svc: "chat", type: "send", seq: 1, data: { msg: "a" } },
      { v: 1, svc: "chat", type: "send", seq: 2 },
    ]);
  });

  it("resolves an acked send on sys.ack with its seq", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const p = client.send("chat", "send", { msg: "hi" }, { ack: true });
    const sent = s.json()[0];
    expect(sent).toMatchObject({ flags: 4, seq: 1 });
    let done = false;
    void p.then(() => (done = true));
    s.sys("ack", { seq: 99 }); // someone else's
    await flush();
    expect(done).toBe(false);
    s.sys("ack", { seq: 1 });
    await expect(p).resolves.toBeUndefined();
  });

  it("rejects an acked send on sys.error with its seq, and emits the error", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const errors: unknown[] = [];
    client.on("error", (e) => errors.push(e));
    const p = client.send("nope", "x", {}, { ack: true });
    s.sys("error", { code: "NOT_ALLOWED", msg: "nope:x is not allowed", seq: 1 });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WsPrismError);
    expect(err).toMatchObject({ code: "NOT_ALLOWED", seq: 1 });
    expect(errors).toEqual([{ code: "NOT_ALLOWED", msg: "nope:x is not allowed", seq: 1 }]);
  });

  it("rejects an acked send with ACK_TIMEOUT after ackTimeoutMs", async () => {
    const { client, connect } = setup({ ackTimeoutMs: 2000, heartbeatMs: 0 });
    await connect();
    const p = client.send("chat", "send", {}, { ack: true });
    const caught = p.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1999);
    await vi.advanceTimersByTimeAsync(1);
    expect(await caught).toMatchObject({ code: "ACK_TIMEOUT", seq: 1 });
  });

  it("rejects unacked sends with DISCONNECTED when the socket closes", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const p = client.send("chat", "send", {}, { ack: true }).catch((e: unknown) => e);
    s.drop(1006);
    expect(await p).toMatchObject({ code: "DISCONNECTED" });
  });

  it("queues while offline up to maxQueue (then QUEUE_FULL) and flushes in order after authed", async () => {
    const { client, last } = setup({ maxQueue: 3 });
    const a = client.send("chat", "send", { n: 1 }, { ack: true });
    void client.send("chat", "send", { n: 2 });
    void client.send("chat", "send", { n: 3 });
    expect(client.queued).toBe(3);
    let err: unknown;
    try {
      void client.send("chat", "send", { n: 4 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WsPrismError);
    expect(err).toMatchObject({ code: "QUEUE_FULL" });
    // a listener's send on authed comes after the queued ones
    client.on("authed", () => void client.send("chat", "send", { n: 5 }));
    await flush();
    const s = last();
    s.open(); // not yet authed: still queued
    expect(s.json()).toEqual([]);
    s.authed();
    expect(s.json().map((m) => [m.seq, m.data.n])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 5],
    ]);
    expect(client.queued).toBe(0);
    s.sys("ack", { seq: 1 });
    await expect(a).resolves.toBeUndefined();
  });

  it("queues again after a drop, and drops the queue on a terminal close", async () => {
    const { client, sockets, connect } = setup();
    (await connect()).drop(1006);
    const queuedAck = client.send("chat", "send", { n: 1 }, { ack: true }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(125);
    sockets[1]!.open();
    sockets[1]!.drop(4004); // replaced before authed
    expect(await queuedAck).toMatchObject({ code: "CLOSED" });
    expect(client.queued).toBe(0);
  });

  it("refuses bad names, the sys svc and data that is not JSON", async () => {
    const { client } = setup();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const call of [
      () => client.send("Chat", "send"),
      () => client.send("chat", ""),
      () => client.send("sys", "refresh"),
      () => client.send("chat", "send", cyclic),
      () => client.send("chat", "send", 10n),
    ]) {
      expect(call).toThrow(expect.objectContaining({ code: "BAD_REQUEST" }));
    }
    expect(client.queued).toBe(0);
  });

  it("dispatches messages by svc and type, sys ones too, with unsubscribe", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const exact = vi.fn();
    const any = vi.fn();
    const off = client.onMessage("chat", "msg", exact);
    client.onMessage("chat", "*", any);
    const joined = vi.fn();
    client.onMessage("sys", "joined", joined);
    const env = { v: 1, svc: "chat", type: "msg", room: "r1", data: { msg: "hi" }, from: { user: "bob", sid: "b" } };
    s.recv(JSON.stringify(env));
    s.recv(JSON.stringify({ ...env, type: "other" }));
    s.sys("joined", { room: "r1" });
    s.recv("not json");
    s.recv('{"v":1}');
    expect(exact).toHaveBeenCalledWith({ msg: "hi" }, env);
    expect(any).toHaveBeenCalledTimes(2);
    expect(joined).toHaveBeenCalledWith({ room: "r1" }, expect.objectContaining({ type: "joined" }));
    off();
    s.recv(JSON.stringify(env));
    expect(exact).toHaveBeenCalledTimes(1);
    expect(any).toHaveBeenCalledTimes(3);
  });

  it("survives a throwing listener", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const spy = vi.spyOn(console, "error").mockImplementation(() => {});
    const after = vi.fn();
    client.onMessage("chat", "*", () => {
      throw new Error("boom");
    });
    client.onMessage("chat", "*", after);
    s.recv(JSON.stringify({ v: 1, svc: "chat", type: "x" }));
    expect(after).toHaveBeenCalledTimes(1);
    expect(spy).toHaveBeenCalled();
    spy.mockRestore();
  });

  it("emits kicked, then the 4003 close", async () => {
    const { client, closes, connect } = setup();
    const s = await connect();
    const kicked = vi.fn();
    client.on("kicked", kicked);
    s.sys("kicked", { reason: "spam" });
    s.drop(4003, "kicked");
    expect(kicked).toHaveBeenCalledWith({ reason: "spam" });
    expect(closes).toEqual([{ code: 4003, reason: "kicked", willReconnect: false }]);
  });
});

describe("hot lane", () => {
  it("sends frames only when open and never queues them", async () => {
    const { client, last, connect } = setup();
    expect(client.sendHot(1, 2, new Uint8Array([1]))).toBe(false);
    await flush();
    const s = last(); // the socket exists but is not open
    expect(client.sendHot(1, 2, new Uint8Array([2]))).toBe(false);
    s.open();
    expect(client.sendHot(1, 2, new Uint8Array([3]))).toBe(false); // open but not authed
    s.authed();
    expect(s.binary()).toEqual([]); // nothing was queued
    expect(client.sendHot(1, 2, new Uint8Array([4]), { seq: 258 })).toBe(true);
    expect(client.sendHot(3, 0, new Uint8Array([5]))).toBe(true);
    expect(s.binary().map((b) => [...b])).toEqual([
      [1, 1, 2, 1, 2, 1, 0, 0, 4],
      [1, 3, 0, 0, 5],
    ]);
    s.drop(1006);
    expect(client.sendHot(1, 2, new Uint8Array([6]))).toBe(false);
    await vi.advanceTimersByTimeAsync(125);
    const s2 = await connect();
    expect(s2.binary()).toEqual([]);
  });

  it("validates svc, op and seq", () => {
    const { client } = setup();
    expect(() => client.sendHot(256, 0, new Uint8Array())).toThrow(RangeError);
    expect(() => client.sendHot(1, -1, new Uint8Array())).toThrow(RangeError);
    expect(() => client.sendHot(1, 1, new Uint8Array(), { seq: 2 ** 32 })).toThrow(RangeError);
  });

  it("decodes relay (with and without seq), echo and batch frames to onHot handlers", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const got: Array<[string, number, number[], number | null]> = [];
    client.onHot(1, "*", (sender, payload, seq) => got.push(["1:*", sender, [...payload], seq]));
    client.onHot(1, 7, (sender, payload, seq) => got.push(["1:7", sender, [...payload], seq]));
    client.onHot(2, "*", (sender, payload, seq) => got.push(["2:*", sender, [...payload], seq]));
    client.onHot(3, "*", (sender, payload, seq) => got.push(["3:*", sender, [...payload], seq]));
    const out = (svc: number, op: number, payload: number[], sender: number, seq: number | null) =>
      encodeOutbound({ svc, op, flags: seq === null ? 0 : 1, seq, payload: new Uint8Array(payload) }, sender);

    s.recv(out(1, 7, [0xca, 0xfe], 2, 42).slice().buffer); // relay with seq, as an ArrayBuffer
    s.recv(out(1, 8, [1], 3, null).slice().buffer); // relay without seq
    s.recv(out(2, 0, [9], 1, 5)); // echo (own slot), as a view
    const [batch] = encodeBatches([out(3, 1, [10], 2, null), out(3, 2, [11], 3, 77), out(1, 7, [12], 4, null)]);
    s.recv(batch!.slice().buffer);
    expect(got).toEqual([
      ["1:7", 2, [0xca, 0xfe], 42],
      ["1:*", 2, [0xca, 0xfe], 42],
      ["1:*", 3, [1], null],
      ["2:*", 1, [9], 5],
      ["3:*", 2, [10], null],
      ["3:*", 3, [11], 77],
      ["1:7", 4, [12], null],
      ["1:*", 4, [12], null],
    ]);
  });

  it("ignores malformed binary frames without throwing, and keeps going", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const got = vi.fn();
    client.onHot(1, "*", got);
    const bad = [[], [1], [1, 1, 1, 0], [9, 1, 1, 0x80, 1, 0], [1, 1, 1, 0x81, 0, 0, 0], [1, 0, 1, 0, 5, 0, 1]];
    for (const b of bad) expect(() => s.recv(new Uint8Array(b).buffer)).not.toThrow();
    expect(() => s.recv(12345)).not.toThrow();
    expect(got).not.toHaveBeenCalled();
    s.recv(encodeOutbound({ svc: 1, op: 1, flags: 0, seq: null, payload: new Uint8Array([1]) }, 2).slice().buffer);
    expect(got).toHaveBeenCalledTimes(1);
    expect(client.status).toBe("open");
  });

  it("reads Blob frames in arrival order", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const order: string[] = [];
    client.onHot(1, "*", (_s, p) => order.push(`hot:${p[0]}`));
    client.onMessage("chat", "*", (d: { n: number }) => order.push(`text:${d.n}`));
    const frame = (n: number) => encodeOutbound({ svc: 1, op: 1, flags: 0, seq: null, payload: new Uint8Array([n]) }, 2);
    s.recv(new Blob([frame(1)]));
    s.recv(JSON.stringify({ v: 1, svc: "chat", type: "x", data: { n: 2 } }));
    s.recv(new Blob([frame(3)]));
    s.recv(JSON.stringify({ v: 1, svc: "chat", type: "x", data: { n: 4 } }));
    await vi.waitFor(() => expect(order).toHaveLength(4));
    expect(order).toEqual(["hot:1", "text:2", "hot:3", "text:4"]);
  });
});

describe("presence", () => {
  it("keeps members by slot from authed and join/leave events", async () => {
    const { client, connect } = setup();
    const s = await connect(1);
    const events: unknown[] = [];
    client.on("presence", (p) => events.push(p));
    expect([...client.members]).toEqual([[1, { user: "alice", sid: "sid-a" }]]);
    s.sys("presence", { event: "join", user: "bob", sid: "b1", slot: 2 });
    s.sys("presence", { event: "join", user: "carol", sid: "c1", slot: 3 });
    s.sys("presence", { event: "leave", user: "bob", sid: "b1", slot: 2 });
    expect([...client.members.keys()]).toEqual([1, 3]);
    // a join for a slot already known replaces it (e.g. a replaced session keeps its slot)
    s.sys("presence", { event: "join", user: "carol", sid: "c2", slot: 3 });
    expect(client.members.get(3)).toEqual({ user: "carol", sid: "c2" });
    // a stale leave of the previous holder of the slot does not remove the new one
    s.sys("presence", { event: "leave", user: "carol", sid: "c1", slot: 3 });
    expect(client.members.get(3)).toEqual({ user: "carol", sid: "c2" });
    s.sys("presence", { event: "bogus", slot: 9 });
    expect(events).toHaveLength(5);
    expect(events[0]).toEqual({ event: "join", user: "bob", sid: "b1", slot: 2 });
  });

  it("lists those who were there before (presence sync) and keeps them across a reconnect", async () => {
    const { client, connect } = setup();
    const s = await connect(3);
    const seen: number[][] = [];
    client.on("members", (m) => seen.push([...m.keys()]));
    s.sys("presence", { event: "sync", members: [{ user: "bob", sid: "b1", slot: 1 }, { user: "carol", sid: "c1", slot: 2 }] });
    expect([...client.members]).toEqual([
      [3, { user: "alice", sid: "sid-a" }],
      [1, { user: "bob", sid: "b1" }],
      [2, { user: "carol", sid: "c1" }],
    ]);
    s.drop(1006);
    expect(client.members.size).toBe(3); // still the last known list while reconnecting
    await vi.advanceTimersByTimeAsync(125);
    const s2 = await connect(3);
    s2.sys("presence", { event: "sync", members: [{ user: "bob", sid: "b1", slot: 1 }] }); // carol left meanwhile
    expect([...client.members.keys()].sort()).toEqual([1, 3]);
    expect(seen).toEqual([[3, 1, 2], [3, 1]]);
  });

  it("starts over from the new authed after a reconnect", async () => {
    const { client, connect } = setup();
    const s = await connect(1);
    s.sys("presence", { event: "join", user: "bob", sid: "b1", slot: 2 });
    s.drop(1006);
    await vi.advanceTimersByTimeAsync(125);
    await connect(4);
    expect([...client.members]).toEqual([[4, { user: "alice", sid: "sid-a" }]]);
  });
});

describe("JWT refresh", () => {
  const now = () => Math.floor(Date.now() / 1000);

  it("refreshes refreshBeforeExpMs before exp and schedules the next from the new exp", async () => {
    const tickets: string[] = [];
    const getTicket = vi.fn(() => {
      const t = fakeJwt({ sub: "alice", exp: now() + 120, n: tickets.length });
      tickets.push(t);
      return t;
    });
    const { client, connect } = setup({ getTicket, refreshBeforeExpMs: 30_000, heartbeatMs: 0 });
    const s = await connect();
    expect(s.protocols).toEqual(["wsprism.v1", `ticket.${tickets[0]}`]);
    void client.send("chat", "send"); // seq 1
    await vi.advanceTimersByTimeAsync(89_999);
    expect(getTicket).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(getTicket).toHaveBeenCalledTimes(2);
    const refresh = s.json().at(-1);
    expect(refresh).toEqual({ v: 1, svc: "sys", type: "refresh", flags: 4, seq: 2, data: { ticket: tickets[1] } });
    s.sys("ack", { seq: 2 });
    await flush();
    // the new ticket expires 120 s after it was made: next refresh 90 s later
    await vi.advanceTimersByTimeAsync(89_999);
    expect(getTicket).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(getTicket).toHaveBeenCalledTimes(3);
    expect(s.json().at(-1)).toMatchObject({ type: "refresh", seq: 3, data: { ticket: tickets[2] } });
  });

  it("retries a refused refresh while the ticket is valid", async () => {
    const getTicket = vi.fn(() => fakeJwt({ sub: "alice", exp: now() + 60 }));
    const { client, connect } = setup({ getTicket, refreshBeforeExpMs: 30_000, heartbeatMs: 0 });
    const errors: unknown[] = [];
    client.on("error", (e) => errors.push(e));
    const s = await connect();
    await vi.advanceTimersByTimeAsync(30_000);
    const first = s.json().at(-1);
    expect(first).toMatchObject({ type: "refresh", seq: 1 });
    s.sys("error", { code: "AUTH_FAILED", msg: "bad", seq: 1 });
    await flush();
    expect(errors).toEqual([{ code: "AUTH_FAILED", msg: "bad", seq: 1 }]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(s.json().at(-1)).toMatchObject({ type: "refresh", seq: 2 });
  });

  it("refreshes at half the remaining life of a short ticket", async () => {
    const getTicket = vi.fn(() => fakeJwt({ sub: "alice", exp: now() + 20 }));
    const { connect } = setup({ getTicket, refreshBeforeExpMs: 30_000, heartbeatMs: 0 });
    const s = await connect();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(s.json()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.json().at(-1)).toMatchObject({ type: "refresh" });
  });

  it("does not refresh opaque tickets, nor after the socket closed", async () => {
    const { getTicket, connect } = setup({ heartbeatMs: 0 });
    const s = await connect();
    await vi.advanceTimersByTimeAsync(24 * 3600_000);
    expect(getTicket).toHaveBeenCalledTimes(1);
    expect(s.json()).toEqual([]);

    const b = setup({ getTicket: () => fakeJwt({ sub: "a", exp: now() + 60 }), heartbeatMs: 0 });
    const bs = await b.connect();
    b.client.close();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(bs.json()).toEqual([]);
  });
});
