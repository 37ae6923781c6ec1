/**
 * @wsprism/client, SPEC section 10 from the client's side: the room position
 * (`{epoch, off}` from `authed`, then from every frame with `off`), duplicates
 * dropped, `resume=<epoch>.<off>` on reconnects, unacked messages resent with
 * the same seq (not those <= `last_seq`), and the `recovered` / `resync` events.
 * A scripted fake socket plays the gateway (test/client/fake.ts), with fake timers.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { flush, setup, type FakeSocket } from "./fake.ts";

beforeEach(() => {
  vi.useFakeTimers({ now: new Date("2026-01-01T00:00:00Z") });
});
afterEach(() => {
  vi.useRealTimers();
});

/** With random() = 0.5 the first backoff is 125 ms (0.5 × 250). */
const FIRST_BACKOFF = 125;

/** A client connected to a room whose log is at `e1`, offset `off`. */
async function connected(off = 10, opts: Parameters<typeof setup>[0] = {}) {
  const t = setup({ heartbeatMs: 0, ...opts });
  await flush();
  const s = t.last();
  s.open();
  s.authed(1, "alice", "sid-a", { epoch: "e1", off });
  return { ...t, s };
}

/** Drop `s` (1006), wait for the backoff, open the next socket; authed is up to the test. */
async function dropAndReopen(t: { sockets: FakeSocket[] }, s: FakeSocket): Promise<FakeSocket> {
  s.drop(1006);
  await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
  const next = t.sockets.at(-1)!;
  expect(next).not.toBe(s);
  next.open();
  return next;
}

describe("position", () => {
  it("starts from authed and sends no resume on a first connect", async () => {
    const { client, s } = await connected(10);
    expect(s.query().has("resume")).toBe(false);
    expect(client.position).toEqual({ epoch: "e1", off: 10 });
  });

  it("stays null against a gateway whose authed has no position", async () => {
    const { client, connect, sockets } = setup();
    const s = await connect();
    s.logged(3, "chat", "msg", {});
    expect(client.position).toBeNull();
    await dropAndReopen({ sockets }, s);
    expect(sockets[1]!.query().has("resume")).toBe(false);
  });

  it("advances on every frame with off, sys answers included; frames without off leave it", async () => {
    const { client, s } = await connected(10);
    const got: unknown[] = [];
    client.onMessage("chat", "*", (d) => got.push(d));
    s.logged(11, "chat", "msg", { n: 1 });
    expect(client.position).toEqual({ epoch: "e1", off: 11 });
    s.recv(JSON.stringify({ v: 1, svc: "chat", type: "msg", data: { n: "live" } })); // a service without recovery
    expect(client.position).toEqual({ epoch: "e1", off: 11 });
    s.recv(JSON.stringify({ v: 1, svc: "sys", type: "ack", data: { seq: 9 }, off: 12 }));
    expect(client.position).toEqual({ epoch: "e1", off: 12 });
    expect(got).toEqual([{ n: 1 }, { n: "live" }]);
  });

  it("drops a frame whose off is at or below the position: never delivered, ack not settled twice", async () => {
    const { client, s } = await connected(10);
    const got: unknown[] = [];
    client.onMessage("chat", "msg", (d) => got.push(d));
    const errors: unknown[] = [];
    client.on("error", (e) => errors.push(e));
    s.logged(11, "chat", "msg", { n: 1 });
    s.logged(11, "chat", "msg", { n: "dup" });
    s.logged(9, "chat", "msg", { n: "old" });
    s.logged(10, "chat", "msg", { n: "head" }); // at authed's head: already reflected in the state
    s.recv(JSON.stringify({ v: 1, svc: "sys", type: "error", data: { code: "X", msg: "", seq: 1 }, off: 5 }));
    s.logged(12, "chat", "msg", { n: 2 });
    expect(got).toEqual([{ n: 1 }, { n: 2 }]);
    expect(errors).toEqual([]);
    expect(client.position).toEqual({ epoch: "e1", off: 12 });
  });
});

