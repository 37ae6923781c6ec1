/**
 * @wsprism/client, issue 10: it never hangs, says why it stopped, and stops when
 * it should. Connect timeout, `error` before open, terminal 44xx refusals,
 * maxRetries / shouldReconnect / reconnect(), online/offline, refresh() for any
 * ticket, send errors tied to their seq, maxFrameBytes and the debug log.
 * A scripted fake socket plays the gateway (test/client/fake.ts), with fake timers.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { WsPrismError, type ErrorInfo } from "../../client/src/index.ts";
import { FakeNetwork, fakeJwt, flush, setup } from "./fake.ts";

beforeEach(() => {
  vi.useFakeTimers({ now: new Date("2026-01-01T00:00:00Z") });
});
afterEach(() => {
  vi.useRealTimers();
});

/** With random() = 0.5 the first backoff is 125 ms (0.5 × 250). */
const FIRST_BACKOFF = 125;

describe("never hangs", () => {
  it("counts an error before open as a failed attempt (Node 22 fires no close event) and retries", async () => {
    const { client, sockets, closes } = setup();
    await flush();
    sockets[0]!.fail();
    expect(closes).toEqual([{ code: 1006, reason: "connection failed", willReconnect: true }]);
    expect(client.status).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets).toHaveLength(2);
    sockets[1]!.fail();
    await vi.advanceTimersByTimeAsync(250);
    expect(sockets).toHaveLength(3);
    expect(closes).toHaveLength(2);
  });

  it("survives a socket whose close() fires error again, synchronously (Node 22 does)", async () => {
    const { sockets, closes } = setup();
    await flush();
    const s = sockets[0]!;
    s.close = function (this: typeof s) {
      this.onerror?.({ type: "error" }); // undici: close() on a failed socket fails it again
    };
    s.onerror?.({ type: "error" });
    expect(closes).toEqual([{ code: 1006, reason: "connection failed", willReconnect: true }]);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets).toHaveLength(2);
  });

  it("reports one close when a browser fires error then close", async () => {
    const { sockets, closes } = setup();
    await flush();
    sockets[0]!.fail();
    sockets[0]!.drop(1006);
    expect(closes).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets).toHaveLength(2);
  });

  it("abandons an attempt that did not open within connectTimeoutMs", async () => {
    const { client, sockets, closes } = setup({ connectTimeoutMs: 3000 });
    await flush();
    await vi.advanceTimersByTimeAsync(2999);
    expect(closes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets[0]!.closedWith).toEqual({ code: 4000, reason: "connect timeout" });
    expect(closes).toEqual([{ code: 4000, reason: "connect timeout", willReconnect: true }]);
    expect(client.lastClose).toEqual(closes[0]);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets).toHaveLength(2);
    sockets[0]!.drop(1006); // the abandoned socket's late close changes nothing
    expect(closes).toHaveLength(1);
  });

  it("abandons an attempt that opened but got no authed within connectTimeoutMs", async () => {
    const { sockets, closes } = setup({ connectTimeoutMs: 3000 });
    await flush();
    sockets[0]!.open();
    await vi.advanceTimersByTimeAsync(3000);
    expect(closes).toEqual([{ code: 4000, reason: "connect timeout", willReconnect: true }]);
  });

  it("abandons a getTicket() that never settles after connectTimeoutMs, and asks again", async () => {
    const getTicket = vi.fn(() => (getTicket.mock.calls.length === 1 ? new Promise<string>(() => {}) : "t2"));
    const { client, sockets } = setup({ getTicket, connectTimeoutMs: 3000 });
    const errors: ErrorInfo[] = [];
    client.on("error", (e) => errors.push(e));
    await vi.advanceTimersByTimeAsync(3000);
    expect(errors).toEqual([{ code: "TICKET_FAILED", msg: "getTicket() timed out" }]);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(sockets).toHaveLength(1);
  });

  it("keeps a connection that got its authed in time", async () => {
    const { client, sockets, closes, connect } = setup({ connectTimeoutMs: 3000, heartbeatMs: 0 });
    await connect();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(closes).toEqual([]);
    expect(sockets).toHaveLength(1);
    expect(client.status).toBe("open");
  });
});

