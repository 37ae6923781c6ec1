/**
 * The outbox's fair share against a model (SPEC v1.2 section 6, issue 19):
 * three users with up to four sids each, three services (`live` delivered
 * often, `slow` rarely, `dead` never: its POSTs fail, so it buffers and never
 * sheds), message floods, join/leave floods, time passing and restarts.
 *
 * Invariant (checked on every push, independently of the model's own answer):
 *  - a message whose sender's holdings in that stream plus the message fit its
 *    quarter, and whose sender is not the biggest holder of a late healthy stream
 *    (it holds fewer than SHED_FLOOR of its waiting messages, or no more than
 *    another user), is accepted, whatever the other users, the other streams and the
 *    open/close events hold (three users cannot fill a stream with quarters);
 *  - an open/close is accepted while its stream's open/close events are below
 *    their budget, whatever the messages hold.
 * And every answer equals the model's, sizes (UTF-8) and rows agree after every step.
 */
import fc from "fast-check";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { checked } from "../helpers/model.ts";
import { Outbox, type OriginEvent, type PushResult } from "../../src/origin/outbox.ts";
import { BACKLOG_SHED_MS, SHED_FLOOR, USER_SHARE } from "../../src/origin/shares.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { uniqueRoom } from "../helpers/ws.ts";

const LIMITS = { events: 20, bytes: 4000 };
const USERS = ["ann", "bo", "cy"];
const SVCS = ["live", "slow", "dead"] as const;
type Svc = (typeof SVCS)[number];
type Kind = "message" | "open" | "close";

interface MRow {
  id: string;
  kind: Kind;
  user: string;
  bytes: number;
  created: number;
  durable: boolean;
}
interface Model {
  now: number;
  next: number;
  streams: Record<Svc, MRow[]>;
}
interface Real {
  state: DurableObjectState;
  outbox: Outbox;
}

const utf8 = (s: string) => new TextEncoder().encode(s).length;
const msgs = (rows: MRow[]) => rows.filter((r) => r.kind === "message");
const tally = (rows: MRow[]) => ({ events: rows.length, bytes: rows.reduce((a, r) => a + r.bytes, 0) });

/** What a stream's rules say (shares.ts), computed from that stream's rows only. */
function expected(m: Model, svc: Svc, kind: Kind, user: string, bytes: number): PushResult {
  const rows = m.streams[svc];
  if (kind !== "message") {
    const lc = tally(rows.filter((r) => r.kind !== "message"));
    return lc.events + 1 > LIMITS.events || lc.bytes + bytes > LIMITS.bytes ? "stream_full" : "ok";
  }
  if (svc !== "dead" && overPart(rows, user) && rows.length > 0 && m.now - rows[0]!.created > BACKLOG_SHED_MS) return "backlog";
  const all = tally(msgs(rows));
  if (all.events + 1 > LIMITS.events || all.bytes + bytes > LIMITS.bytes) return "stream_full";
  const mine = tally(msgs(rows).filter((r) => r.user === user));
  if (mine.events + 1 > LIMITS.events / USER_SHARE || mine.bytes + bytes > LIMITS.bytes / USER_SHARE) return "user_share";
  return "ok";
}
function overPart(rows: MRow[], user: string): boolean {
  const waiting = msgs(rows);
  const held = (u: string) => waiting.filter((r) => r.user === u).length;
  const others = new Set(waiting.map((r) => r.user).filter((u) => u !== user));
  return held(user) >= SHED_FLOOR && [...others].every((u) => held(u) < held(user));
}

/** The invariant, stated from the sender's own holdings in the stream only. */
function mustAccept(m: Model, svc: Svc, kind: Kind, user: string, bytes: number): boolean {
  const rows = m.streams[svc];
  if (kind !== "message") {
    const lc = tally(rows.filter((r) => r.kind !== "message"));
    return lc.events + 1 <= LIMITS.events && lc.bytes + bytes <= LIMITS.bytes;
  }
  const mine = tally(msgs(rows).filter((r) => r.user === user));
  const withinQuarter = mine.events + 1 <= LIMITS.events / USER_SHARE && mine.bytes + bytes <= LIMITS.bytes / USER_SHARE;
  const late = svc !== "dead" && rows.length > 0 && m.now - rows[0]!.created > BACKLOG_SHED_MS;
  return withinQuarter && !(late && overPart(rows, user));
}

function push(m: Model, r: Real, svc: Svc, kind: Kind, user: string, sid: number, text: string): PushResult {
  const id = `e${m.next++}`;
  const event: OriginEvent = { id, kind, user, sid: `${user}-${sid}`, svc, type: "t", ts: 1, trace_id: "c" };
  if (kind === "message") event.data = text;
  const bytes = utf8(JSON.stringify(event));
  const want = expected(m, svc, kind, user, bytes);
  const must = mustAccept(m, svc, kind, user, bytes);
  // How the bridge pushes: a failing stream buffers (durable, never sheds); open/close are always written.
  const durable = kind !== "message" || svc === "dead";
  const got = r.outbox.push(svc, event, false, m.now, svc !== "dead", durable);
  if (must) expect(got, `${kind} of ${user} to ${svc} must be accepted`).toBe("ok");
  expect(got).toBe(want);
  if (got === "ok") {
    if (durable) for (const x of m.streams[svc]) x.durable = true; // the stream's memory rows are written first
    m.streams[svc].push({ id, kind, user, bytes, created: m.now, durable });
  }
  return got;
}

