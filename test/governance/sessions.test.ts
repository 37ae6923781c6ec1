import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { LEASE_MS } from "../../src/governance/directory.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { connect, uniqueRoom, upgrade, wsUrl } from "../helpers/ws.ts";

const dir = (name: string) => env.DIRECTORY.get(env.DIRECTORY.idFromName(name));
const join = (tenant: string, user: string, room: string, sid?: string) => connect({ tenant, room, ticket: `dev:${user}`, sid });
async function rejected(tenant: string, user: string, room: string, status: number, code: string, sid?: string) {
  const res = await upgrade(wsUrl({ tenant, room, ticket: `dev:${user}`, sid }));
  expect(res.status).toBe(status);
  expect(((await res.json()) as { code: string }).code).toBe(code);
  return res;
}
const uniqueUser = () => `u${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("sessions per user across rooms", () => {
  it("single + kick_oldest: a second session in another room closes the first with 4004", async () => {
    const user = uniqueUser();
    const first = await join("solo", user, uniqueRoom("a"));
    const second = await join("solo", user, uniqueRoom("b"));
    expect((await first.nextOf("sys", "kicked")).data).toEqual({ reason: "session replaced" });
    expect((await first.closed()).code).toBe(4004);
    expect(second.closeEvent).toBeNull();
    const live = (await dir("t/solo").list()).filter((s) => s.user === user);
    expect(live.map((s) => s.sid)).toEqual([second.authed.data.sid]);
  });

  it("multi + deny: the third session is refused 409 TOO_MANY_SESSIONS, and admitted once one leaves", async () => {
    const user = uniqueUser();
    const room = uniqueRoom();
    const a = await join("pair", user, room);
    await join("pair", user, room);
    await rejected("pair", user, room, 409, "TOO_MANY_SESSIONS");
    a.close();
    await a.closed();
    // Capacity frees within a few seconds (the room releases the session on close).
    let admitted = null;
    for (let i = 0; i < 40 && !admitted; i++) {
      const res = await upgrade(wsUrl({ tenant: "pair", room, ticket: `dev:${user}` }));
      if (res.status === 101) admitted = res;
      else await sleep(100);
    }
    expect(admitted?.status).toBe(101);
  });

  it("max_rooms_per_user: a third room is 503 with Retry-After; the same rooms still admit", async () => {
    // One session (one sid) in two rooms: a third room is refused for the rooms cap alone.
    const user = uniqueUser();
    const r1 = uniqueRoom();
    await join("pair", user, r1, `${user}-a`);
    await join("pair", user, uniqueRoom(), `${user}-a`);
    const res = await rejected("pair", user, uniqueRoom(), 503, "RESOURCE_EXHAUSTED", `${user}-a`);
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(0);
    // A second session in a room the user is already in is fine.
    await join("pair", user, r1, `${user}-b`);
  });

  it("a reconnect with the same sid is the same session, not a new one", async () => {
    const user = uniqueUser();
    const room = uniqueRoom();
    await join("pair", user, room, "tab-1");
    await join("pair", user, room, "tab-2");
    const again = await join("pair", user, room, "tab-1"); // replaces tab-1 (4004 in the room)
    expect(again.authed.data.sid).toBe("tab-1");
    expect((await dir("t/pair").list()).filter((s) => s.user === user).map((s) => s.sid).sort()).toEqual(["tab-1", "tab-2"]);
  });
});

describe("tenant caps", () => {
  it("max_sessions_total and max_rooms_total answer 503, and admit again once someone leaves", async () => {
    // The `capped` tenant (3 sessions, 2 rooms) is used by this test only.
    const r1 = uniqueRoom();
    const r2 = uniqueRoom();
    const a = await join("capped", "a", r1);
    await join("capped", "b", r2);
    const rooms = await rejected("capped", "c", uniqueRoom(), 503, "RESOURCE_EXHAUSTED"); // a third room
    expect(Number(rooms.headers.get("Retry-After"))).toBeGreaterThan(0);
    await join("capped", "c", r2);
    const full = await rejected("capped", "d", r1, 503, "RESOURCE_EXHAUSTED"); // a fourth session
    expect(Number(full.headers.get("Retry-After"))).toBeGreaterThan(0);
    a.close();
    await a.closed();
    let status = 0;
    for (let i = 0; i < 40 && status !== 101; i++) {
      const res = await upgrade(wsUrl({ tenant: "capped", room: r1, ticket: "dev:d" }));
      status = res.status;
      if (status === 101) res.webSocket!.accept();
      else await sleep(100);
    }
    expect(status).toBe(101);
    const sessions = await dir("t/capped").list();
    expect(sessions.length).toBe(3);
  });

});

describe("no ghost sessions", () => {
  const admitReq = (sid: string, user: string) => ({
    sid,
    room: "r",
    user,
    cid: `c-${sid}`,
    maxSessions: 1,
    onExceed: "deny" as const,
    maxRoomsPerUser: 0,
    maxSessionsTotal: 0,
    maxRoomsTotal: 0,
  });

  it("a session whose room never renews it disappears when its lease runs out", async () => {
    const d = dir(`t/lease-${uniqueUser()}`);
    const now = Date.now();
    expect((await d.admit(admitReq("s1", "x"), now)).ok).toBe(true);
    expect((await d.list(now)).length).toBe(1);
    // Renewed: alive for LEASE_MS after the renewal, gone after.
    await d.renew("r", [{ sid: "s1", user: "x", cid: "c-s1", since: now }], now + 1000);
    expect((await d.list(now + LEASE_MS)).length).toBe(1);
    expect((await d.list(now + 1000 + LEASE_MS + 1)).length).toBe(0);
  });

  it("a room's renewal is absolute: sockets it no longer lists are dropped", async () => {
    const d = dir(`t/lease-${uniqueUser()}`);
    const now = Date.now();
    await d.renew("r", [{ sid: "s1", user: "x", cid: "a", since: now }, { sid: "s2", user: "x", cid: "b", since: now }], now);
    await d.renew("r", [{ sid: "s2", user: "x", cid: "b", since: now }], now + 10);
    expect((await d.list(now + 20)).map((s) => s.sid)).toEqual(["s2"]);
  });

  it("a release with a stale connection id leaves the newer socket's row", async () => {
    const d = dir(`t/lease-${uniqueUser()}`);
    const now = Date.now();
    await d.renew("r", [{ sid: "s1", user: "x", cid: "new", since: now }], now);
    await d.release("r", "s1", "old");
    expect((await d.list(now + 1)).map((s) => s.sid)).toEqual(["s1"]);
    await d.release("r", "s1", "new");
    expect(await d.list(now + 1)).toEqual([]);
  });

  it("a renewal naming a sid another user holds is refused and reported", async () => {
    const d = dir(`t/lease-${uniqueUser()}`);
    const now = Date.now();
    await d.renew("r1", [{ sid: "s1", user: "x", cid: "a", since: now }], now);
    expect(await d.renew("r2", [{ sid: "s1", user: "y", cid: "b", since: now }], now)).toEqual(["s1"]);
    expect((await d.list(now + 1)).map((s) => [s.room, s.user])).toEqual([["r1", "x"]]);
  });

  it("after the room object is evicted, its sessions are still renewed from the sockets' attachments", async () => {
    const user = uniqueUser();
    const room = uniqueRoom();
    const a = await join("pair", user, room);
    const stub = env.ROOMS.get(env.ROOMS.idFromName(`pair/${room}`));
    const sid = a.authed.data.sid;
    const row = () =>
      runInDurableObject(dir("t/pair"), (_o, state) =>
        state.storage.sql.exec<{ lease: number; confirmed: number }>("SELECT lease, confirmed FROM sockets WHERE sid = ? AND room = ?", sid, room).toArray(),
      );
    const [before] = await row(); // written at admission (or by an earlier renewal)
    expect(before).toBeDefined();
    await evictDurableObject(stub, { webSockets: "hibernate" });
    await sleep(5);
    const t0 = Date.now();
    // Run the housekeeping as its alarm would, after a wake.
    await runInDurableObject(stub, (o: RoomObject) => o.renew([...o.members.all().values()]));
    // The renewal itself wrote the row: a lease of LEASE_MS from now, confirmed.
    const [after] = await row();
    expect(after!.confirmed).toBe(1);
    expect(after!.lease).toBeGreaterThanOrEqual(t0 + LEASE_MS);
    expect(after!.lease).toBeGreaterThan(before!.lease);
    // Listed still when the admission's lease (PENDING_LEASE_MS) would have run out.
    const live = (await dir("t/pair").list(t0 + LEASE_MS - 1)).filter((s) => s.user === user);
    expect(live.map((s) => s.sid)).toEqual([sid]);
    a.close();
    await a.closed();
    await sleep(100);
    expect((await dir("t/pair").list()).filter((s) => s.user === user)).toEqual([]);
  });
});
