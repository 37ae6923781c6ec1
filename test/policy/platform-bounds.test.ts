/**
 * SPEC v1.2 section 12, bounds the platform sets: a direct room is one Durable
 * Object, and the runtime holds at most 32,768 WebSockets per object. So
 * `max_users_per_room` above 32,768 fails the build, and a room already holding
 * that many sockets answers a newcomer 503 RESOURCE_EXHAUSTED (never 500).
 */
import { describe, expect, it } from "vitest";
import { compilePolicies } from "../../src/policy/compile.ts";
import { Members, MAX_SOCKETS, type Attachment } from "../../src/room/members.ts";

const policy = (n: number) => `version: 1
tenants:
  - id: big
    auth: { mode: dev }
    limits:
      max_users_per_room: ${n}
`;

describe("max_users_per_room and the runtime's sockets per object", () => {
  it("32,768 compiles; 32,769 fails the build at the key", () => {
    expect(compilePolicies([{ name: "p.yaml", text: policy(32_768) }]).ok).toBe(true);
    const r = compilePolicies([{ name: "p.yaml", text: policy(32_769) }]);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors.join("\n")).toMatch(/p\.yaml:6:\d+.*max_users_per_room/);
  });

  it("a room holding MAX_SOCKETS sockets refuses a newcomer with RESOURCE_EXHAUSTED, even with no cap set", () => {
    expect(MAX_SOCKETS).toBe(32_768);
    const sockets = Array.from({ length: MAX_SOCKETS }, (_, i) => {
      const att = { v: 1, tenant: "t", room: "r", user: `u${i}`, sid: `s${i}`, slot: i + 1, trace: "x", since: 0, exp: null, rl: { tokens: 1, ts: 0 } } satisfies Attachment;
      return { readyState: 1, deserializeAttachment: () => att } as unknown as WebSocket;
    });
    const members = new Members({ getWebSockets: () => sockets } as unknown as DurableObjectState);
    expect(members.place("new", "newcomer", 0)).toEqual({ ok: false, code: "RESOURCE_EXHAUSTED" });
    expect(members.place("s5", "u5", 0)).toMatchObject({ ok: true, slot: 6 }); // its own sid: a replacement, not a new socket
  });
});
