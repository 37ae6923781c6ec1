/**
 * SPEC section 10: resume with missed-message recovery. Tenant `rec` (recovery
 * on, max_messages 20): `chat` is a broadcast service (logged), `quiet` a
 * broadcast service with `recovery: false`, `hooks` an origin service (logged).
 */
import { describe, expect, it } from "vitest";
import { originLog, script, waitForLog } from "../helpers/origin.ts";
import { connect, uniqueRoom, upgrade, wsUrl, type TestClient } from "../helpers/ws.ts";

const join = (user: string, room: string, extra: Record<string, string> = {}) =>
  connect({ tenant: "rec", room, ticket: `dev:${user}`, ...extra });
const chat = (n: number, seq?: number) => ({ v: 1, svc: "chat", type: "say", data: { n }, ...(seq === undefined ? {} : { seq, flags: 4 }) });
const position = (c: TestClient) => `${c.authed.data.epoch}.${c.authed.data.off}`;
/** Texts of the received ext frames of `svc` (what a member saw, byte for byte). */
const texts = (c: TestClient, svc: string) => c.texts.filter((t) => JSON.parse(t).svc === svc);

describe("resume with missed-message recovery", () => {
  it("a blip with 20 missed messages: replayed byte for byte as an always-connected member got them, then live with no gap", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-1" });
    const bob = await join("bob", room);
    const carol = await join("carol", room);
    expect(alice.authed.data).toMatchObject({ epoch: expect.any(String), off: 0, last_seq: 0 });
    const resumeAt = position(alice);
    alice.close(4000); // a drop (the SDK's timeout code): the session stays
    await alice.closed();
    for (let i = 1; i <= 20; i++) bob.send(chat(i));
    for (let i = 1; i <= 20; i++) await carol.nextOf("chat", "say");
    const back = await join("alice", room, { sid: "alice-1", resume: resumeAt });
    expect(back.authed.data).toMatchObject({ recovered: true, count: 20, off: 20 });
    for (let i = 0; i < 20; i++) await back.nextOf("chat", "say");
    const replayed = texts(back, "chat");
    expect(replayed).toEqual(texts(carol, "chat"));
    expect(replayed.map((t) => JSON.parse(t).off)).toEqual([...Array(20).keys()].map((i) => i + 1));
    bob.send(chat(21));
    expect((await back.nextOf("chat", "say")).off).toBe(21);
    expect((await back.quiet(100)).filter((m) => m.kind === "text" && m.json.svc === "chat")).toEqual([]);
  });

  it("wrong epoch, too many, unknown session: recovered false with the reason, nothing replayed, live continues", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-2" });
    const bob = await join("bob", room);
    const at = position(alice);
    alice.close(4000); // a drop (the SDK's timeout code): the session stays
    await alice.closed();
    for (let i = 1; i <= 21; i++) bob.send(chat(i)); // one over max_messages
    await new Promise((r) => setTimeout(r, 100));
    const wrong = await join("alice", room, { sid: "alice-2", resume: `x${at}` });
    expect(wrong.authed.data).toMatchObject({ recovered: false, reason: "epoch" });
    wrong.close(4000);
    await wrong.closed();
    const many = await join("alice", room, { sid: "alice-2", resume: at });
    expect(many.authed.data).toMatchObject({ recovered: false, reason: "too_many", off: 21 });
    expect((await many.quiet(100)).filter((m) => m.kind === "text" && m.json.svc === "chat")).toEqual([]);
    bob.send(chat(22));
    expect((await many.nextOf("chat", "say")).off).toBe(22);
    const stranger = await join("dave", room, { sid: "dave-1", resume: at });
    expect(stranger.authed.data).toMatchObject({ recovered: false, reason: "too_old" });
  });

  it("private frames stay private: a session gets what was addressed to it, never its own relays nor others' acks", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-3" });
    const bob = await join("bob", room, { sid: "bob-3" });
    const at = position(bob);
    bob.close(4000); // a drop (the SDK's timeout code): the session stays
    await bob.closed();
    alice.send(chat(1, 7)); // relayed to bob (logged for the room minus alice), acked to alice (logged for alice)
    await alice.nextOf("sys", "ack");
    alice.send({ v: 1, svc: "quiet", type: "say", data: {} }); // recovery: false: not logged
    const back = await join("bob", room, { sid: "bob-3", resume: at });
    expect(back.authed.data).toMatchObject({ recovered: true, count: 1 });
    expect((await back.nextOf("chat", "say")).data).toEqual({ n: 1 });
    const more = (await back.quiet(150)).filter((m) => m.kind === "text" && (m.json.svc === "chat" || m.json.type === "ack"));
    expect(more).toEqual([]);
  });

  it("an origin's ack that completes while the sender is away arrives once, on resume", async () => {
    const room = uniqueRoom();
    await script(room, [{ status: 200, delayMs: 300 }], { status: 200 }, "/hooks/rec");
    const alice = await join("alice", room, { sid: "alice-4" });
    const at = position(alice);
    alice.send({ v: 1, svc: "hooks", type: "ask", seq: 3, flags: 4, data: {} });
    await waitForLog(room, (l) => l.some((r) => r.path === "/hooks/rec"));
    alice.close(4000); // gone (a drop) before the origin answers
    await alice.closed();
    await new Promise((r) => setTimeout(r, 500)); // the origin has answered: the ack is logged for alice's session
    const back = await join("alice", room, { sid: "alice-4", resume: at });
    expect(back.authed.data).toMatchObject({ recovered: true, count: 1, last_seq: 3 });
    expect((await back.nextOf("sys", "ack")).data).toEqual({ seq: 3 });
    expect((await back.quiet(200)).filter((m) => m.kind === "text" && m.json.type === "ack")).toEqual([]);
  });

  it("last_seq: a message resent after a resume with a seq the room accepted is not forwarded twice", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-5" });
    const carol = await join("carol", room);
    alice.send(chat(1, 5));
    await alice.nextOf("sys", "ack");
    await carol.nextOf("chat", "say");
    const at = position(alice);
    alice.close(4000); // a drop (the SDK's timeout code): the session stays
    await alice.closed();
    const back = await join("alice", room, { sid: "alice-5", resume: at });
    expect(back.authed.data.last_seq).toBe(5);
    back.send(chat(1, 5)); // the resend of an accepted message
    back.send(chat(2, 6));
    expect((await carol.nextOf("chat", "say")).data).toEqual({ n: 2 });
    expect((await carol.quiet(100)).filter((m) => m.kind === "text" && m.json.svc === "chat")).toEqual([]);
  });

  it("a tenant without recovery answers recovered false, reason disabled, and authed carries no position", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "lobby", room, ticket: "dev:alice", sid: "alice-6", resume: "abc.3" });
    expect(a.authed.data).toMatchObject({ recovered: false, reason: "disabled" });
    expect(a.authed.data.epoch).toBeUndefined();
  });

  it("a malformed resume, or one without the session's sid, is 400", async () => {
    for (const params of [{ resume: "nodot" }, { resume: "a.b" }, { resume: "e.1" }, { resume: `${"e".repeat(65)}.1`, sid: "s-1" }]) {
      const res = await upgrade(wsUrl({ tenant: "rec", room: uniqueRoom(), ticket: "dev:alice", ...params }));
      expect(res.status).toBe(400);
    }
  });
});