describe("stops when it should, and says why", () => {
  it.each([
    [4400, "BAD_REQUEST"],
    [4401, "AUTH_FAILED"],
    [4403, "NOT_ALLOWED"],
    [4409, "TOO_MANY_SESSIONS"],
  ])("stops at once on a refusal closed with %i (%s), with the code in close, lastClose and lastError", async (code, reason) => {
    const { client, sockets, getTicket, closes, statuses } = setup();
    const queued = client.send("chat", "send", {}, { ack: true }).catch((e: unknown) => e);
    await flush();
    const s = sockets[0]!;
    s.open();
    s.sys("error", { code: reason, msg: "refused" });
    s.drop(code, reason);
    expect(closes).toEqual([{ code, reason, willReconnect: false }]);
    expect(client.status).toBe("closed");
    expect(statuses).toEqual(["closed"]);
    expect(client.lastClose).toEqual({ code, reason, willReconnect: false });
    expect(client.lastError).toEqual({ code: reason, msg: "refused" });
    expect(await queued).toMatchObject({ code: "CLOSED" });
    await vi.advanceTimersByTimeAsync(120_000);
    expect(sockets).toHaveLength(1);
    expect(getTicket).toHaveBeenCalledTimes(1); // no call to the auth origin per attempt
  });

  it.each([1006, 1001, 1011, 1012, 1013, 4429, 4008, 4002, 1009])("keeps retrying after close %i", async (code) => {
    const { sockets, closes, connect } = setup();
    (await connect()).drop(code);
    expect(closes).toEqual([{ code, reason: "", willReconnect: true }]);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets).toHaveLength(2);
  });

  it("stops after maxRetries failed attempts in a row, and counts again after an authed", async () => {
    const { client, sockets, closes, connect } = setup({ maxRetries: 2, random: () => 0.999999 });
    await flush();
    sockets[0]!.drop(1006); // first attempt failed: retry 1
    await vi.advanceTimersByTimeAsync(250);
    sockets[1]!.drop(1006); // retry 1 failed: retry 2
    await vi.advanceTimersByTimeAsync(500);
    expect(sockets).toHaveLength(3);
    sockets[2]!.drop(1006); // retry 2 failed: that was the last
    expect(closes.map((c) => c.willReconnect)).toEqual([true, true, false]);
    expect(client.status).toBe("closed");
    await vi.advanceTimersByTimeAsync(120_000);
    expect(sockets).toHaveLength(3);

    client.connect(); // starts over with a fresh budget
    await connect();
    sockets[3]!.drop(1006);
    await vi.advanceTimersByTimeAsync(250);
    sockets[4]!.drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    expect(sockets).toHaveLength(6);
    expect(client.status).toBe("reconnecting");
  });

  it("asks shouldReconnect, which replaces the default rule", async () => {
    const asked: unknown[] = [];
    const { client, sockets, closes, connect } = setup({
      shouldReconnect: (c) => {
        asked.push(c);
        return c.code === 4401; // e.g. an app whose tickets come from a flaky auth service
      },
    });
    (await connect()).drop(4401, "AUTH_FAILED");
    expect(asked).toEqual([{ code: 4401, reason: "AUTH_FAILED" }]);
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    expect(sockets).toHaveLength(2);
    sockets[1]!.drop(1006);
    expect(closes.at(-1)).toEqual({ code: 1006, reason: "", willReconnect: false });
    expect(client.status).toBe("closed");
  });

  it("does not ask shouldReconnect after close()", async () => {
    const shouldReconnect = vi.fn(() => true);
    const { client, connect } = setup({ shouldReconnect });
    await connect();
    client.close();
    expect(shouldReconnect).not.toHaveBeenCalled();
  });
});

describe("reconnect()", () => {
  it("replaces an open connection at once, with a fresh ticket and the same sid", async () => {
    const { client, sockets, getTicket, closes, connect } = setup();
    const s = await connect();
    client.reconnect();
    expect(s.closedWith).toEqual({ code: 4000, reason: "reconnect" });
    expect(closes).toEqual([{ code: 4000, reason: "reconnect", willReconnect: true }]);
    await flush();
    expect(sockets).toHaveLength(2);
    expect(getTicket).toHaveBeenCalledTimes(2);
    expect(sockets[1]!.query().get("sid")).toBe("sid-a");
    s.drop(4004); // the old socket's late close changes nothing
    expect(closes).toHaveLength(1);
  });

  it("skips the backoff wait, and restarts after a terminal close or close()", async () => {
    const { client, sockets, connect } = setup({ backoff: { baseMs: 60_000, maxMs: 60_000 } });
    (await connect()).drop(1006);
    client.reconnect();
    await flush();
    expect(sockets).toHaveLength(2);
    await connect();
    sockets[1]!.drop(4401, "AUTH_FAILED");
    expect(client.status).toBe("closed");
    client.reconnect();
    await connect();
    expect(client.status).toBe("open");
    client.close();
    client.reconnect();
    await connect();
    expect(sockets).toHaveLength(4);
    expect(client.status).toBe("open");
  });
});

