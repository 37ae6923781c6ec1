/**
 * Model-based property test of sessions across resumes (SPEC v1.2 section 10),
 * end to end through the Worker and a room object, as users combine features:
 * users that take one another's sids, drops with every close code a client can
 * send (1000 ends a session, 1001, 3000, 4000 and 4999 leave a ghost), resumes
 * and new sessions under an old sid, API kicks, the instance replaced (its
 * sockets die; its sessions become ghosts), late joiners, chat relayed by the
 * broadcast handler (logged) and acked sends to an origin service.
 *
 * After every step, for every session the model knows:
 *  - no frame reached it that was not addressed to it (a chat from another
 *    session while it existed, an ack of its own seq), none twice, in order;
 *  - a connected session got every chat addressed to it and exactly one ack for
 *    every acked send, on its connections (live frames and replays together);
 *  - each connected member's presence view (its `sync`, then `join`/`leave`)
 *    equals the room's presence: every session, connected or a ghost, but itself.
 * Tenant `rec-model`: grace_s 60 (ghosts stay listed for a whole run).
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { script } from "../helpers/origin.ts";
import { resetRoom } from "../helpers/room.ts";
import { TestClient, uniqueRoom, upgrade, wsUrl } from "../helpers/ws.ts";

const TENANT = "rec-model";
const API_KEY = "test-api-key-0123456789";
const CODES = [1000, 1001, 3000, 4000, 4999] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Conn {
  client: TestClient;
  /** Frames after this many texts are not the app's: it had moved to a newer connection. */
  cutoff: number | null;
}
interface Session {
  user: string;
  sid: string;
  /** Its connections, oldest first; the last is live unless the session is a ghost. */
  conns: Conn[];
  live: boolean;
  /** Chat ids addressed to it, in order; seqs of its acked sends. */
  chats: number[];
  asked: number[];
  nextSeq: number;
}
interface Model {
  run: string;
  room: string;
  epoch: string | null;
  sessions: Session[];
  /** Sessions that ended: still checked for frames not addressed to them. */
  ended: Session[];
  nextChat: number;
  /** Connections the gateway must close, with their code. */
  expectClosed: Array<{ client: TestClient; code: number }>;
}

let runs = 0;
const seen = new Set<string>();

/** A session that ended releases its sid in the tenant's directory soon after (the release is asynchronous). */
async function released(sid: string): Promise<void> {
  const dir = env.DIRECTORY.get(env.DIRECTORY.idFromName(`t/${TENANT}`));
  for (let i = 0; i < 400 && (await dir.list()).some((r) => r.sid === sid); i++) await sleep(10);
}

/** The frames a session's app saw: each connection's texts up to its cutoff. */
function framesOf(s: Session): any[] {
  return s.conns.flatMap((c) => (c.cutoff === null ? c.client.texts : c.client.texts.slice(0, c.cutoff)).map((t) => JSON.parse(t)));
}

/** Where a session's app is in the room's log: the highest `off` it saw. */
const positionOf = (s: Session) => Math.max(0, ...framesOf(s).flatMap((f) => (typeof f.off === "number" ? [f.off] : [])));

/** A member's presence view: its sync, then the joins and leaves after it. */
function viewOf(c: TestClient): string[] | null {
  const view = new Set<string>();
  let synced = false;
  for (const f of c.texts.map((t) => JSON.parse(t))) {
    if (f.svc !== "sys" || f.type !== "presence") continue;
    if (f.data.event === "sync") (synced = true), f.data.members.forEach((m: { sid: string }) => view.add(m.sid));
    else if (f.data.event === "join") view.add(f.data.sid);
    else if (f.data.event === "leave") view.delete(f.data.sid);
  }
  return synced ? [...view].sort() : null;
}

