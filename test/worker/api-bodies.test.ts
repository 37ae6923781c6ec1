/**
 * The HTTP API's body checks, message by message (SPEC section 7: a schema
 * violation is 400 BAD_REQUEST): wrong types, unknown keys, missing fields,
 * huge values, prototype keys. The messages are the zod schema's (its English
 * wording), except that a field present with the wrong type is no longer
 * called "missing". None of these bodies reaches the room object.
 */
import { exports } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { describeIssue } from "../../src/protocol/check.ts";
import { checkKickBody, checkMessageBody } from "../../src/worker/api-bodies.ts";

const KEY = "test-api-key-0123456789";

async function refusal(endpoint: string, body: string): Promise<{ status: number; code: string; msg: string }> {
  const res = await exports.default.fetch(`http://gw.test/v1/tenants/hooks/rooms/bodies/${endpoint}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body,
  });
  const json = (await res.json()) as { code: string; msg: string };
  return { status: res.status, code: json.code, msg: json.msg };
}

const M = '"svc":"a","type":"b"';
const sids = (n: number, sid = "s") => JSON.stringify(Array(n).fill(sid));

describe("POST messages: the error for each bad body", () => {
  it.each([
    ["{}", "missing svc"],
    ['{"svc":"a"}', "missing type"],
    ['{"svc":"sys","type":"b"}', "svc: svc sys is reserved for the gateway"],
    ['{"svc":"A","type":"b","q":1}', "svc: must match ^[a-z0-9_-]{1,32}$"],
    ['{"svc":"a","type":"b c"}', "type: must match ^[a-z0-9_-]{1,32}$"],
    [`{${M},"to":{}}`, "to: give exactly one of user or sid"],
    [`{${M},"to":{"user":"u","sid":"s"}}`, "to: give exactly one of user or sid"],
    [`{${M},"to":{"user":"@x"}}`, "to.user: user ids starting with @ are reserved"],
    [`{${M},"to":{"user":""}}`, "to.user: must be 1 to 128 characters without control characters"],
    [`{${M},"to":{"user":"${"u".repeat(129)}"}}`, "to.user: must be 1 to 128 characters without control characters"],
    [`{${M},"to":{"user":"a\\u0007"}}`, "to.user: must be 1 to 128 characters without control characters"],
    [`{${M},"to":{"sid":"a b"}}`, "to.sid: must match ^[A-Za-z0-9_-]{1,64}$"],
    [`{${M},"to":{"x":1}}`, 'unknown field "x"'],
    [`{${M},"to":{"user":"u","__proto__":{"sid":"s"}}}`, 'unknown field "__proto__"'],
    [`{${M},"exclude":["$"]}`, "exclude.0: must match ^[A-Za-z0-9_-]{1,64}$"],
    [`{${M},"exclude":${sids(1001)}}`, "exclude: Too big: expected array to have <=1000 items"],
    // the length is checked before the items: a long list of bad sids is not read
    [`{${M},"exclude":${sids(1001, "$")}}`, "exclude: Too big: expected array to have <=1000 items"],
    [`{${M},"q":1}`, 'unknown field "q"'],
    [`{${M},"constructor":1,"__proto__":2}`, 'unknown field "constructor", "__proto__"'],
    [`{${M},"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}`, 'unknown field "a", "b", "c", "d", "e"'],
    [`{${M},"${"k".repeat(100)}":1}`, `unknown field "${"k".repeat(64)}"`],
  ])("%s -> %s", async (body, msg) => {
    expect(await refusal("messages", body)).toEqual({ status: 400, code: "BAD_REQUEST", msg });
  });

  // zod reported these as "missing <field>" (its issues do not carry the input).
  it.each([
    ["[]", "body: Invalid input: expected object, received array"],
    ["null", "body: Invalid input: expected object, received null"],
    ['"x"', "body: Invalid input: expected object, received string"],
    ['{"svc":1,"type":"b"}', "svc: Invalid input: expected string, received number"],
    ['{"svc":"a","type":null}', "type: Invalid input: expected string, received null"],
    [`{${M},"to":5}`, "to: Invalid input: expected object, received number"],
    [`{${M},"to":["u"]}`, "to: Invalid input: expected object, received array"],
    [`{${M},"to":{"user":1e400}}`, "to.user: Invalid input: expected string, received number"],
    [`{${M},"exclude":"s"}`, "exclude: Invalid input: expected array, received string"],
    [`{${M},"exclude":{"0":"s"}}`, "exclude: Invalid input: expected array, received object"],
    [`{${M},"exclude":["s",false]}`, "exclude.1: Invalid input: expected string, received boolean"],
  ])("present with the wrong type: %s -> %s", async (body, msg) => {
    expect(await refusal("messages", body)).toEqual({ status: 400, code: "BAD_REQUEST", msg });
  });
});

describe("POST kick: the error for each bad body", () => {
  it.each([
    ["{}", "body: give exactly one of user or sid"],
    ['{"user":"u","sid":"s"}', "body: give exactly one of user or sid"],
    ['{"user":"@u"}', "user: user ids starting with @ are reserved"],
    ['{"sid":"$"}', "sid: must match ^[A-Za-z0-9_-]{1,64}$"],
    [`{"user":"u","reason":"${"r".repeat(201)}"}`, "reason: Too big: expected string to have <=200 characters"],
    ['{"user":"u","q":1}', 'unknown field "q"'],
    ['{"q":1}', 'unknown field "q"'],
    ['{"user":"u","__proto__":{"sid":"s"}}', 'unknown field "__proto__"'],
    ['{"user":5}', "user: Invalid input: expected string, received number"],
    ['{"user":"u","reason":5}', "reason: Invalid input: expected string, received number"],
    ['{"sid":["s"]}', "sid: Invalid input: expected string, received array"],
    ["[]", "body: Invalid input: expected object, received array"],
  ])("%s -> %s", async (body, msg) => {
    expect(await refusal("kick", body)).toEqual({ status: 400, code: "BAD_REQUEST", msg });
  });
});

describe("body checks on arbitrary JSON", () => {
  it("property: never throw, give a bounded message, and keep only known keys", () => {
    const keys = ["svc", "type", "data", "to", "exclude", "user", "sid", "reason", "__proto__", "constructor", "x"];
    const body = fc.dictionary(fc.constantFrom(...keys), fc.jsonValue(), { maxKeys: 6 });
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), body), (b) => {
        for (const r of [checkMessageBody(b), checkKickBody(b)]) {
          if (!r.ok) {
            if (describeIssue(r.issue, "body").length > 500) return false;
          } else if (Object.keys(r.value).some((k) => !keys.slice(0, 8).includes(k))) return false;
        }
        return true;
      }),
      { numRuns: 2000 },
    );
  });
});
