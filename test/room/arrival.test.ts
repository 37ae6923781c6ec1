/**
 * SPEC v1.2 section 2: a client sends `ping` as soon as its socket opens. A
 * socket that sends no frame within 10 s of `authed` is a connection that never
 * arrived: it is closed, and its session ends without a presence `join` or an
 * `open` event having been sent. The room holds a newcomer's announcement until
 * its first sign of life (a frame, or the `ping`), so a connection whose client
 * vanished during the upgrade is never announced at all (docs/protocol.md
 * section 2).
 */
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { runHousekeeping } from "../../src/room/housekeeping.ts";
import type { RoomObject } from "../../src/room/room.ts";
import { originLog, uniqueEvents, waitForLog } from "../helpers/origin.ts";
import { connect, uniqueRoom, type TestClient } from "../helpers/ws.ts";

const stub = (tenant: string, room: string) => env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const joins = (c: TestClient) => c.inbox.filter((m) => m.kind === "text" && m.json.type === "presence" && m.json.data?.event === "join").map((m) => (m as any).json.data.sid);
const leaves = (c: TestClient) => c.inbox.filter((m) => m.kind === "text" && m.json.type === "presence" && m.json.data?.event === "leave").map((m) => (m as any).json.data.sid);
const apiPresence = (tenant: string, room: string) => runInDurableObject(stub(tenant, room), async (o: RoomObject) => (await o.apiPresence()).members.map((m) => m.sid).sort());

describe("arrival: announced at the first sign of life (SPEC v1.2 section 2)", () => {
  it("a newcomer that has sent nothing is not announced; its ping announces it", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "lobby", room, ticket: "dev:alice", sid: "a" });
    const b = await connect({ tenant: "lobby", room, ticket: "dev:bob", sid: "b" }, {}, { ping: false });
    await sleep(300);
    expect(joins(a)).toEqual([]);
    expect(await apiPresence("lobby", room)).toEqual(["a"]);
    // Nor is it in the sync of a later newcomer.
    const c = await connect({ tenant: "lobby", room, ticket: "dev:carol", sid: "c" });
    expect(c.syncs[0]!.data.members.map((m: { sid: string }) => m.sid)).toEqual(["a"]);
    b.ws.send("ping");
    expect((await a.next((e) => e.type === "presence" && e.data.event === "join")).data.sid).toBe("c");
    expect((await a.next((e) => e.type === "presence" && e.data.event === "join")).data.sid).toBe("b");
    expect((await c.next((e) => e.type === "presence" && e.data.event === "join")).data.sid).toBe("b");
    expect(await apiPresence("lobby", room)).toEqual(["a", "b", "c"]);
  });

  it("any first frame announces it before the frame takes effect", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "lobby", room, ticket: "dev:alice", sid: "a" });
    const b = await connect({ tenant: "lobby", room, ticket: "dev:bob", sid: "b" }, {}, { ping: false });
    b.send({ v: 1, svc: "chat", type: "say", room, data: { n: 1 } });
    const first = await a.next((e) => e.svc === "chat" || (e.type === "presence" && e.data.event === "join"));
    expect(first.data).toMatchObject({ event: "join", sid: "b" });
    expect((await a.nextOf("chat", "say")).data).toEqual({ n: 1 });
  });

  it("no frame within 10 s of authed: closed, and the session ends with no join, leave, open or close", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "hooks", room, ticket: "dev:alice", sid: "a" });
    await waitForLog(room, (l) => uniqueEvents(l).length === 1); // alice's open event
    const b = await connect({ tenant: "hooks", room, ticket: "dev:bob", sid: "b" }, {}, { ping: false });
    await runInDurableObject(stub("hooks", room), (o: RoomObject) => runHousekeeping(o, Date.now() + 10_100));
    expect((await b.closed()).code).toBe(4002);
    await sleep(300);
    expect(joins(a)).toEqual([]);
    expect(leaves(a)).toEqual([]);
    expect(a.closeEvent).toBeNull();
    expect(uniqueEvents(await originLog(room)).map((e) => `${e.kind}:${e.sid}`)).toEqual(["open:a"]);
    expect(await apiPresence("hooks", room)).toEqual(["a"]);
  });

  it("the room's own alarm ends it within 10 s of authed, without help", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "lobby", room, ticket: "dev:alice", sid: "a" });
    const b = await connect({ tenant: "lobby", room, ticket: "dev:bob", sid: "b" }, {}, { ping: false });
    const t0 = Date.now();
    expect((await b.closed(12_000)).code).toBe(4002);
    expect(Date.now() - t0).toBeLessThan(11_000);
    expect(joins(a)).toEqual([]);
    expect(leaves(a)).toEqual([]);
  }, 20_000);

  it("a connection that goes away before its first frame leaves no trace, even one that could have been a ghost", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "rec-hooks", room, ticket: "dev:alice", sid: "a" });
    const b = await connect({ tenant: "rec-hooks", room, ticket: "dev:bob", sid: "b" }, {}, { ping: false });
    b.close(4100); // abnormal, from the client: would leave a ghost announced after grace_s (1 s)
    await b.closed();
    await sleep(1_500);
    expect(joins(a)).toEqual([]);
    expect(leaves(a)).toEqual([]);
    expect(uniqueEvents(await originLog(room)).map((e) => `${e.kind}:${e.sid}`)).toEqual(["open:a"]);
    expect(await apiPresence("rec-hooks", room)).toEqual(["a"]);
  });

  it("a resume of an announced session is not announced again; silent for 10 s, it ends like any session", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "rec-hooks", room, ticket: "dev:alice", sid: "a" });
    const b = await connect({ tenant: "rec-hooks", room, ticket: "dev:bob", sid: "b" });
    expect((await a.next((e) => e.type === "presence" && e.data.event === "join")).data.sid).toBe("b");
    b.close(4100); // a ghost, within its grace
    await b.closed();
    const { epoch, off } = b.authed.data;
    const b2 = await connect({ tenant: "rec-hooks", room, ticket: "dev:bob", sid: "b", resume: `${epoch}.${off}` }, {}, { ping: false });
    expect(b2.authed.data.resumed).toBe(true);
    await sleep(1_500); // past grace_s: the ghost came back, nothing to announce
    expect(joins(a)).toEqual([]);
    expect(leaves(a)).toEqual([]);
    expect(await apiPresence("rec-hooks", room)).toEqual(["a", "b"]);
    await runInDurableObject(stub("rec-hooks", room), (o: RoomObject) => runHousekeeping(o, Date.now() + 10_100));
    expect((await b2.closed()).code).toBe(4002);
    expect((await a.next((e) => e.type === "presence" && e.data.event === "leave")).data.sid).toBe("b");
  });
});
