/**
 * SPEC v1.2 section 10, "Sessions, not sid strings", "Answers across resumes",
 * "Presence across ghosts" and "Bounds": each test here failed on the code
 * before issue 18 (the reproduction named in its title). Tenant `rec`
 * (recovery on, grace_s 1, max_messages 20; `chat` logged, `hooks` an origin
 * service) and `rec-caps` (max_users_per_room 2, window_s 2, 1 msg/s with a burst of 3).
 * A client close with 4000 is abnormal (the SDK's pong and connect timeouts):
 * it leaves a ghost; 1000 ends the session.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { script, waitForLog } from "../helpers/origin.ts";
import { resetRoom } from "../helpers/room.ts";
import { connect, uniqueRoom, upgrade, wsUrl, type TestClient } from "../helpers/ws.ts";

const join = (user: string, room: string, extra: Record<string, string> = {}, tenant = "rec") =>
  connect({ tenant, room, ticket: `dev:${user}`, ...extra });
const stubFor = (room: string, tenant = "rec") => env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`));
const chat = (n: number, seq?: number) => ({ v: 1, svc: "chat", type: "say", data: { n }, ...(seq === undefined ? {} : { seq, flags: 4 }) });
const position = (c: TestClient) => `${c.authed.data.epoch}.${c.authed.data.off}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const drop = async (c: TestClient) => {
  c.close(4000);
  await c.closed();
};
const presenceOf = (c: TestClient) =>
  c.texts.map((t) => JSON.parse(t)).filter((j) => j.svc === "sys" && j.type === "presence" && j.data?.event !== "sync").map((j) => `${j.data.event}:${j.data.sid}`);
const textsOf = (c: TestClient, pred: (j: any) => boolean) => c.texts.map((t) => JSON.parse(t)).filter(pred);
/** The sids of a member's presence sync (sent right after authed). */
async function synced(c: TestClient): Promise<string[]> {
  for (let i = 0; i < 100 && c.syncs.length === 0; i++) await sleep(10);
  return c.syncs[0]!.data.members.map((m: { sid: string }) => m.sid).sort();
}

