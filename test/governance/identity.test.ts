/**
 * Session identity (SPEC v1.1 section 2): a session is (user, sid); a sid names
 * one user's session in a tenant at a time; one socket per (session, room); each
 * cap counts what the contract says; a refused upgrade changes nothing of anyone
 * else's state. Regression tests for issue 9 findings 1, 2 and 8.
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RoomObject } from "../../src/room/room.ts";
import { connect, uniqueRoom, upgrade, wsUrl, type TestClient } from "../helpers/ws.ts";

const tenantDir = (tenant: string) => env.DIRECTORY.get(env.DIRECTORY.idFromName(`t/${tenant}`));
const uid = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function join(tenant: string, user: string, room: string, sid?: string): Promise<TestClient> {
  return connect({ tenant, room, ticket: `dev:${user}`, sid });
}
async function refused(tenant: string, user: string, room: string, sid: string | undefined, status: number, code: string) {
  const res = await upgrade(wsUrl({ tenant, room, ticket: `dev:${user}`, sid }));
  expect(res.status).toBe(status);
  expect(((await res.json()) as { code: string }).code).toBe(code);
}
/** Close every client and wait until the tenant's directory has forgotten them. */
async function leaveAll(tenant: string, clients: TestClient[]) {
  for (const c of clients) c.close();
  for (let i = 0; i < 50; i++) {
    if ((await tenantDir(tenant).list()).length === 0) return;
    await sleep(50);
  }
  throw new Error("directory did not empty");
}