/** Never a frame not addressed to the session, never one twice, in order. */
function checkAddressed(s: Session): void {
  const frames = framesOf(s);
  const chats = frames.filter((f) => f.svc === "chat").map((f) => f.data.n as number);
  const acks = frames.filter((f) => f.svc === "sys" && f.type === "ack").map((f) => f.data.seq as number);
  const errors = frames.filter((f) => f.svc === "sys" && f.type === "error");
  expect(errors, `${s.sid}: no error`).toEqual([]);
  expect(new Set(chats).size, `${s.sid}: no chat twice ${JSON.stringify(chats)}`).toBe(chats.length);
  for (const n of chats) expect(s.chats, `${s.sid} got chat ${n}`).toContain(n);
  expect(chats, `${s.sid}: chats in order`).toEqual(s.chats.filter((n) => chats.includes(n)));
  expect(new Set(acks).size, `${s.sid}: no ack twice ${JSON.stringify(acks)}`).toBe(acks.length);
  for (const q of acks) expect(s.asked, `${s.sid} got ack ${q}`).toContain(q);
}

async function settle(m: Model): Promise<void> {
  // Generous waits: CI runs this beside every other test file on two cores. A wait only ends early.
  for (const { client, code } of m.expectClosed) expect((await client.closed(8000)).code).toBe(code);
  m.expectClosed = [];
  const room = [...m.sessions.map((s) => s.sid)].sort();
  const complete = (s: Session) => {
    const frames = framesOf(s);
    const chats = frames.filter((f) => f.svc === "chat").length;
    const acks = frames.filter((f) => f.svc === "sys" && f.type === "ack").length;
    const view = viewOf(s.conns.at(-1)!.client);
    return chats >= s.chats.length && acks >= s.asked.length && JSON.stringify(view) === JSON.stringify(room.filter((x) => x !== s.sid));
  };
  for (let i = 0; i < 320 && !m.sessions.filter((s) => s.live).every(complete); i++) await sleep(25);
  for (const s of [...m.sessions, ...m.ended]) checkAddressed(s);
  for (const s of m.sessions.filter((x) => x.live)) {
    const frames = framesOf(s);
    expect(frames.filter((f) => f.svc === "chat").map((f) => f.data.n), `${s.sid}: every chat`).toEqual(s.chats);
    expect(frames.filter((f) => f.svc === "sys" && f.type === "ack").map((f) => f.data.seq).sort((a, b) => a - b), `${s.sid}: one ack each`).toEqual(s.asked);
    expect(viewOf(s.conns.at(-1)!.client), `${s.sid}: presence view`).toEqual(room.filter((x) => x !== s.sid));
    expect(s.conns.at(-1)!.client.closeEvent).toBeNull();
  }
}

class Connect implements fc.AsyncCommand<Model, unknown> {
  readonly u: number;
  readonly s: number;
  readonly resume: boolean;
  constructor(u: number, s: number, resume: boolean) {
    this.u = u;
    this.s = s;
    this.resume = resume;
  }
  check = () => true;
  async run(m: Model): Promise<void> {
    return connect(m, `${m.run}u${this.u}`, `${m.run}s${this.s}`, this.resume);
  }
  toString = () => `connect(u${this.u},s${this.s}${this.resume ? ",resume" : ""})`;
}

/** A ghost comes back: its own user and sid, with resume. */
class Resume implements fc.AsyncCommand<Model, unknown> {
  readonly i: number;
  constructor(i: number) {
    this.i = i;
  }
  check = (m: Readonly<Model>) => m.sessions.some((s) => !s.live);
  async run(m: Model): Promise<void> {
    const ghosts = m.sessions.filter((s) => !s.live);
    const g = ghosts[this.i % ghosts.length]!;
    return connect(m, g.user, g.sid, true);
  }
  toString = () => `resume(${this.i})`;
}

/** Someone connects under a known session's sid: its user without resume (a new session), or another user (400). */
class Reuse implements fc.AsyncCommand<Model, unknown> {
  readonly i: number;
  readonly other: boolean;
  constructor(i: number, other: boolean) {
    this.i = i;
    this.other = other;
  }
  check = (m: Readonly<Model>) => m.sessions.length > 0;
  async run(m: Model): Promise<void> {
    const s = m.sessions[this.i % m.sessions.length]!;
    return connect(m, this.other ? `${s.user}x` : s.user, s.sid, false);
  }
  toString = () => `reuse(${this.i},${this.other ? "another user" : "same user"})`;
}

