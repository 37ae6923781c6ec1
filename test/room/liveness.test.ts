import { env } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { gateway } from "../../src/policy/index.ts";
import { runHousekeeping } from "../../src/room/housekeeping.ts";
import { RoomObject } from "../../src/room/room.ts";
import { connect, dev, uniqueRoom } from "../helpers/ws.ts";

const stub = (room: string, tenant = "lobby") => env.ROOMS.get(env.ROOMS.idFromName(`${tenant}/${room}`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ORIGIN = { Origin: "https://app.example.com" };
const secret = new TextEncoder().encode(env.TEST_JWT_SECRET);
const token = (sub: string, expInS: number) =>
  new SignJWT({ sub })
    .setProtectedHeader({ alg: "HS256" })
    .setAudience("wsprism-test")
    .setExpirationTime(Math.floor(Date.now() / 1000) + expInS)
    .sign(secret);

describe("idle timeout", () => {
  it("closes 4002 a socket with no frame and no heartbeat for idle_timeout_ms; a heartbeat keeps one alive", async () => {
    const room = uniqueRoom();
    const quiet = await dev("quiet", room);
    const pinger = await dev("pinger", room);
    await sleep(300);
    pinger.ws.send("ping");
    await pinger.next((e) => e.type === "pong");
    const since = Date.now() - 300; // both joined before this
    await runInDurableObject(stub(room), (o: RoomObject) => runHousekeeping(o, since + gateway.idle_timeout_ms + 150));
    expect((await quiet.closed()).code).toBe(4002);
    expect(pinger.closeEvent).toBeNull();
    // The pinger's last sign of life is its heartbeat, which never reached the object.
    await runInDurableObject(stub(room), (o: RoomObject) => runHousekeeping(o, Date.now() + gateway.idle_timeout_ms + 10));
    expect((await pinger.closed()).code).toBe(4002);
  });

  it("frames count as activity", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    await sleep(300);
    a.send({ v: 1, svc: "room", type: "join" });
    await a.nextOf("sys", "joined");
    await runInDurableObject(stub(room), (o: RoomObject) => runHousekeeping(o, Date.now() + gateway.idle_timeout_ms - 200));
    expect(a.closeEvent).toBeNull();
  });

  it("heartbeats never wake the room object", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    await evictDurableObject(stub(room), { webSockets: "hibernate" });
    const before = RoomObject.constructed;
    for (let i = 0; i < 5; i++) {
      a.ws.send("ping");
      await a.next((e) => e.type === "pong");
    }
    expect(RoomObject.constructed).toBe(before);
    a.send({ v: 1, svc: "room", type: "join" }); // a real frame does wake it
    await a.nextOf("sys", "joined");
    expect(RoomObject.constructed).toBe(before + 1);
  });

  it("the housekeeping alarm exists only while the room has sockets", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    expect(await runInDurableObject(stub(room), (o: RoomObject) => o.roomState.storage.getAlarm())).not.toBeNull();
    a.close();
    await a.closed();
    await sleep(50);
    await runInDurableObject(stub(room), (o: RoomObject) => runHousekeeping(o));
    expect(await runInDurableObject(stub(room), (o: RoomObject) => o.roomState.storage.getAlarm())).toBeNull();
  });
});

describe("JWT expiry on live sessions", () => {
  it("at exp the session gets sys.error AUTH_EXPIRED and close 4001", async () => {
    const c = await connect({ tenant: "jwt-t", room: uniqueRoom(), ticket: await token("alice", 1) }, ORIGIN);
    const err = await c.nextOf("sys", "error", 5000);
    expect(err.data.code).toBe("AUTH_EXPIRED");
    expect((await c.closed()).code).toBe(4001);
  });

  it("a sys:refresh with a fresh ticket for the same user keeps the session", async () => {
    const c = await connect({ tenant: "jwt-t", room: uniqueRoom(), ticket: await token("alice", 1) }, ORIGIN);
    c.send({ v: 1, svc: "sys", type: "refresh", flags: 4, seq: 1, data: { ticket: await token("alice", 600) } });
    expect((await c.nextOf("sys", "ack")).data).toEqual({ seq: 1 });
    await sleep(2500);
    expect(c.closeEvent).toBeNull();
  });

  it("a refresh with another user's ticket, or a bad one, is refused and the session still expires", async () => {
    const c = await connect({ tenant: "jwt-t", room: uniqueRoom(), ticket: await token("alice", 1) }, ORIGIN);
    c.send({ v: 1, svc: "sys", type: "refresh", seq: 2, data: { ticket: await token("mallory", 600) } });
    expect((await c.nextOf("sys", "error")).data).toMatchObject({ code: "AUTH_FAILED", seq: 2 });
    c.send({ v: 1, svc: "sys", type: "refresh", seq: 3, data: { ticket: "garbage" } });
    expect((await c.nextOf("sys", "error")).data).toMatchObject({ code: "AUTH_FAILED", seq: 3 });
    c.send({ v: 1, svc: "sys", type: "refresh", seq: 4, data: {} });
    expect((await c.nextOf("sys", "error")).data).toMatchObject({ code: "BAD_REQUEST", seq: 4 });
    expect((await c.nextOf("sys", "error", 5000)).data.code).toBe("AUTH_EXPIRED");
    expect((await c.closed()).code).toBe(4001);
  });
});
