/**
 * End to end, as separate processes, SPEC section 10 across a gateway restart:
 * `wrangler dev --persist-to <tmpdir>` (the gateway, demo policy: recovery on)
 * and the example origin (examples/origin/server.ts: a `chat:send` comes back as
 * a room-wide `chat:msg` broadcast, plus a `chat:delivered` reply to the sender
 * only; an `open` is broadcast as a `chat:system` line).
 *
 * alice (explicit sid) and bob chat in a room; the gateway is killed and started
 * again on the same port and the same --persist-to; bob comes back and sends
 * while alice is away; alice resumes with `resume=<epoch>.<off>` and must get
 * exactly the frames addressed to her that she missed, then live frames, with
 * the same epoch as before the restart.
 *
 * The demo tenant's chat posts to 127.0.0.1:8788 (policies/default.yaml), so the
 * origin takes that port: stop `npm start` before running the tests.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, killGroup, portFree, stopGroup, waitHealthy, type Proc } from "../../bench/lib/proc.ts";
import { ORIGIN_PORT, startGateway, startOrigin } from "./lib/demo-stack.ts";

/** Messages bob sends while alice is away. */
const N = 10;

type Frame = { v?: number; svc: string; type: string; data?: any; off?: number; [k: string]: unknown };

/** A WebSocket and every text frame it received, in order. */
class Client {
  readonly inbox: Frame[] = [];
  readonly closed: Promise<number>;
  readonly ws: WebSocket;
  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.onmessage = (ev) => typeof ev.data === "string" && this.inbox.push(JSON.parse(ev.data));
    this.closed = new Promise((resolve) => ws.addEventListener("close", (ev) => resolve(ev.code)));
  }

  static async open(url: string): Promise<Client> {
    const c = new Client(new WebSocket(url));
    await new Promise((resolve, reject) => ((c.ws.onopen = resolve), (c.ws.onerror = reject)));
    await c.waitFor(isAuthed, 1, 10_000);
    return c;
  }

  get authed(): Frame {
    return this.inbox.find(isAuthed)!;
  }

  /** The highest `off` among the frames received: the position to resume from. */
  get head(): number {
    return Math.max(this.authed.data.off, ...this.inbox.map((f) => f.off ?? 0));
  }

  async waitFor(pred: (m: Frame) => boolean, n: number, timeoutMs: number): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.filter(pred).length < n) {
      if (Date.now() > deadline) throw new Error(`timed out; inbox: ${JSON.stringify(this.inbox.slice(-12))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.inbox.filter(pred);
  }

  /** A chat message with ACK_REQUESTED (flags 4): the origin broadcasts it as `chat:msg`. */
  say(seq: number, msg: string): void {
    this.ws.send(JSON.stringify({ v: 1, svc: "chat", type: "send", flags: 4, seq, data: { msg } }));
  }
}

const isAuthed = (m: Frame) => m.svc === "sys" && m.type === "authed";
const isAck = (m: Frame) => m.svc === "sys" && m.type === "ack";
const chatMsg = (text: string) => (m: Frame) => m.svc === "chat" && m.type === "msg" && m.data?.msg === text;
/** Frames the origin sends to the whole room (no `exclude` in examples/origin/chat.ts). */
const roomWide = (m: Frame) => m.svc === "chat" && (m.type === "msg" || m.type === "system");
const offs = (frames: Frame[]) => frames.map((f) => f.off!);
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("end to end: resume with recovery across a gateway restart", () => {
  let gateway: Proc | undefined;
  let origin: Proc | undefined;
  let port = 0;
  let base = "";
  let persistTo = "";
  const open: Client[] = [];
  const connect = async (query: string) => {
    const c = await Client.open(`ws://${base}/v1/ws?tenant=demo&${query}`);
    open.push(c);
    return c;
  };

  beforeAll(async () => {
    if (!(await portFree(ORIGIN_PORT))) throw new Error(`port ${ORIGIN_PORT} is busy (is npm start running?)`);
    port = await freePort();
    base = `127.0.0.1:${port}`;
    persistTo = mkdtempSync(join(tmpdir(), "wsprism-re2e-"));
    gateway = await startGateway(port, persistTo);
    origin = startOrigin();
    await waitHealthy(`http://${base}/healthz`, gateway, 90_000);
    await waitHealthy(`http://127.0.0.1:${ORIGIN_PORT}/healthz`, origin, 20_000);
  }, 120_000);

  afterAll(async () => {
    for (const c of open) c.ws.close();
    await stopGroup(origin);
    await stopGroup(gateway);
  });

  it("after a restart, alice resumes with the same epoch and gets exactly what she missed, then live frames", async () => {
    const room = `re2e-${Date.now().toString(36)}`;
    const aliceSid = `alice-${Date.now().toString(36)}`;

    // 1. alice (explicit sid) and bob in one room; bob says something before the restart.
    const alice = await connect(`room=${room}&sid=${aliceSid}&ticket=dev:alice`);
    const epoch = alice.authed.data.epoch as string;
    expect(alice.authed.data).toMatchObject({ sid: aliceSid, epoch: expect.any(String), off: expect.any(Number), last_seq: 0 });
    const bob = await connect(`room=${room}&ticket=dev:bob`);
    expect(bob.authed.data.epoch).toBe(epoch);
    bob.say(1, "before the restart");
    await alice.waitFor(chatMsg("before the restart"), 1, 15_000);
    await bob.waitFor(isAck, 1, 15_000);
    await bob.waitFor((m) => m.svc === "chat" && m.type === "delivered", 1, 15_000);
    await settle(1_000); // the open webhooks' chat:system lines too
    // Both saw the room's log up to the same head (alice's is her position, bob's includes his private frames).
    const aliceOff = alice.head;
    expect(aliceOff).toBeGreaterThan(alice.authed.data.off);
    expect(Math.max(...offs(bob.inbox.filter(roomWide)))).toBe(aliceOff);
    const headBefore = bob.head;

    // 2. The gateway dies (no close frames) and comes back on the same port and storage.
    await killGroup(gateway);
    expect(await alice.closed).not.toBe(1000);
    expect(await bob.closed).not.toBe(1000);
    const deadline = Date.now() + 15_000;
    while (!(await portFree(port))) {
      if (Date.now() > deadline) throw new Error(`port ${port} still busy after the gateway was killed`);
      await settle(200);
    }
    gateway = await startGateway(port, persistTo);
    await waitHealthy(`http://${base}/healthz`, gateway, 90_000);

    const bob2 = await connect(`room=${room}&ticket=dev:bob`);
    // The epoch survived the restart and nothing was logged while the room was down.
    expect(bob2.authed.data).toMatchObject({ epoch, off: headBefore });
    for (let i = 1; i <= N; i++) bob2.say(i, `missed ${i}`);
    await bob2.waitFor(isAck, N, 30_000);
    for (let i = 1; i <= N; i++) await bob2.waitFor(chatMsg(`missed ${i}`), 1, 15_000);
    await settle(1_000);
    // What alice missed: every room-wide frame logged after her position (bob sees them all).
    const missed = bob2.inbox.filter((m) => roomWide(m) && m.off! > aliceOff);
    expect(missed.length).toBeGreaterThanOrEqual(N);
    const headAway = bob2.head; // alice's own open is logged (chat:system) as soon as she is back

    // 3. alice resumes with the same sid.
    const alice2 = await connect(`room=${room}&sid=${aliceSid}&ticket=dev:alice&resume=${epoch}.${aliceOff}`);
    const a = alice2.authed.data;
    expect(a, JSON.stringify(alice2.inbox.slice(0, 4))).toMatchObject({ sid: aliceSid, epoch, recovered: true, count: missed.length });
    expect(a.off).toBe(headAway);
    // The replayed frames come right after authed, in off order, each once: bob's room-wide frames exactly.
    const iAuthed = alice2.inbox.findIndex(isAuthed);
    const replayed = alice2.inbox.slice(iAuthed + 1, iAuthed + 1 + a.count);
    expect(replayed.map((f) => JSON.stringify(f))).toEqual(missed.map((f) => JSON.stringify(f)));
    expect(replayed.filter((f) => f.svc === "chat" && f.type === "msg").map((f) => f.data.msg)).toEqual(
      Array.from({ length: N }, (_, i) => `missed ${i + 1}`),
    );
    // Never bob's private frames (his acks and chat:delivered replies).
    expect(replayed.every(roomWide)).toBe(true);

    // A new message arrives live, once, with the offset bob sees for it; no frame with an off is duplicated.
    bob2.say(N + 1, "live again");
    const [live] = await alice2.waitFor(chatMsg("live again"), 1, 15_000);
    const [liveAtBob] = await bob2.waitFor(chatMsg("live again"), 1, 15_000);
    await settle(1_000);
    expect(live!.off).toBe(liveAtBob!.off);
    expect(live!.off).toBeGreaterThan(a.off);
    const aliceOffs = offs(alice2.inbox.filter((f) => f.off !== undefined));
    expect(new Set(aliceOffs).size).toBe(aliceOffs.length);
    expect(aliceOffs).toEqual([...aliceOffs].sort((x, y) => x - y));
    // No gap, no overlap: alice's frames after her position are bob's room-wide frames after it, in the same order.
    const bobRoomWide = bob2.inbox.filter((m) => roomWide(m) && m.off! > aliceOff);
    expect(aliceOffs).toEqual(offs(bobRoomWide));
  }, 240_000);

  it("a resume with a wrong epoch is refused (recovered false, reason epoch) and replays nothing", async () => {
    const room = `re2e-epoch-${Date.now().toString(36)}`;
    const sid = `alice-e-${Date.now().toString(36)}`;
    const alice = await connect(`room=${room}&sid=${sid}&ticket=dev:alice`);
    const bob = await connect(`room=${room}&ticket=dev:bob`);
    for (let i = 1; i <= 3; i++) bob.say(i, `while alice is away ${i}`);
    await alice.waitFor(chatMsg("while alice is away 3"), 1, 15_000);
    const epoch = alice.authed.data.epoch as string;
    alice.ws.close(1000, "away");
    await alice.closed;
    await settle(500);

    const wrong = `x${epoch}`;
    const back = await connect(`room=${room}&sid=${sid}&ticket=dev:alice&resume=${wrong}.1`);
    expect(back.authed.data).toMatchObject({ epoch, recovered: false, reason: "epoch" });
    expect(back.authed.data.count).toBeUndefined();
    bob.say(4, "after the refusal");
    await back.waitFor(chatMsg("after the refusal"), 1, 15_000);
    await settle(500);
    // Only live frames: each after the head authed reported.
    const withOff = back.inbox.filter((f) => f.off !== undefined);
    expect(withOff.length).toBeGreaterThan(0);
    expect(withOff.every((f) => f.off! > back.authed.data.off)).toBe(true);
  }, 60_000);
});