describe("online / offline", () => {
  it("does not try while offline, and tries at once when back online", async () => {
    const network = new FakeNetwork();
    network.onLine = false;
    const { client, sockets, connect } = setup({ network });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(0);
    expect(client.status).toBe("connecting");
    network.set(true);
    await connect();
    expect(client.status).toBe("open");
  });

  it("pauses retries while offline and skips the backoff on online", async () => {
    const network = new FakeNetwork();
    const { sockets, connect } = setup({ network, backoff: { baseMs: 10_000, maxMs: 10_000 } });
    const s = await connect();
    network.set(false);
    s.drop(1006);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(sockets).toHaveLength(1);
    network.set(true);
    await flush();
    expect(sockets).toHaveLength(2);
  });

  it("retries at once on online during a backoff wait, and leaves an open connection alone", async () => {
    const network = new FakeNetwork();
    const { client, sockets, connect } = setup({ network, backoff: { baseMs: 60_000, maxMs: 60_000 } });
    const s = await connect();
    network.set(false); // an open socket may still work (loopback, LAN): the heartbeat decides
    network.set(true);
    expect(s.closedWith).toBeNull();
    s.drop(1006);
    network.set(true);
    await flush();
    expect(sockets).toHaveLength(2);
    await connect();
    expect(client.status).toBe("open");
  });

  it("pings an open connection on a network change, so a dead one is found within pongTimeoutMs", async () => {
    const network = new FakeNetwork();
    const { client, sockets, closes, connect } = setup({ network, heartbeatMs: 60_000, pongTimeoutMs: 1_000 });
    const s = await connect();
    s.recv("pong"); // answers the ping at open
    network.set(false);
    expect(s.pings()).toBe(2);
    await vi.advanceTimersByTimeAsync(1_000); // no pong: the socket was dead
    expect(closes).toEqual([{ code: 4000, reason: "pong timeout", willReconnect: true }]);
    expect(sockets).toHaveLength(1); // offline: no attempt
    network.set(true);
    await connect();
    expect(client.status).toBe("open");
  });

  it("removes its listeners on close()", async () => {
    const network = new FakeNetwork();
    const { client, connect } = setup({ network });
    await connect();
    expect(network.count()).toBe(2);
    client.close();
    expect(network.count()).toBe(0);
  });
});

describe("refresh()", () => {
  it("refreshes an opaque ticket on demand: getTicket, sys:refresh with ack, resolves on the ack", async () => {
    const { client, getTicket, connect } = setup({ heartbeatMs: 0 });
    const s = await connect();
    const done = client.refresh();
    await flush();
    expect(getTicket).toHaveBeenCalledTimes(2);
    const msg = s.json().at(-1);
    expect(msg).toEqual({ v: 1, svc: "sys", type: "refresh", flags: 4, seq: 1, data: { ticket: "t2" } });
    s.sys("ack", { seq: 1 });
    await expect(done).resolves.toBeUndefined();
  });

  it("rejects with the gateway's code, REFRESH_FAILED, or DISCONNECTED", async () => {
    let fail = false;
    const { client, connect } = setup({
      heartbeatMs: 0,
      getTicket: () => {
        if (fail) throw new Error("auth down");
        return "t";
      },
    });
    await expect(client.refresh()).rejects.toMatchObject({ code: "DISCONNECTED" });
    const s = await connect();
    const refused = client.refresh();
    await flush();
    s.sys("error", { code: "AUTH_FAILED", msg: "ticket for another user", seq: 1 });
    await expect(refused).rejects.toMatchObject({ code: "AUTH_FAILED", seq: 1 });
    fail = true;
    await expect(client.refresh()).rejects.toMatchObject({ code: "REFRESH_FAILED" });
    client.close();
    await expect(client.refresh()).rejects.toBeInstanceOf(WsPrismError);
  });

  it("refreshes an opaque ticket automatically when getTicket() gives its exp", async () => {
    const now = () => Math.floor(Date.now() / 1000);
    let n = 0;
    const getTicket = vi.fn(() => ({ ticket: `opaque-${++n}`, exp: now() + 120 }));
    const { connect } = setup({ getTicket, heartbeatMs: 0, refreshBeforeExpMs: 30_000 });
    const s = await connect();
    expect(s.protocols).toEqual(["wsprism.v1", "ticket.opaque-1"]);
    await vi.advanceTimersByTimeAsync(89_999);
    expect(s.json()).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.json().at(-1)).toMatchObject({ type: "refresh", data: { ticket: "opaque-2" } });
  });

  it("still refreshes a JWT automatically", async () => {
    const getTicket = vi.fn(() => fakeJwt({ sub: "a", exp: Math.floor(Date.now() / 1000) + 60 }));
    const { connect } = setup({ getTicket, heartbeatMs: 0, refreshBeforeExpMs: 30_000 });
    const s = await connect();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(s.json().at(-1)).toMatchObject({ type: "refresh" });
  });
});

