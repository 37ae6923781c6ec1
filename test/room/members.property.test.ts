/**
 * The members index (src/room/members.ts) against a model: sockets join, leave
 * and close, the object wakes (a new index rebuilt from the runtime's sockets),
 * and after every step the lookups by sid (answers, replacement, presence) give
 * what a scan of the live members gives.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Members, type Attachment } from "../../src/room/members.ts";
import { checked } from "../helpers/model.ts";

interface Live {
  ws: WebSocket;
  att: Attachment;
}
interface Model {
  /** Members by socket index, as the room sees them. */
  members: Map<number, string>;
}
interface Real {
  sockets: Live[];
  /** What the runtime lists (getWebSockets): accepted and not closed. */
  accepted: Set<WebSocket>;
  members: Members;
}

const SIDS = ["s1", "s2", "s3"];
const att = (sid: string, n: number): Attachment => ({
  v: 1,
  tenant: "t",
  room: "r",
  user: `u${n}`,
  sid,
  slot: n + 1,
  trace: `tr${n}`,
  since: 0,
  exp: null,
  rl: { tokens: 1, ts: 0 },
});
const fakeState = (r: Real) => ({ getWebSockets: () => [...r.accepted] }) as unknown as DurableObjectState;

class Join implements fc.Command<Model, Real> {
  readonly sid: string;
  constructor(sid: string) {
    this.sid = sid;
  }
  check = () => true;
  run(m: Model, r: Real) {
    const [ws] = Object.values(new WebSocketPair());
    ws!.accept();
    const n = r.sockets.length;
    r.sockets.push({ ws: ws!, att: att(this.sid, n) });
    r.accepted.add(ws!);
    r.members.add(ws!, att(this.sid, n));
    m.members.set(n, this.sid);
  }
  toString = () => `join(${this.sid})`;
}

class Leave implements fc.Command<Model, Real> {
  readonly pick: number;
  constructor(pick: number) {
    this.pick = pick;
  }
  check = (m: Model) => m.members.size > 0;
  run(m: Model, r: Real) {
    const n = [...m.members.keys()][this.pick % m.members.size]!;
    const ws = r.sockets[n]!.ws;
    expect(r.members.remove(ws)?.sid).toBe(m.members.get(n));
    r.accepted.delete(ws);
    m.members.delete(n);
  }
  toString = () => `leave(${this.pick})`;
}

class Wake implements fc.Command<Model, Real> {
  check = () => true;
  run(_m: Model, r: Real) {
    r.members = new Members(fakeState(r));
  }
  toString = () => "wake";
}

const invariant = (m: Model, r: Real) => {
  for (const sid of SIDS) {
    const want = [...m.members].filter(([, s]) => s === sid).map(([n]) => r.sockets[n]!.ws);
    const got = r.members.withSid(sid).map(([ws]) => ws);
    expect(new Set(got)).toEqual(new Set(want));
    expect(got.length).toBe(want.length);
    expect(r.members.bySid(sid)?.[1].sid ?? null).toBe(want.length ? sid : null);
  }
  expect(r.members.size()).toBe(m.members.size);
};

describe("members index by sid", () => {
  it("agrees with a scan of the live members through joins, leaves and wakes", () => {
    fc.assert(
      fc.property(
        fc.commands(
          [
            fc.constantFrom(...SIDS).map((s) => checked(new Join(s), invariant)),
            fc.nat(20).map((p) => checked(new Leave(p), invariant)),
            fc.constant(checked(new Wake(), invariant)),
          ],
          { maxCommands: 40 },
        ),
        (cmds) => {
          const r: Real = { sockets: [], accepted: new Set(), members: null as unknown as Members };
          r.members = new Members(fakeState(r));
          fc.modelRun(() => ({ model: { members: new Map() }, real: r }), cmds);
        },
      ),
      { numRuns: 100 },
    );
  });
});