describe("answers across resumes (item 1)", () => {
  it("a message sent after a resume gets its ack, and a rejected one its error, on the resumed connection", async () => {
    const room = uniqueRoom();
    await script(room, [{ status: 200 }, { rejectMessages: { code: "SPAM", msg: "no" } }], { status: 200 }, "/hooks/rec");
    const alice = await join("alice", room, { sid: "ans-1" });
    await drop(alice);
    const back = await join("alice", room, { sid: "ans-1", resume: position(alice) });
    expect(back.authed.data).toMatchObject({ resumed: true, recovered: true });
    back.send({ v: 1, svc: "hooks", type: "ask", seq: 1, flags: 4, data: {} });
    expect((await back.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
    back.send({ v: 1, svc: "hooks", type: "ask", seq: 2, flags: 4, data: {} });
    const err = await back.nextOf("sys", "error");
    expect(err.data).toMatchObject({ code: "SPAM", seq: 2 });
    await waitForLog(room, (l) => l.length === 2);
  });
});

describe("no accepted event is lost when the instance is replaced (found by the sessions model)", () => {
  it("an acked message in flight when the instance dies: last_seq does not claim it, so its resend is forwarded and acked", async () => {
    const room = uniqueRoom();
    await script(room, [{ status: 200, delayMs: 400 }], { status: 200 }, "/hooks/rec");
    const alice = await join("alice", room, { sid: "lost-1" });
    alice.send({ v: 1, svc: "hooks", type: "ask", seq: 1, flags: 4, data: {} });
    await waitForLog(room, (l) => l.length === 1); // the POST is in flight
    await resetRoom(stubFor(room));
    await alice.closed();
    const back = await join("alice", room, { sid: "lost-1", resume: position(alice) });
    expect(back.authed.data.last_seq).toBe(0);
    back.send({ v: 1, svc: "hooks", type: "ask", seq: 1, flags: 4, data: {} }); // the SDK resends what was not acked
    expect((await back.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
  });
});

describe("sessions, not sid strings (items 2, 4, 5)", () => {
  it("a later holder of a sid resuming from <epoch>.0 replays none of the earlier session's private frames", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "shared-1" });
    alice.send(chat(1, 1)); // acked to alice: logged for her session
    await alice.nextOf("sys", "ack");
    await runInDurableObject(stubFor(room), (o: RoomObject) => o.apiMessage(room, { svc: "chat", type: "private", data: "for alice", to: { sid: "shared-1" } }));
    await alice.nextOf("chat", "private");
    alice.close(1000); // a deliberate leave: the session ends, the sid is free
    await alice.closed();
    await sleep(100);
    const mallory = await join("mallory", room, { sid: "shared-1" });
    await drop(mallory);
    const back = await join("mallory", room, { sid: "shared-1", resume: `${mallory.authed.data.epoch}.0` });
    expect(back.authed.data).toMatchObject({ recovered: true, count: 0 });
    await sleep(150);
    expect(textsOf(back, (j) => j.svc === "chat" || j.type === "ack")).toEqual([]);
  });

  it("a kicked session cannot resume: too_old, and nothing said after the kick is replayed", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "kick-1" });
    const bob = await join("bob", room);
    await runInDurableObject(stubFor(room), (o: RoomObject) => o.apiKick({ sid: "kick-1" }, "bye"));
    expect((await alice.closed()).code).toBe(4003);
    bob.send(chat(1));
    await sleep(100);
    const back = await join("alice", room, { sid: "kick-1", resume: position(alice) });
    expect(back.authed.data).toMatchObject({ resumed: false, recovered: false, reason: "too_old" });
    await sleep(150);
    expect(textsOf(back, (j) => j.svc === "chat")).toEqual([]);
  });

  it("a connection that names a sid without resume starts a new session: its seq 1 is forwarded and acked", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "new-1" });
    const carol = await join("carol", room);
    alice.send(chat(1, 1));
    alice.send(chat(2, 2));
    await alice.nextOf("sys", "ack");
    await alice.nextOf("sys", "ack");
    await drop(alice);
    const again = await join("alice", room, { sid: "new-1" }); // a new SDK instance: seq starts at 1
    expect(again.authed.data.last_seq).toBe(0);
    again.send(chat(3, 1));
    expect((await again.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
    expect((await carol.next((e) => e.svc === "chat" && e.data.n === 3)).data).toEqual({ n: 3 });
  });
});

describe("room:join answers with the room's position (SPEC section 10: every authed and joined carries it)", () => {
  it("sys.joined names the room, its epoch and its head", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room);
    const bob = await join("bob", room);
    bob.send(chat(1));
    await alice.nextOf("chat", "say");
    alice.send({ v: 1, svc: "room", type: "join", room });
    expect((await alice.nextOf("sys", "joined")).data).toEqual({ room, epoch: alice.authed.data.epoch, off: 1 });
  });
});

describe("sids cannot be squatted (item 3)", () => {
  it("a ghost keeps its sid in the tenant's directory across the room's renewals: another user gets 400", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "squat-1" });
    await join("bob", room);
    await drop(alice);
    // The room's housekeeping renews its sockets' leases; the ghost's must survive it.
    await runInDurableObject(stubFor(room), (o: RoomObject) => o.renew([...o.members.all().values()]));
    const res = await upgrade(wsUrl({ tenant: "rec", room, ticket: "dev:mallory", sid: "squat-1" }));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "BAD_REQUEST" });
    const back = await join("alice", room, { sid: "squat-1", resume: position(alice) });
    expect(back.authed.data).toMatchObject({ resumed: true, recovered: true });
  });
});

