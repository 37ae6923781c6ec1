/**
 * `authed` carries the session's expiry (issue 19 item 9): `exp` in unix seconds
 * when the gateway knows it (a JWT's `exp`; an origin auth answer's `exp`, fresh
 * or from the cache), null otherwise (dev tickets, origin answers without one),
 * so that apps need not repeat what their origin already told the gateway.
 */
import { SignJWT } from "jose";
import { beforeEach, describe, expect, it } from "vitest";
import { _resetOriginAuthCache } from "../../src/auth/origin.ts";
import { script } from "../helpers/origin.ts";
import { connect, dev, uniqueRoom } from "../helpers/ws.ts";

const SECRET = "test-secret-that-is-at-least-32-bytes-long!";
const nowS = () => Math.floor(Date.now() / 1000);

beforeEach(() => _resetOriginAuthCache());

describe("authed carries exp", () => {
  it("from the JWT's exp", async () => {
    const exp = nowS() + 900;
    const token = await new SignJWT({ sub: "alice", aud: "wsprism-test", exp })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(SECRET));
    const c = await connect({ tenant: "jwt-t", room: uniqueRoom(), ticket: token }, { Origin: "https://app.example.com" });
    expect(c.authed.data).toMatchObject({ user: "alice", exp });
    c.close();
  });

  it("from the origin auth answer, fresh and then from the cache", async () => {
    const room = uniqueRoom("oa");
    const exp = nowS() + 600;
    await script(room, [{ status: 200, body: { user: "alice", exp } }]);
    const a = await connect({ tenant: "oauth", room, ticket: "opaque-1" });
    expect(a.authed.data).toMatchObject({ user: "alice", exp });
    const b = await connect({ tenant: "oauth", room, ticket: "opaque-1", sid: "other" });
    expect(b.authed.data).toMatchObject({ user: "alice", exp });
    a.close();
    b.close();
  });

  it("null when nobody said: an origin answer without exp, a dev ticket", async () => {
    const room = uniqueRoom("oa");
    await script(room, [{ status: 200, body: { user: "bob" } }]);
    const a = await connect({ tenant: "oauth", room, ticket: "opaque-2" });
    expect(a.authed.data.exp).toBeNull();
    const d = await dev("carol", uniqueRoom());
    expect(d.authed.data.exp).toBeNull();
    a.close();
    d.close();
  });
});