async function connect(m: Model, user: string, sid: string, wantsResume: boolean): Promise<void> {
  {
    const old = m.sessions.find((x) => x.sid === sid);
    const resume = wantsResume && m.epoch !== null ? `${m.epoch}.${old && old.user === user ? positionOf(old) : 0}` : undefined;
    if (old?.live && old.user === user) old.conns.at(-1)!.cutoff = old.conns.at(-1)!.client.texts.length; // the app moves on
    const res = await upgrade(wsUrl({ tenant: TENANT, room: m.room, ticket: `dev:${user}`, sid, resume }));
    if (old && old.user !== user) {
      expect(res.status, `${user} takes ${old.user}'s sid`).toBe(400);
      await res.body?.cancel();
      seen.add("sid taken");
      return settle(m);
    }
    expect(res.status).toBe(101);
    res.webSocket!.accept();
    const client = new TestClient(res.webSocket!, res);
    client.authed = await client.nextOf("sys", "authed");
    await client.pingAtOpen(); // as clients do (SPEC v1.2): the session arrives, and is announced
    m.epoch ??= client.authed.data.epoch;
    if (old?.live) m.expectClosed.push({ client: old.conns.at(-1)!.client, code: 4004 });
    if (old && resume) {
      expect(client.authed.data, "a resume continues the session").toMatchObject({ resumed: true, recovered: true });
      seen.add(old.live ? "resumed over its live socket" : "resumed");
      old.conns.push({ client, cutoff: null });
      old.live = true;
      return settle(m);
    }
    if (old) (m.sessions = m.sessions.filter((x) => x !== old)), m.ended.push(old);
    if (resume) expect(client.authed.data).toMatchObject({ recovered: false, reason: "too_old" });
    expect(client.authed.data.last_seq).toBe(0);
    m.sessions.push({ user, sid, conns: [{ client, cutoff: null }], live: true, chats: [], asked: [], nextSeq: 1 });
    seen.add(old ? "new session under an old sid" : "joined");
    return settle(m);
  }
}

/** The i-th connected session (commands that need one are skipped when there is none). */
const pick = (m: Readonly<Model>, i: number) => m.sessions.filter((s) => s.live)[i % m.sessions.filter((s) => s.live).length]!;
const anyLive = (m: Readonly<Model>) => m.sessions.some((s) => s.live);

class Drop implements fc.AsyncCommand<Model, unknown> {
  readonly i: number;
  readonly code: (typeof CODES)[number];
  constructor(i: number, code: (typeof CODES)[number]) {
    this.i = i;
    this.code = code;
  }
  check = anyLive;
  async run(m: Model): Promise<void> {
    const s = pick(m, this.i);
    s.conns.at(-1)!.client.close(this.code);
    await s.conns.at(-1)!.client.closed(8000);
    s.live = false;
    if (this.code === 1000) (m.sessions = m.sessions.filter((x) => x !== s)), m.ended.push(s), await released(s.sid);
    seen.add(this.code === 1000 ? "left" : "dropped");
    return settle(m);
  }
  toString = () => `drop(${this.i},${this.code})`;
}

/** An API kick by sid: a connected session is closed 4003, a ghost ends too (it cannot resume after a kick). */
class Kick implements fc.AsyncCommand<Model, unknown> {
  readonly i: number;
  constructor(i: number) {
    this.i = i;
  }
  check = (m: Readonly<Model>) => m.sessions.length > 0;
  async run(m: Model): Promise<void> {
    return this.kick(m, m.sessions[this.i % m.sessions.length]!);
  }
  protected async kick(m: Model, s: Session): Promise<void> {
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`${TENANT}/${m.room}`));
    expect(await runInDurableObject(stub, (o: RoomObject) => o.apiKick({ sid: s.sid }, "test"))).toEqual({ kicked: 1 });
    if (s.live) m.expectClosed.push({ client: s.conns.at(-1)!.client, code: 4003 });
    seen.add(s.live ? "kicked" : "kicked a ghost");
    s.live = false;
    m.sessions = m.sessions.filter((x) => x !== s);
    m.ended.push(s);
    await settle(m);
    await released(s.sid);
  }
  toString = () => `kick(${this.i})`;
}

/** An API kick of a ghost (drawn on its own: picking one among all sessions seldom hit a ghost). */
class KickGhost extends Kick {
  override check = (m: Readonly<Model>) => m.sessions.some((s) => !s.live);
  override async run(m: Model): Promise<void> {
    const ghosts = m.sessions.filter((s) => !s.live);
    return this.kick(m, ghosts[this.i % ghosts.length]!);
  }
  override toString = () => `kickGhost(${this.i})`;
}

