import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { connect, decodeOutbound, dev, uniqueRoom } from "../helpers/ws.ts";

const ORIGIN = { Origin: "https://app.example.com" }; // jwt-t has an allowed_origins list
const secret = new TextEncoder().encode(env.TEST_JWT_SECRET);
const token = (sub: string) =>
  new SignJWT({ sub }).setProtectedHeader({ alg: "HS256" }).setAudience("wsprism-test").setExpirationTime("5m").sign(secret);

describe("hot lane", () => {
  it("relay goes to every other member with SENDER_PRESENT and the sender's slot, payload unchanged", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    const c = await dev("carol", room);
    a.sendHot(1, 7, [9, 8, 7, 6]);
    for (const peer of [b, c]) {
      const bytes = await peer.nextBinary();
      expect(Array.from(bytes)).toEqual([1, 1, 7, 0x80, a.authed.data.slot, 0, 9, 8, 7, 6]);
    }
    expect((await a.quiet()).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it("relay keeps seq and puts the sender after it", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.sendHot(1, 255, [42], 0xdeadbeef);
    const f = decodeOutbound(await b.nextBinary())!;
    expect(f).toMatchObject({ svc: 1, op: 255, seq: 0xdeadbeef, sender: a.authed.data.slot, flags: 0x81 });
    expect(Array.from(f.payload)).toEqual([42]);
  });

  it("echo returns the frame to the sender only", async () => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.sendHot(2, 3, [1, 2, 3], 5);
    const f = decodeOutbound(await a.nextBinary())!;
    expect(f).toMatchObject({ svc: 2, op: 3, seq: 5, sender: a.authed.data.slot });
    expect(Array.from(f.payload)).toEqual([1, 2, 3]);
    expect((await b.quiet()).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it.each([
    ["shorter than 4 bytes", [1, 1, 0], "BAD_REQUEST"],
    ["SEQ_PRESENT but shorter than 8", [1, 1, 0, 1, 0, 0], "BAD_REQUEST"],
    ["version 2", [2, 1, 0, 0, 5], "UNSUPPORTED_VERSION"],
    ["svc not allowlisted", [1, 9, 0, 0], "NOT_ALLOWED"],
    ["empty frame", [], "BAD_REQUEST"],
  ])("%s answers sys.error %s under hot_error_mode sys_error", async (_n, bytes, code) => {
    const room = uniqueRoom();
    const a = await dev("alice", room);
    const b = await dev("bob", room);
    a.ws.send(new Uint8Array(bytes));
    expect((await a.nextOf("sys", "error")).data.code).toBe(code);
    expect((await b.quiet()).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it("NOT_ALLOWED echoes the hot seq", async () => {
    const a = await dev("alice", uniqueRoom());
    a.sendHot(9, 1, [], 77);
    expect((await a.nextOf("sys", "error")).data).toMatchObject({ code: "NOT_ALLOWED", seq: 77 });
  });

  it("opcode-level allowlist: 2:10 allowed, 2:11 not (jwt tenant)", async () => {
    // jwt-t allowlists "2:10" only: the opcode bitmap, not the svc_id, decides.
    const a = await connect({ tenant: "jwt-t", room: uniqueRoom(), ticket: await token("alice") }, ORIGIN);
    a.sendHot(2, 10, [7], 1); // echo service: comes back
    const f = decodeOutbound(await a.nextBinary())!;
    expect(f).toMatchObject({ svc: 2, op: 10, seq: 1 });
    expect(Array.from(f.payload)).toEqual([7]);
    a.sendHot(2, 11, [8], 2);
    expect((await a.nextOf("sys", "error")).data).toMatchObject({ code: "NOT_ALLOWED", seq: 2 });
    expect((await a.quiet(150)).filter((m) => m.kind === "binary")).toEqual([]);
  });

  it("hot_error_mode silent: a pair outside the allowlist is dropped without sys.error (quiet tenant)", async () => {
    const room = uniqueRoom();
    const a = await connect({ tenant: "quiet", room, ticket: "dev:alice" });
    const b = await connect({ tenant: "quiet", room, ticket: "dev:bob" });
    a.sendHot(2, 10, [1]); // svc 2 not allowlisted in `quiet` -> silently dropped
    a.sendHot(1, 200, [2]); // 1:* allowed
    const f = decodeOutbound(await b.nextBinary())!;
    expect(Array.from(f.payload)).toEqual([2]); // the dropped frame never reached bob
    const rest = await a.quiet(200);
    expect(rest).toEqual([]); // silent mode: no sys.error
  });

  it("a binary frame over max_frame_bytes closes 1009", async () => {
    const a = await dev("alice", uniqueRoom());
    a.sendHot(1, 1, new Uint8Array(65_536));
    expect((await a.closed()).code).toBe(1009);
  });
});