describe("ghosts: an abnormal drop keeps the session for window_s; its departure waits grace_s", () => {
  const presenceOf = (c: TestClient) =>
    c.texts.map((t) => JSON.parse(t)).filter((j) => j.svc === "sys" && j.type === "presence" && j.data?.event !== "sync").map((j) => `${j.data.event}:${j.data.user}`);

  it("back within the grace: same slot, resumed, no presence leave or join for the others", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-g1" });
    const bob = await join("bob", room);
    const slot = alice.authed.data.slot;
    alice.close(1001); // going away: abnormal for the room
    await alice.closed();
    const back = await join("alice", room, { sid: "alice-g1", resume: position(alice) });
    expect(back.authed.data).toMatchObject({ resumed: true, recovered: true, slot });
    await new Promise((r) => setTimeout(r, 1300)); // past grace_s (1 s): nothing is announced for a session that came back
    expect(presenceOf(bob)).toEqual([]);
  });

  it("not back within the grace: presence leave then; a newcomer does not take the reserved slot; a later resume gets it back", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-g2" });
    const bob = await join("bob", room);
    const slot = alice.authed.data.slot;
    alice.close(1001);
    await alice.closed();
    expect(presenceOf(bob)).toEqual([]);
    await bob.nextOf("sys", "presence", 3000); // the leave, when the grace ends
    expect(presenceOf(bob)).toEqual(["leave:alice"]);
    const carol = await join("carol", room);
    expect(carol.authed.data.slot).not.toBe(slot);
    const back = await join("alice", room, { sid: "alice-g2", resume: position(alice) });
    expect(back.authed.data).toMatchObject({ slot, resumed: false, recovered: true });
    await bob.nextOf("sys", "presence"); // carol's join
    await bob.nextOf("sys", "presence"); // alice's join again: her departure was announced
    expect(presenceOf(bob)).toEqual(["leave:alice", "join:carol", "join:alice"]);
  });

  it("a deliberate leave (1000) is announced at once and frees the slot", async () => {
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-g3" });
    const bob = await join("bob", room);
    alice.close(1000);
    await bob.nextOf("sys", "presence", 500);
    expect(presenceOf(bob)).toEqual(["leave:alice"]);
  });
});

