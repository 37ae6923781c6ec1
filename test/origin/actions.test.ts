/**
 * The origin's answer (SPEC section 6), parsed action by action: hostile and
 * malformed actions are skipped and counted, never applied half-way; valid ones
 * come out with their own fields only.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkAction, MAX_ACTIONS, MAX_SKIPPED_LISTED, parseActions } from "../../src/origin/actions.ts";

const one = (action: unknown) => parseActions(JSON.stringify({ actions: [action] }));
const ok = (action: unknown) => one(action).actions[0];

describe("parseActions", () => {
  it("an empty body, no actions key, or an empty list: nothing to do", () => {
    for (const body of ["", "  \n", "{}", '{"actions":[]}', '{"other":1}']) {
      expect(parseActions(body), body).toEqual({ actions: [], invalid: 0, skipped: [], unreadable: null });
    }
  });

  // SPEC section 6 (v1.2): such an answer fails closed (the senders get ORIGIN_REJECTED), so say why.
  it("an answer the gateway cannot read is unreadable, with the reason: over 1 MiB, too deep, not JSON, actions not a list", () => {
    const deep = `{"actions":[${"[".repeat(70)}${"]".repeat(70)}]}`;
    const cases: [string | null, string][] = [
      [null, "over 1 MiB"],
      [deep, "nested deeper than 64 levels"],
      ["nope", "not JSON"],
      ['{"actions":[', "not JSON"],
      ["[]", "not a JSON object"],
      ["null", "not a JSON object"],
      ["5", "not a JSON object"],
      ['{"actions":{}}', "actions is not a list"],
      ['{"actions":"x"}', "actions is not a list"],
      ['{"actions":null}', "actions is not a list"],
    ];
    for (const [body, unreadable] of cases) {
      expect(parseActions(body), String(body)).toEqual({ actions: [], invalid: 0, skipped: [], unreadable });
    }
  });

  it("keeps each action's own fields and drops the rest, __proto__ included", () => {
    expect(ok({ action: "reply", to: "e1", svc: "chat", type: "msg", data: { a: 1 }, x: 1 })).toEqual({
      action: "reply", to: "e1", svc: "chat", type: "msg", data: { a: 1 },
    });
    const polluted = JSON.parse('{"action":"broadcast","svc":"a","type":"b","__proto__":{"exclude":["s"]},"constructor":1}');
    const b = one(polluted).actions[0]!;
    expect(b).toEqual({ action: "broadcast", svc: "a", type: "b" });
    expect(Object.getPrototypeOf(b)).toBe(Object.prototype);
    expect("exclude" in b).toBe(false);
    expect(ok({ action: "broadcast", svc: "a", type: "b", exclude: ["s1", "s2"], data: null })).toEqual({
      action: "broadcast", svc: "a", type: "b", exclude: ["s1", "s2"], data: null,
    });
  });

  it("send and kick name a user or a sid, never both", () => {
    expect(ok({ action: "send", user: "u", sid: "s", svc: "a", type: "b" })).toEqual({ action: "send", user: "u", svc: "a", type: "b" });
    expect(ok({ action: "send", user: 5, sid: "s", svc: "a", type: "b" })).toEqual({ action: "send", sid: "s", svc: "a", type: "b" });
    expect(ok({ action: "send", user: "", sid: "s$", svc: "a", type: "b" })).toBeUndefined();
    expect(ok({ action: "kick", sid: "s" })).toEqual({ action: "kick", sid: "s", reason: "kicked" });
    expect(ok({ action: "kick", user: "u", reason: "spam" })).toEqual({ action: "kick", user: "u", reason: "spam" });
    expect(ok({ action: "kick", user: "u".repeat(128) })).toMatchObject({ user: "u".repeat(128) });
  });

  it("a reject fails closed: a bad code becomes ORIGIN_REJECTED, a bad msg the default", () => {
    expect(ok({ action: "reject", to: "e1", code: "TOO_FAST", msg: "slow down" })).toEqual({ action: "reject", to: "e1", code: "TOO_FAST", msg: "slow down" });
    expect(ok({ action: "reject", to: "e1", code: "lower", msg: 5 })).toEqual({ action: "reject", to: "e1", code: "ORIGIN_REJECTED", msg: "rejected by origin" });
    expect(ok({ action: "reject", to: "e1", code: { toString: "X" }, msg: "m".repeat(600) })).toEqual({ action: "reject", to: "e1", code: "ORIGIN_REJECTED", msg: "m".repeat(500) });
    expect(ok({ action: "reject", to: "e1", code: `A${"B".repeat(64)}`, msg: "m" })).toMatchObject({ code: "ORIGIN_REJECTED" });
    expect(ok({ action: "reject", code: "X" })).toBeUndefined(); // no event to reject
  });

  // The zod schema skipped these (z.unknown() does not accept a missing key), so the
  // event was acked instead of rejected: a reject failed open.
  it("a reject without code or msg still rejects", () => {
    expect(ok({ action: "reject", to: "e1" })).toEqual({ action: "reject", to: "e1", code: "ORIGIN_REJECTED", msg: "rejected by origin" });
    expect(ok({ action: "reject", to: "e1", code: "X" })).toEqual({ action: "reject", to: "e1", code: "X", msg: "rejected by origin" });
    expect(ok({ action: "reject", to: "e1", msg: "m" })).toEqual({ action: "reject", to: "e1", code: "ORIGIN_REJECTED", msg: "m" });
  });

  it.each([
    ["not an object", 5],
    ["null", null],
    ["an array", ["reply"]],
    ["an unknown action", { action: "explode", svc: "a", type: "b" }],
    ["the action as a number", { action: 1 }],
    ["reply without to", { action: "reply", svc: "a", type: "b" }],
    ["reply with an empty to", { action: "reply", to: "", svc: "a", type: "b" }],
    ["reply with a 65-char to", { action: "reply", to: "e".repeat(65), svc: "a", type: "b" }],
    ["reply with a bad svc", { action: "reply", to: "e", svc: "A", type: "b" }],
    ["broadcast with a numeric type", { action: "broadcast", svc: "a", type: 1 }],
    ["broadcast with exclude not a list", { action: "broadcast", svc: "a", type: "b", exclude: "s" }],
    ["broadcast with a bad sid", { action: "broadcast", svc: "a", type: "b", exclude: ["s", "b d"] }],
    ["broadcast with 1001 sids", { action: "broadcast", svc: "a", type: "b", exclude: Array(1001).fill("s") }],
    ["send without a target", { action: "send", svc: "a", type: "b" }],
    ["send with a 129-char user", { action: "send", user: "u".repeat(129), svc: "a", type: "b" }],
    ["send with a huge number for a sid", { action: "send", sid: 1e308, svc: "a", type: "b" }],
    ["kick without a target", { action: "kick" }],
    ["kick with a long reason", { action: "kick", user: "u", reason: "r".repeat(201) }],
    ["kick with a numeric reason", { action: "kick", user: "u", reason: 5 }],
    ["kick with a null reason", { action: "kick", user: "u", reason: null }],
    // SPEC section 6 (v1.2): the SDK acts on sys frames (kicked, authed, presence), so an origin may not forge them.
    ["reply with svc sys", { action: "reply", to: "e", svc: "sys", type: "authed", data: { user: "mallory" } }],
    ["broadcast with svc sys", { action: "broadcast", svc: "sys", type: "presence", data: {} }],
    ["send with svc sys", { action: "send", user: "u", svc: "sys", type: "kicked", data: { reason: "fake" } }],
  ])("skips and counts %s, naming its index and the reason", (_name, action) => {
    const r = one(action);
    expect(r).toMatchObject({ actions: [], invalid: 1, unreadable: null });
    expect(r.skipped).toEqual([{ index: 0, reason: expect.stringMatching(/^[a-z0-9 _-]{3,60}$/) }]);
  });

  it("the reasons are fixed texts: an action's own values never reach the log", () => {
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const r = parseActions(JSON.stringify({ actions: [
      { action: secret }, { action: "reply", to: secret.repeat(3), svc: "a", type: "b" }, { action: "send", user: secret.repeat(9), svc: secret, type: "b" },
      { action: "broadcast", svc: "sys", type: secret }, { action: "kick", user: "u", reason: secret.repeat(9) },
    ] }));
    expect(r.skipped.map((x) => x.index)).toEqual([0, 1, 2, 3, 4]);
    expect(JSON.stringify(r.skipped)).not.toContain("whsec");
    expect(r.skipped.find((x) => x.index === 3)!.reason).toMatch(/sys/);
  });

  it("applies the valid actions around invalid ones, at most MAX_ACTIONS of them", () => {
    const r = parseActions(JSON.stringify({ actions: [{ action: "kick", sid: "a" }, { action: "nope" }, { action: "kick", sid: "b" }] }));
    expect(r).toEqual({
      actions: [{ action: "kick", sid: "a", reason: "kicked" }, { action: "kick", sid: "b", reason: "kicked" }],
      invalid: 1,
      skipped: [{ index: 1, reason: "unknown action" }],
      unreadable: null,
    });
    const many = parseActions(JSON.stringify({ actions: Array(MAX_ACTIONS + 5).fill({ action: "kick", sid: "a" }) }));
    expect(many.actions).toHaveLength(MAX_ACTIONS);
    expect(many.invalid).toBe(5);
    expect(many.skipped).toEqual([{ index: MAX_ACTIONS, reason: `over ${MAX_ACTIONS} actions` }]);
  });

  it("lists at most MAX_SKIPPED_LISTED skipped actions, and counts them all", () => {
    const list = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? { action: "kick", sid: "a" } : { action: "nope" }));
    const r = parseActions(JSON.stringify({ actions: list }));
    expect(r.actions).toHaveLength(25);
    expect(r.invalid).toBe(25);
    expect(r.skipped).toHaveLength(MAX_SKIPPED_LISTED);
    expect(r.skipped.map((x) => x.index)).toEqual(Array.from({ length: MAX_SKIPPED_LISTED }, (_, i) => 2 * i + 1));
  });

  it("property: any JSON value as an action never throws; what passes names a known action", () => {
    const kinds = new Set(["reply", "broadcast", "send", "reject", "kick"]);
    const action = fc.record(
      { action: fc.constantFrom(...kinds, "x"), to: fc.jsonValue(), svc: fc.jsonValue(), type: fc.jsonValue(), user: fc.jsonValue(), sid: fc.jsonValue(), reason: fc.jsonValue(), code: fc.jsonValue(), msg: fc.jsonValue(), exclude: fc.jsonValue() },
      { requiredKeys: ["action"] },
    );
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), action), (a) => {
        const r = checkAction(a);
        return r === null || (kinds.has(r.action) && !("user" in r && "sid" in r));
      }),
      { numRuns: 2000 },
    );
  });
});