describe("presence across ghosts (items 6, 7)", () => {
  it("a 4000 close is a drop: no leave; a member who joins meanwhile sees the ghost listed and no flap when it returns", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "pg-a" });
    const bob = await join("bob", room, { sid: "pg-b" });
    await drop(alice);
    const carol = await join("carol", room, { sid: "pg-c" });
    expect(await synced(carol)).toEqual(["pg-a", "pg-b"]);
    const back = await join("alice", room, { sid: "pg-a", resume: position(alice) });
    expect(back.authed.data).toMatchObject({ resumed: true });
    expect(await synced(back)).toEqual(["pg-b", "pg-c"]);
    await sleep(1300); // past grace_s
    expect(presenceOf(bob)).toEqual(["join:pg-c"]);
    expect(presenceOf(carol)).toEqual([]);
    const api = await runInDurableObject(stubFor(room), (o: RoomObject) => o.apiPresence());
    expect(api.members.map((m) => m.sid).sort()).toEqual(["pg-a", "pg-b", "pg-c"]);
  });

  it("after the instance is replaced, the first member back sees the others listed (they are ghosts) until their grace ends", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "rs-a" });
    await join("bob", room, { sid: "rs-b" });
    await resetRoom(stubFor(room));
    await alice.closed();
    const back = await join("alice", room, { sid: "rs-a", resume: position(alice) });
    expect(await synced(back)).toEqual(["rs-b"]);
    await back.next((e) => e.type === "presence" && e.data.event === "leave" && e.data.sid === "rs-b", 3000);
  });
});

describe("bounds: slots, places and the rate limit belong to sessions (items 9, 10)", () => {
  it("deliberate leaves reserve no slot: eight join/close cycles later a newcomer gets slot 2", async () => {
    const room = uniqueRoom();
    await join("host", room);
    for (let i = 0; i < 8; i++) {
      const c = await join(`u${i}`, room, { sid: `cyc-${i}` });
      c.close(1000);
      await c.closed();
    }
    await sleep(50);
    expect((await join("late", room)).authed.data.slot).toBe(2);
  });

  it("a ghost keeps its place in a full room: a newcomer gets 503, the ghost's resume gets in", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "cap-a" }, "rec-caps");
    await join("bob", room, {}, "rec-caps");
    await drop(alice);
    const res = await upgrade(wsUrl({ tenant: "rec-caps", room, ticket: "dev:carol" }));
    expect(res.status).toBe(503);
    const back = await join("alice", room, { sid: "cap-a", resume: position(alice) }, "rec-caps");
    expect(back.authed.data).toMatchObject({ resumed: true });
  });

  it("a ghost's slot and place are freed once window_s (2 s here) is over", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "win-a" }, "rec-caps");
    expect(alice.authed.data.slot).toBe(1);
    await join("bob", room, {}, "rec-caps");
    await drop(alice);
    expect((await upgrade(wsUrl({ tenant: "rec-caps", room, ticket: "dev:carol" }))).status).toBe(503); // alice's place is kept
    await sleep(2100);
    const carol = await join("carol", room, {}, "rec-caps");
    expect(carol.authed.data.slot).toBe(1);
    const late = await join("alice", room, { sid: "win-a", resume: position(alice) }, "rec-caps").catch((e: Error) => e);
    expect(String(late)).toContain("503"); // the room is full again, and alice's session is gone
  });

  for (const how of ["resume", "reconnect"] as const) {
    it(`the rate-limit bucket continues across a ${how}`, async () => {
      const room = uniqueRoom();
      const alice = await join("alice", room, { sid: `rl-${how}` }, "rec-caps");
      for (let n = 1; n <= 3; n++) alice.send(chat(n));
      alice.send(chat(4));
      expect((await alice.nextOf("sys", "error")).data.code).toBe("RATE_LIMITED");
      if (how === "resume") await drop(alice);
      else (alice.close(1000), await alice.closed());
      const back = await join("alice", room, { sid: `rl-${how}`, ...(how === "resume" ? { resume: position(alice) } : {}) }, "rec-caps");
      back.send(chat(5));
      expect((await back.nextOf("sys", "error")).data.code).toBe("RATE_LIMITED");
    });
  }
});