describe("a reused sid is one session, and every cap still counts", () => {
  it("one user, one sid, many rooms: max_rooms_per_user and the tenant caps hold", async () => {
    const user = `u${uid()}`;
    const sid = `S${uid()}`;
    const a = await join("ident", user, uniqueRoom(), sid);
    const b = await join("ident", user, uniqueRoom(), sid);
    // A third room for this user: 503 (max_rooms_per_user 2), reusing the sid changes nothing.
    await refused("ident", user, uniqueRoom(), sid, 503, "RESOURCE_EXHAUSTED");
    const rows = await tenantDir("ident").list();
    expect(rows.filter((r) => r.sid === sid).length).toBe(2);
    await leaveAll("ident", [a, b]);
  });

  it("max_sessions_total counts sockets and max_rooms_total rooms, whatever the sids", async () => {
    const sid = `S${uid()}`;
    const users = [`u${uid()}a`, `u${uid()}b`, `u${uid()}c`];
    const r = [uniqueRoom(), uniqueRoom(), uniqueRoom(), uniqueRoom()];
    const held: TestClient[] = [];
    held.push(await join("ident", users[0]!, r[0]!, sid));
    held.push(await join("ident", users[0]!, r[1]!, sid));
    held.push(await join("ident", users[1]!, r[0]!));
    held.push(await join("ident", users[1]!, r[2]!));
    // A fourth room: max_rooms_total 3.
    await refused("ident", users[2]!, r[3]!, undefined, 503, "RESOURCE_EXHAUSTED");
    held.push(await join("ident", users[2]!, r[1]!));
    // A sixth socket: max_sessions_total 5.
    await refused("ident", users[2]!, r[2]!, undefined, 503, "RESOURCE_EXHAUSTED");
    expect((await tenantDir("ident").list()).length).toBe(5);
    await leaveAll("ident", held);
  });

  it("a sid held by another user is 400 BAD_REQUEST, in any room, and the holder keeps its row and socket", async () => {
    const sid = `S${uid()}`;
    const owner = `u${uid()}o`;
    const room = uniqueRoom();
    const a = await join("ident", owner, room, sid);
    for (let i = 0; i < 4; i++) await refused("ident", `u${uid()}x${i}`, i === 0 ? room : uniqueRoom(), sid, 400, "BAD_REQUEST");
    const rows = await tenantDir("ident").list();
    expect(rows.filter((r) => r.sid === sid)).toMatchObject([{ user: owner, room }]);
    a.send({ v: 1, svc: "chat", type: "ping", flags: 4, seq: 1 });
    expect((await a.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
    expect(a.closeEvent).toBeNull();
    await leaveAll("ident", [a]);
  });

  it("finding 2: a stranger naming a capped tenant's sid neither deletes the holder's row nor opens the cap", async () => {
    const sid = `S${uid()}`;
    const r1 = uniqueRoom();
    const r2 = uniqueRoom();
    const held: TestClient[] = [];
    held.push(await join("ident", `u${uid()}1`, r1, sid));
    held.push(await join("ident", `u${uid()}2`, r1));
    held.push(await join("ident", `u${uid()}3`, r2));
    held.push(await join("ident", `u${uid()}4`, r2));
    held.push(await join("ident", `u${uid()}5`, uniqueRoom()));
    await refused("ident", `u${uid()}x`, r1, sid, 400, "BAD_REQUEST");
    expect((await tenantDir("ident").list()).length).toBe(5);
    await refused("ident", `u${uid()}y`, r1, undefined, 503, "RESOURCE_EXHAUSTED");
    await leaveAll("ident", held);
  });

  it("max_sessions_per_user counts distinct sids: the same sid in a second room is not a new session", async () => {
    const user = `u${uid()}`;
    const [s1, s2, s3] = [`A${uid()}`, `B${uid()}`, `C${uid()}`];
    const rA = uniqueRoom();
    const rB = uniqueRoom();
    const held = [await join("ident", user, rA, s1), await join("ident", user, rB, s1), await join("ident", user, rA, s2)];
    await refused("ident", user, rB, s3, 409, "TOO_MANY_SESSIONS");
    await leaveAll("ident", held);
  });

  it("kick_oldest closes every socket of the oldest session, and no user keeps more sessions than allowed", async () => {
    const user = `u${uid()}`;
    const [s1, s2, s3] = [`A${uid()}`, `B${uid()}`, `C${uid()}`];
    const rA = uniqueRoom();
    const rB = uniqueRoom();
    const old1 = await join("ident-k", user, rA, s1);
    const old2 = await join("ident-k", user, rB, s1);
    await sleep(5);
    const mid = await join("ident-k", user, rA, s2);
    const fresh = await join("ident-k", user, rB, s3);
    expect((await old1.closed()).code).toBe(4004);
    expect((await old2.closed()).code).toBe(4004);
    expect(mid.closeEvent).toBeNull();
    expect(fresh.closeEvent).toBeNull();
    const sids = new Set((await tenantDir("ident-k").list()).filter((r) => r.user === user).map((r) => r.sid));
    expect([...sids].sort()).toEqual([s2, s3].sort());
    await leaveAll("ident-k", [mid, fresh]);
  });

  it("the same (user, sid, room) again replaces the socket (4004) and keeps one row", async () => {
    const user = `u${uid()}`;
    const sid = `S${uid()}`;
    const room = uniqueRoom();
    const first = await join("ident", user, room, sid);
    const second = await join("ident", user, room, sid);
    expect((await first.closed()).code).toBe(4004);
    expect(second.authed.data.slot).toBe(first.authed.data.slot);
    await sleep(50);
    expect((await tenantDir("ident").list()).filter((r) => r.sid === sid).length).toBe(1);
    await leaveAll("ident", [second]);
  });
});

describe("finding 8: replaceSession checks the user", () => {
  it("a stale replacement for another user's sid closes nothing", async () => {
    const sid = `S${uid()}`;
    const room = uniqueRoom();
    const a = await join("ident", `u${uid()}`, room, sid);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`ident/${room}`));
    const replaced = await runInDurableObject(stub, (o: RoomObject) => o.replaceSession(sid, "someone-else"));
    expect(replaced).toBe(false);
    await sleep(50);
    expect(a.closeEvent).toBeNull();
    await leaveAll("ident", [a]);
  });
});

describe("presence sync", () => {
  it("right after authed, a newcomer gets a sync listing the members already there (not itself)", async () => {
    const room = uniqueRoom();
    const a = await join("ident", `u${uid()}a`, room);
    await a.expectQuiet(50); // alone: the sync (kept apart in a.syncs) and nothing else
    expect(a.syncs.map((e) => e.data)).toEqual([{ event: "sync", members: [] }]);
    const b = await join("ident", `u${uid()}b`, room);
    await b.expectQuiet(50); // the sync (in b.syncs), no join or other frame
    // The first frame after authed is the sync.
    expect(b.received.slice(0, 2)).toEqual(["sys:authed", "sys:presence"]);
    expect(b.syncs.map((e) => e.data)).toEqual([
      { event: "sync", members: [{ user: a.authed.data.user, sid: a.authed.data.sid, slot: a.authed.data.slot }] },
    ]);
    // a sees b's join, not a sync.
    expect((await a.nextOf("sys", "presence")).data).toMatchObject({ event: "join", user: b.authed.data.user });
    await leaveAll("ident", [a, b]);
  });
});