describe("recovery metrics", () => {
  it("count resumes by result, replayed frames and log rows", async () => {
    const { env } = await import("cloudflare:workers");
    const { runInDurableObject } = await import("cloudflare:test");
    const room = uniqueRoom();
    const alice = await join("alice", room, { sid: "alice-m" });
    const bob = await join("bob", room);
    alice.close(4000); // a drop (the SDK's timeout code): the session stays
    await alice.closed();
    bob.send(chat(1));
    bob.send(chat(2));
    await new Promise((r) => setTimeout(r, 50));
    await join("alice", room, { sid: "alice-m", resume: position(alice) });
    await join("alice", room, { sid: "alice-m", resume: `zz.${alice.authed.data.off}` });
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`rec/${room}`));
    const seen = await runInDurableObject(stub, (o: import("../../src/room/room.ts").RoomObject) => ({
      recovered: o.counters.get("wsprism_recovery_total", { tenant: "rec", result: "recovered" }),
      epoch: o.counters.get("wsprism_recovery_total", { tenant: "rec", result: "epoch" }),
      frames: o.counters.get("wsprism_recovery_frames_total", { tenant: "rec" }),
      rows: o.counters.get("wsprism_log_rows_written_total", { tenant: "rec" }),
    }));
    expect(seen).toMatchObject({ recovered: 1, epoch: 1, frames: 2, rows: 2 });
  });
});

describe("ghosts and the origins' open/close events (tenant rec-hooks, grace_s 1)", () => {
  const kinds = async (room: string) =>
    (await originLog(room)).flatMap((r) => (r.json?.events ?? []).map((e: { kind: string; user: string }) => `${e.kind}:${e.user}`));

  it("a drop comes back within the grace: no close and no second open reach the origin", async () => {
    const room = uniqueRoom();
    const alice = await connect({ tenant: "rec-hooks", room, ticket: "dev:alice", sid: "alice-h1" });
    await waitForLog(room, (l) => l.length === 1);
    alice.close(1001);
    await alice.closed();
    await connect({ tenant: "rec-hooks", room, ticket: "dev:alice", sid: "alice-h1", resume: position(alice) });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await kinds(room)).toEqual(["open:alice"]);
  });

  it("not back: the close reaches the origin when the grace ends, not before; a deliberate leave posts it at once", async () => {
    const room = uniqueRoom();
    const alice = await connect({ tenant: "rec-hooks", room, ticket: "dev:alice", sid: "alice-h2" });
    const bob = await connect({ tenant: "rec-hooks", room, ticket: "dev:bob" });
    await waitForLog(room, (l) => l.length === 2);
    const t0 = Date.now();
    alice.close(1001);
    await alice.closed();
    await new Promise((r) => setTimeout(r, 400));
    expect(await kinds(room)).toEqual(["open:alice", "open:bob"]);
    await waitForLog(room, (l) => l.length === 3, 4000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(await kinds(room)).toEqual(["open:alice", "open:bob", "close:alice"]);
    bob.close(1000);
    await waitForLog(room, (l) => l.length === 4, 800);
    expect(await kinds(room)).toEqual(["open:alice", "open:bob", "close:alice", "close:bob"]);
  });
});