describe("reconnect with resume", () => {
  it("reconnects after a drop with the same sid and resume=<epoch>.<off>, and on reconnect()", async () => {
    const { client, s, sockets } = await connected(10);
    s.logged(11, "chat", "msg", {});
    s.logged(14, "chat", "msg", {});
    const s2 = await dropAndReopen({ sockets }, s);
    expect(s2.query().get("sid")).toBe("sid-a");
    expect(s2.query().get("resume")).toBe("e1.14");
    expect(s2.protocols).toEqual(["wsprism.v1", "ticket.t2"]); // a fresh ticket
    s2.authed(1, "alice", "sid-a", { epoch: "e1", off: 20, resumed: true, recovered: true, count: 1, last_seq: 0 });
    s2.logged(17, "chat", "msg", {});
    client.reconnect(); // manual
    await flush();
    expect(sockets[2]!.query().get("resume")).toBe("e1.17");
    expect(sockets[2]!.query().get("sid")).toBe("sid-a");
  });

  it("resends acked messages without an answer with the same seq, except seq <= last_seq, before the queue", async () => {
    const { client, s, sockets } = await connected(10);
    const p1 = client.send("chat", "send", { n: 1 }, { ack: true });
    const p2 = client.send("chat", "send", { n: 2 }, { ack: true });
    const p3 = client.send("chat", "send", { n: 3 }, { ack: true });
    void client.send("chat", "send", { n: 4 }); // no ack: fire and forget, not resent
    const p5 = client.send("chat", "send", { n: 5 }, { ack: true });
    s.recv(JSON.stringify({ v: 1, svc: "sys", type: "ack", data: { seq: 1 }, off: 11 }));
    await expect(p1).resolves.toBeUndefined();
    const settled: string[] = [];
    for (const [n, p] of [[2, p2], [3, p3], [5, p5]] as const) p.then(() => settled.push(`ok${n}`), (e) => settled.push(`${e.code}${n}`));
    const s2 = await dropAndReopen({ sockets }, s);
    void client.send("chat", "send", { n: 6 }, { ack: true }); // queued while reconnecting
    await flush();
    expect(settled).toEqual([]); // kept across the drop, not DISCONNECTED
    expect(s2.json()).toEqual([]); // nothing before authed
    s2.authed(1, "alice", "sid-a", { epoch: "e1", off: 11, resumed: true, recovered: true, count: 0, last_seq: 3 });
    // 2 and 3 were accepted by the room (last_seq 3): not resent; 5 resent with its seq, then the queued 6.
    expect(s2.json()).toEqual([
      { v: 1, svc: "chat", type: "send", flags: 4, seq: 5, data: { n: 5 } },
      { v: 1, svc: "chat", type: "send", flags: 4, seq: 6, data: { n: 6 } },
    ]);
    // Their acks come live (or by replay) and settle the original promises.
    s2.recv(JSON.stringify({ v: 1, svc: "sys", type: "ack", data: { seq: 2 }, off: 12 }));
    s2.recv(JSON.stringify({ v: 1, svc: "sys", type: "error", data: { code: "ORIGIN_REJECTED", msg: "no", seq: 3 }, off: 13 }));
    s2.recv(JSON.stringify({ v: 1, svc: "sys", type: "ack", data: { seq: 5 }, off: 14 }));
    await flush();
    expect(settled).toEqual(["ok2", "ORIGIN_REJECTED3", "ok5"]);
  });

  it("resends all of them when authed gives no last_seq", async () => {
    const { client, s, sockets } = await connected(10);
    void client.send("chat", "send", { n: 1 }, { ack: true }).catch(() => {});
    void client.send("chat", "send", { n: 2 }, { ack: true }).catch(() => {});
    const s2 = await dropAndReopen({ sockets }, s);
    s2.authed(1, "alice", "sid-a", { epoch: "e1", off: 10, resumed: false, recovered: false, reason: "too_old" });
    expect(s2.json().map((m) => m.seq)).toEqual([1, 2]);
  });

  it("keeps the ack timeout across the reconnect, and close() still rejects kept messages with CLOSED", async () => {
    const { client, s, sockets } = await connected(10, { ackTimeoutMs: 2000 });
    const timedOut = client.send("chat", "send", {}, { ack: true }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1000);
    s.drop(1006); // reconnecting, never authed again
    await vi.advanceTimersByTimeAsync(999);
    expect(sockets).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(await timedOut).toMatchObject({ code: "ACK_TIMEOUT", seq: 1 });

    sockets[1]!.open();
    sockets[1]!.authed(1, "alice", "sid-a", { epoch: "e1", off: 10, resumed: true, recovered: true, count: 0, last_seq: 0 });
    const closed = client.send("chat", "send", {}, { ack: true }).catch((e: unknown) => e);
    sockets[1]!.drop(1006);
    client.close();
    expect(await closed).toMatchObject({ code: "CLOSED", seq: 2 });
  });

  it("does not resend a ticket refresh (the new connection has a fresh ticket): it rejects with DISCONNECTED", async () => {
    const { client, s, sockets } = await connected(10);
    const sent = client.send("chat", "send", {}, { ack: true });
    const refresh = client.refresh().catch((e: unknown) => e);
    await flush();
    expect(s.json().map((m) => m.type)).toEqual(["send", "refresh"]);
    const s2 = await dropAndReopen({ sockets }, s);
    expect(await refresh).toMatchObject({ code: "DISCONNECTED" });
    s2.authed(1, "alice", "sid-a", { epoch: "e1", off: 10, resumed: true, recovered: true, count: 0, last_seq: 0 });
    expect(s2.json().map((m) => [m.type, m.seq])).toEqual([["send", 1]]);
    s2.sys("ack", { seq: 1 });
    await expect(sent).resolves.toBeUndefined();
  });

  it("without a position (no recovery on the gateway) rejects unacked messages with DISCONNECTED and resends nothing", async () => {
    const { client, connect, sockets } = setup();
    const s = await connect();
    const p = client.send("chat", "send", {}, { ack: true }).catch((e: unknown) => e);
    const s2 = await dropAndReopen({ sockets }, s);
    expect(await p).toMatchObject({ code: "DISCONNECTED" });
    s2.authed();
    expect(s2.json()).toEqual([]);
  });
});