class Send implements fc.Command<Model, Real> {
  readonly svc: Svc;
  readonly user: string;
  readonly sid: number;
  readonly n: number;
  readonly text: string;
  constructor(svc: Svc, user: string, sid: number, n: number, text: string) {
    this.svc = svc;
    this.user = user;
    this.sid = sid;
    this.n = n;
    this.text = text;
  }
  check = () => true;
  run(m: Model, r: Real) {
    for (let i = 0; i < this.n; i++) push(m, r, this.svc, "message", this.user, this.sid, this.text);
  }
  toString = () => `send(${this.svc}, ${this.user}/${this.sid}, x${this.n}, ${this.text.length} chars)`;
}
class JoinLeave implements fc.Command<Model, Real> {
  readonly svc: Svc;
  readonly user: string;
  readonly cycles: number;
  constructor(svc: Svc, user: string, cycles: number) {
    this.svc = svc;
    this.user = user;
    this.cycles = cycles;
  }
  check = () => true;
  run(m: Model, r: Real) {
    for (let i = 0; i < this.cycles; i++) {
      push(m, r, this.svc, "open", this.user, i % 4, "");
      push(m, r, this.svc, "close", this.user, i % 4, "");
    }
  }
  toString = () => `joinLeave(${this.svc}, ${this.user}, x${this.cycles})`;
}
class Deliver implements fc.Command<Model, Real> {
  readonly svc: Svc;
  readonly max: number;
  constructor(svc: Svc, max: number) {
    this.svc = svc;
    this.max = max;
  }
  check = (m: Readonly<Model>) => m.streams[this.svc].length > 0;
  run(m: Model, r: Real) {
    const rows = m.streams[this.svc];
    const pool = rows.some((x) => x.durable) ? rows.filter((x) => x.durable) : rows; // stored rows first, never mixed
    const want = pool.slice(0, this.max).map((x) => x.id);
    const run = r.outbox.headRun(this.svc, this.max);
    expect(run.map((x) => x.event_id)).toEqual(want);
    const id = `b${m.next++}`;
    r.outbox.seal(run, id, m.now);
    r.outbox.finish(this.svc, id, r.outbox.rows(id));
    m.streams[this.svc] = rows.slice(want.length);
  }
  toString = () => `deliver(${this.svc}, ${this.max})`;
}
class Tick implements fc.Command<Model, Real> {
  readonly ms: number;
  constructor(ms: number) {
    this.ms = ms;
  }
  check = () => true;
  run(m: Model) {
    m.now += this.ms;
  }
  toString = () => `tick(${this.ms})`;
}
class Restart implements fc.Command<Model, Real> {
  check = () => true;
  run(m: Model, r: Real) {
    r.outbox = new Outbox(r.state.storage); // totals and shares are read again from storage
    r.outbox.limits = LIMITS;
    for (const svc of SVCS) m.streams[svc] = m.streams[svc].filter((x) => x.durable);
  }
  toString = () => "restart";
}

function checkInvariants(m: Model, r: Real): void {
  const all = SVCS.flatMap((svc) => m.streams[svc]);
  expect(r.outbox.size()).toEqual(tally(all));
  const stored = r.state.storage.sql.exec<{ event_id: string; user: string }>("SELECT event_id, user FROM outbox ORDER BY n").toArray();
  expect(new Set(stored.map((x) => x.event_id))).toEqual(new Set(all.filter((x) => x.durable).map((x) => x.id)));
  expect(stored.map((x) => x.user).every((u) => USERS.includes(u))).toBe(true);
}

describe("outbox shares model", () => {
  it("several users, dead and slow services, join/leave floods: a member within its share is never refused for another", async () => {
    const s = env.ROOMS.get(env.ROOMS.idFromName(`hooks/shares-model-${uniqueRoom()}`));
    await runInDurableObject(s, (_o: RoomObject, state: DurableObjectState) => {
      const svc = fc.constantFrom<Svc>(...SVCS);
      const user = fc.constantFrom(...USERS);
      const text = fc.oneof(fc.constant("hi"), fc.constant("é€😀".repeat(40)), fc.string({ maxLength: 300, unit: "grapheme" }));
      const send = fc.tuple(svc, user, fc.nat(3), fc.constantFrom(1, 1, 2, 6), text).map(([v, u, sid, n, t]) => new Send(v, u, sid, n, t));
      const tick = fc.constantFrom(0, 1000, BACKLOG_SHED_MS + 1, BACKLOG_SHED_MS + 1).map((ms) => new Tick(ms));
      const commands = [
        send,
        send,
        send,
        tick,
        fc.tuple(svc, user, fc.integer({ min: 1, max: 8 })).map(([v, u, n]) => new JoinLeave(v, u, n)),
        fc.tuple(fc.constantFrom<Svc>("live", "live", "slow"), fc.integer({ min: 1, max: 5 })).map(([v, n]) => new Deliver(v, n)),
        tick,
        fc.constant(new Restart()),
      ];
      fc.assert(
        fc.property(fc.commands(commands, { maxCommands: 60 }), (cmds) => {
          state.storage.sql.exec("DROP TABLE IF EXISTS outbox");
          for (const v of SVCS) state.storage.kv.delete(`outbox:batch:${v}`);
          const real: Real = { state, outbox: new Outbox(state.storage) };
          real.outbox.limits = LIMITS;
          const model: Model = { now: 1_000_000, next: 0, streams: { live: [], slow: [], dead: [] } };
          fc.modelRun(() => ({ model, real }), [...cmds].map((c) => checked(c, checkInvariants)));
        }),
        { numRuns: 300 },
      );
    });
  }, 60_000);
});