class Chat implements fc.AsyncCommand<Model, unknown> {
  readonly i: number;
  constructor(i: number) {
    this.i = i;
  }
  check = anyLive;
  async run(m: Model): Promise<void> {
    const s = pick(m, this.i);
    const n = m.nextChat++;
    // Acked, so that settling waits until the room relayed it (with every other session away, nothing
    // else would show it arrived, and a session that joins next would be in its audience).
    const seq = s.nextSeq++;
    s.conns.at(-1)!.client.send({ v: 1, svc: "chat", type: "say", seq, flags: 4, data: { n } });
    s.asked.push(seq);
    for (const o of m.sessions) if (o !== s) o.chats.push(n);
    return settle(m);
  }
  toString = () => `chat(${this.i})`;
}

class Ask implements fc.AsyncCommand<Model, unknown> {
  readonly i: number;
  constructor(i: number) {
    this.i = i;
  }
  check = anyLive;
  async run(m: Model): Promise<void> {
    const s = pick(m, this.i);
    const seq = s.nextSeq++;
    s.conns.at(-1)!.client.send({ v: 1, svc: "hooks", type: "ask", seq, flags: 4, data: {} });
    s.asked.push(seq);
    seen.add("asked");
    return settle(m);
  }
  toString = () => `ask(${this.i})`;
}

class Restart implements fc.AsyncCommand<Model, unknown> {
  check = anyLive;
  async run(m: Model): Promise<void> {
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`${TENANT}/${m.room}`));
    await resetRoom(stub);
    for (const s of m.sessions.filter((x) => x.live)) {
      await s.conns.at(-1)!.client.closed(8000);
      s.live = false;
    }
    seen.add("restarted");
    return settle(m);
  }
  toString = () => "restart";
}

const commands = [
  fc.tuple(fc.nat(2), fc.nat(3), fc.boolean()).map(([u, s, r]) => new Connect(u, s, r)),
  fc.tuple(fc.nat(2), fc.nat(3), fc.boolean()).map(([u, s, r]) => new Connect(u, s, r)),
  fc.nat(9).map((i) => new Resume(i)),
  fc.nat(9).map((i) => new Resume(i)),
  fc.tuple(fc.nat(9), fc.boolean()).map(([i, o]) => new Reuse(i, o)),
  fc.tuple(fc.nat(9), fc.constantFrom(...CODES)).map(([i, c]) => new Drop(i, c)),
  fc.nat(9).map((i) => new Drop(i, 1000)), // a deliberate leave, drawn as often as any drop
  fc.nat(9).map((i) => new Kick(i)),
  fc.nat(9).map((i) => new KickGhost(i)),
  fc.nat(9).map((i) => new Chat(i)),
  fc.nat(9).map((i) => new Chat(i)),
  fc.nat(9).map((i) => new Ask(i)),
  fc.nat(9).map((i) => new Ask(i)),
  fc.constant(new Restart()),
];

describe("sessions model (resumes, drops, kicks, restarts, sid takers, acked sends, presence)", () => {
  it("every step: nothing unaddressed, nothing twice, nothing missing, one ack per send, presence views equal the room's", async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 18, size: "max" }), async (cmds) => {
        const room = uniqueRoom("model");
        await script(room, [], { status: 200 }, "/hooks/model");
        const model: Model = { run: `m${runs++}`, room, epoch: null, sessions: [], ended: [], nextChat: 1, expectClosed: [] };
        try {
          await fc.asyncModelRun(() => ({ model, real: {} }), cmds);
        } finally {
          for (const s of [...model.sessions, ...model.ended]) for (const c of s.conns) c.client.close(1000);
        }
      }),
      { numRuns: 40 },
    );
    // Not vacuous: the runs went through every kind of step the invariants are about.
    for (const what of ["sid taken", "resumed", "new session under an old sid", "left", "dropped", "kicked", "kicked a ghost", "asked", "restarted"]) {
      expect(seen, `some run saw "${what}"`).toContain(what);
    }
  }, 240_000);
});