describe("recovered and resync", () => {
  it("emits recovered after the count replayed frames, which are delivered even below authed's head", async () => {
    const { client, s, sockets } = await connected(10);
    const events: string[] = [];
    client.on("authed", () => events.push("authed"));
    client.on("recovered", ({ count }) => events.push(`recovered ${count}`));
    client.on("resync", () => events.push("resync"));
    client.onMessage("chat", "msg", (d: { n: number }) => events.push(`msg ${d.n}`));
    s.logged(11, "chat", "msg", { n: 11 });
    const s2 = await dropAndReopen({ sockets }, s);
    expect(s2.query().get("resume")).toBe("e1.11");
    // The room's head is 15; 13 and 15 were addressed to this session (12, 14 to others).
    s2.authed(1, "alice", "sid-a", { epoch: "e1", off: 15, resumed: true, recovered: true, count: 2, last_seq: 0 });
    expect(client.position).toEqual({ epoch: "e1", off: 11 }); // ours, not the head: the replay moves it
    s2.sys("presence", { event: "sync", members: [] }); // not logged: does not count
    s2.logged(13, "chat", "msg", { n: 13 });
    expect(events).toEqual(["msg 11", "authed", "msg 13"]);
    s2.logged(15, "chat", "msg", { n: 15 });
    s2.logged(16, "chat", "msg", { n: 16 }); // live
    expect(events).toEqual(["msg 11", "authed", "msg 13", "msg 15", "recovered 2", "msg 16"]);
    expect(client.position).toEqual({ epoch: "e1", off: 16 });
    expect(client.session).toMatchObject({ resumed: true, recovered: true, count: 2, last_seq: 0 });
  });

  it("emits recovered {count: 0} right after authed when nothing was missed", async () => {
    const { client, s, sockets } = await connected(10);
    const events: string[] = [];
    client.on("authed", () => events.push("authed"));
    client.on("recovered", ({ count }) => events.push(`recovered ${count}`));
    const s2 = await dropAndReopen({ sockets }, s);
    s2.authed(1, "alice", "sid-a", { epoch: "e1", off: 10, resumed: true, recovered: true, count: 0, last_seq: 0 });
    expect(events).toEqual(["authed", "recovered 0"]);
  });

  it("emits resync with the reason, and the position restarts from the new authed", async () => {
    const { client, s, sockets } = await connected(10);
    const resyncs: unknown[] = [];
    const recovered = vi.fn();
    client.on("resync", (r) => resyncs.push(r));
    client.on("recovered", recovered);
    const got: unknown[] = [];
    client.onMessage("chat", "msg", (d) => got.push(d));
    s.logged(40, "chat", "msg", { n: 40 });
    const s2 = await dropAndReopen({ sockets }, s);
    expect(s2.query().get("resume")).toBe("e1.40");
    // The room's log was deleted: a new epoch whose offsets start over.
    s2.authed(1, "alice", "sid-a", { epoch: "e2", off: 3, resumed: false, recovered: false, reason: "epoch", last_seq: 0 });
    expect(resyncs).toEqual([{ reason: "epoch" }]);
    expect(recovered).not.toHaveBeenCalled();
    expect(client.position).toEqual({ epoch: "e2", off: 3 });
    s2.logged(4, "chat", "msg", { n: 4 }); // below the old off, yet new: delivered
    expect(got).toEqual([{ n: 40 }, { n: 4 }]);
    expect(client.position).toEqual({ epoch: "e2", off: 4 });
    s2.drop(1006);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets[2]!.query().get("resume")).toBe("e2.4");
  });

  it("emits resync (reason unknown) when a resume gets an authed without a verdict, and stops resuming without a position", async () => {
    const { client, s, sockets } = await connected(10);
    const resyncs: unknown[] = [];
    client.on("resync", (r) => resyncs.push(r));
    const s2 = await dropAndReopen({ sockets }, s);
    s2.authed(); // no epoch, off, recovered
    expect(resyncs).toEqual([{ reason: "unknown" }]);
    expect(client.position).toBeNull();
    s2.drop(1006);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets[2]!.query().has("resume")).toBe(false);
  });

  it("emits neither event on a first connect", async () => {
    const { client, last } = setup();
    const seen = vi.fn();
    client.on("recovered", seen);
    client.on("resync", seen);
    await flush();
    last().open();
    last().authed(1, "alice", "sid-a", { epoch: "e1", off: 0, recovered: false, reason: "disabled" });
    expect(client.status).toBe("open");
    expect(seen).not.toHaveBeenCalled();
  });
});