describe("send errors tied to their message", () => {
  it("rejects the matching send with RATE_LIMITED, and only that one", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const a = client.send("chat", "send", { n: 1 }, { ack: true });
    const b = client.send("chat", "send", { n: 2 }, { ack: true });
    s.sys("error", { code: "RATE_LIMITED", msg: "rate limit exceeded", seq: 2 });
    await expect(b).rejects.toMatchObject({ code: "RATE_LIMITED", seq: 2 });
    s.sys("ack", { seq: 1 });
    await expect(a).resolves.toBeUndefined();
  });

  it("rejects the matching send with PAYLOAD_TOO_LARGE before the 1009 close rejects the others", async () => {
    const { client, connect } = setup();
    const s = await connect();
    const big = client.send("chat", "send", { n: 1 }, { ack: true }).catch((e: unknown) => e);
    const other = client.send("chat", "send", { n: 2 }, { ack: true }).catch((e: unknown) => e);
    s.sys("error", { code: "PAYLOAD_TOO_LARGE", msg: "frame over 1024 bytes", seq: 1 });
    s.drop(1009, "frame too large");
    expect(await big).toMatchObject({ code: "PAYLOAD_TOO_LARGE", seq: 1 });
    expect(await other).toMatchObject({ code: "DISCONNECTED", seq: 2 });
  });

  it("refuses locally a send over maxFrameBytes (UTF-8 bytes), without sending or spending a seq", async () => {
    const { client, connect } = setup({ maxFrameBytes: 100 });
    const s = await connect();
    const overhead = '{"v":1,"svc":"chat","type":"send","seq":1,"data":""}'.length;
    let err: unknown;
    try {
      void client.send("chat", "send", "é".repeat(Math.ceil((101 - overhead) / 2)));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WsPrismError);
    expect(err).toMatchObject({ code: "PAYLOAD_TOO_LARGE" });
    expect(s.json()).toEqual([]);
    void client.send("chat", "send", "x".repeat(100 - overhead)); // exactly 100 bytes
    expect(s.json()).toEqual([{ v: 1, svc: "chat", type: "send", seq: 1, data: "x".repeat(100 - overhead) }]);
  });

  it("writes seq before data, so the gateway finds it in the first KiB of a large frame", async () => {
    const { client, connect } = setup();
    const s = await connect();
    void client.send("chat", "send", { blob: "x".repeat(100_000) }, { ack: true });
    const text = s.sent.at(-1) as string;
    expect(text.indexOf('"seq":1')).toBeGreaterThan(0);
    expect(text.indexOf('"seq":1')).toBeLessThan(text.indexOf('"data"'));
    expect(text.indexOf('"seq":1')).toBeLessThan(1024);
  });
});

describe("debug", () => {
  it("logs state transitions and closes through the given function, never the ticket", async () => {
    const lines: string[] = [];
    const jwt = fakeJwt({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 3600 });
    const tickets = ["dev:secret-ticket-1", jwt];
    const { sockets, connect } = setup({
      getTicket: () => tickets.shift() ?? "dev:secret-ticket-2",
      debug: (...args: unknown[]) => lines.push(args.map(String).join(" ")),
    });
    await connect();
    sockets[0]!.drop(1006, "gone");
    await vi.advanceTimersByTimeAsync(FIRST_BACKOFF);
    await connect();
    const log = lines.join("\n");
    expect(log).toMatch(/open/);
    expect(log).toMatch(/1006/);
    expect(log).toMatch(/reconnecting/);
    expect(log).not.toMatch(/secret-ticket/);
    expect(log).not.toContain(jwt);
    expect(log).not.toContain(jwt.split(".")[1]);
  });

  it("logs to console.debug with debug: true, and stays quiet by default", async () => {
    const spy = vi.spyOn(console, "debug").mockImplementation(() => {});
    const quiet = setup();
    await quiet.connect();
    expect(spy).not.toHaveBeenCalled();
    const loud = setup({ debug: true });
    await loud.connect();
    expect(spy).toHaveBeenCalled();
    expect(String(spy.mock.calls[0]![0])).toContain("[wsprism]");
    spy.mockRestore();
  });
});