describe("the SDK's own closes resume; close() ends the session", () => {
  it("resumes after a pong timeout, a connect timeout and reconnect() (all 4000: abnormal, SPEC section 10)", async () => {
    const { client, s, sockets } = await connected(10, { heartbeatMs: 1000, pongTimeoutMs: 4000, connectTimeoutMs: 3000 });
    await vi.advanceTimersByTimeAsync(4000); // the ping at open is never answered
    expect(s.closedWith).toEqual({ code: 4000, reason: "pong timeout" });
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    const s2 = sockets[1]!;
    expect([s2.query().get("sid"), s2.query().get("resume")]).toEqual(["sid-a", "e1.10"]);
    s2.open(); // and no authed
    await vi.advanceTimersByTimeAsync(3000);
    expect(s2.closedWith).toEqual({ code: 4000, reason: "connect timeout" });
    await vi.advanceTimersByTimeAsync(250);
    const s3 = sockets[2]!;
    expect([s3.query().get("sid"), s3.query().get("resume")]).toEqual(["sid-a", "e1.10"]);
    s3.open();
    s3.authed(1, "alice", "sid-a", { epoch: "e1", off: 12, resumed: true, recovered: true, count: 0, last_seq: 0 });
    client.reconnect();
    expect(s3.closedWith).toEqual({ code: 4000, reason: "reconnect" });
    await flush();
    expect([sockets[3]!.query().get("sid"), sockets[3]!.query().get("resume")]).toEqual(["sid-a", "e1.10"]);
  });

  it("closes with 1000 on close()", async () => {
    const { client, s } = await connected(10);
    client.close();
    expect(s.closedWith).toEqual({ code: 1000, reason: "client closed" });
  });
});

describe("a sid held by another user (SPEC section 2: 400 BAD_REQUEST, on a socket 4400)", () => {
  const taken = (s: FakeSocket) => {
    s.sys("error", { code: "BAD_REQUEST", msg: "sid is held by another user" });
    s.drop(4400, "BAD_REQUEST");
  };

  it("drops the sid and the position, connects as a new session, and reports resync sid_taken", async () => {
    const { client, s, sockets, closes } = await connected(10);
    const events: unknown[] = [];
    client.on("resync", (r) => events.push(r));
    client.on("recovered", (r) => events.push(r));
    const inFlight = client.send("chat", "send", { n: 1 }, { ack: true }).catch((e: unknown) => e);
    const s2 = await dropAndReopen({ sockets }, s); // away longer than window_s: another user took sid-a
    expect([s2.query().get("sid"), s2.query().get("resume")]).toEqual(["sid-a", "e1.10"]);
    const queued = client.send("chat", "send", { n: 2 }, { ack: true });
    taken(s2);
    expect(closes.at(-1)).toEqual({ code: 4400, reason: "BAD_REQUEST", willReconnect: true });
    expect(client.status).toBe("reconnecting");
    expect([client.sid, client.position]).toEqual([undefined, null]);
    // No (sid, seq) dedup holds across sessions: the message written to the old one is the app's to resend.
    expect(await inFlight).toMatchObject({ code: "DISCONNECTED", seq: 1 });
    await vi.advanceTimersByTimeAsync(250);
    const s3 = sockets[2]!;
    expect([s3.query().has("sid"), s3.query().has("resume")]).toEqual([false, false]);
    s3.open();
    s3.authed(4, "alice", "fresh", { epoch: "e1", off: 30, last_seq: 0 });
    expect(events).toEqual([{ reason: "sid_taken" }]);
    expect(s3.json()).toEqual([{ v: 1, svc: "chat", type: "send", flags: 4, seq: 2, data: { n: 2 } }]); // queued: sent
    s3.sys("ack", { seq: 2 });
    await expect(queued).resolves.toBeUndefined();
    expect([client.sid, client.position]).toEqual(["fresh", { epoch: "e1", off: 30 }]);
    s3.drop(1006); // the new session resumes as usual
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect([sockets[3]!.query().get("sid"), sockets[3]!.query().get("resume")]).toEqual(["fresh", "e1.30"]);
  });

  it("replaces a sid given as an option too (no resync on a first connect); other 4400 refusals stay final", async () => {
    const { client, sockets, last } = setup({ sid: "device-1", heartbeatMs: 0 });
    const resync = vi.fn();
    client.on("resync", resync);
    await flush();
    taken(last());
    await vi.advanceTimersByTimeAsync(250);
    expect(sockets[1]!.query().has("sid")).toBe(false);
    sockets[1]!.open();
    sockets[1]!.authed(1, "alice", "fresh");
    expect([client.sid, resync.mock.calls.length]).toEqual(["fresh", 0]);
    sockets[1]!.drop(1006);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets[2]!.query().get("sid")).toBe("fresh");
    sockets[2]!.open();
    sockets[2]!.sys("error", { code: "BAD_REQUEST", msg: "missing or malformed room" });
    sockets[2]!.drop(4400, "BAD_REQUEST");
    expect(client.status).toBe("closed");
    expect(client.sid).toBe("fresh");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(3);
  });
});
