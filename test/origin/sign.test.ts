import fc from "fast-check";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { newMessageId, secretsEqual, signWebhook, webhookHeaders } from "../../src/origin/sign.ts";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET = "whsec_" + btoa("another secret of 24 b!!");

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

describe("webhookHeaders verifies with the standardwebhooks library", () => {
  const body = JSON.stringify({ tenant: "acme", room: "match:1", events: [{ id: "evt_1", kind: "message" }] });

  it("sets the three headers and the JSON content type", async () => {
    const now = Date.now();
    const h = await webhookHeaders(SECRET, "msg_1", body, now);
    expect(h["content-type"]).toBe("application/json");
    expect(h["webhook-id"]).toBe("msg_1");
    expect(h["webhook-timestamp"]).toBe(String(Math.floor(now / 1000)));
    expect(h["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+={0,2}$/);
  });

  it("passes with the right secret", async () => {
    const h = await webhookHeaders(SECRET, newMessageId(), body);
    expect(new Webhook(SECRET).verify(body, h)).toEqual(JSON.parse(body));
  });

  it("produces exactly the library's signature", async () => {
    const ts = 1_764_259_200;
    expect(await signWebhook(SECRET, "msg_x", ts, body)).toBe(new Webhook(SECRET).sign("msg_x", new Date(ts * 1000), body));
  });

  it("takes a secret without the whsec_ prefix as base64 too", async () => {
    const h = await webhookHeaders(SECRET.slice("whsec_".length), "msg_2", body);
    expect(() => new Webhook(SECRET).verify(body, h)).not.toThrow();
  });

  it("fails on a tampered body", async () => {
    const h = await webhookHeaders(SECRET, "msg_3", body);
    expect(() => new Webhook(SECRET).verify(body.replace("acme", "evil"), h)).toThrow(/signature/i);
    expect(() => new Webhook(SECRET).verify(body + " ", h)).toThrow(/signature/i);
  });

  it("fails with the wrong secret", async () => {
    const h = await webhookHeaders(SECRET, "msg_4", body);
    expect(() => new Webhook(OTHER_SECRET).verify(body, h)).toThrow(/signature/i);
    const h2 = await webhookHeaders(OTHER_SECRET, "msg_4", body);
    expect(() => new Webhook(SECRET).verify(body, h2)).toThrow(/signature/i);
  });

  it("fails with another id or timestamp", async () => {
    const h = await webhookHeaders(SECRET, "msg_5", body);
    expect(() => new Webhook(SECRET).verify(body, { ...h, "webhook-id": "msg_6" })).toThrow(/signature/i);
    const ts = String(Number(h["webhook-timestamp"]) - 1);
    expect(() => new Webhook(SECRET).verify(body, { ...h, "webhook-timestamp": ts })).toThrow(/signature/i);
  });

  it("an old timestamp is refused by the library's replay window", async () => {
    const h = await webhookHeaders(SECRET, "msg_7", body, Date.now() - 10 * 60_000);
    expect(() => new Webhook(SECRET).verify(body, h)).toThrow(/too old/i);
  });

  it("rejects a secret that is not base64", async () => {
    await expect(webhookHeaders("whsec_not base64!!", "msg_8", body)).rejects.toThrow();
  });

  it("property: any body, id and secret round-trip through the library's verify", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: "binary", maxLength: 2000 }),
        fc.string({ minLength: 1, maxLength: 80 }),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        async (payload, id, key) => {
          const secret = `whsec_${toBase64(key)}`;
          const h = await webhookHeaders(secret, id, payload);
          expect(() => new Webhook(secret).verify(payload, h, { jsonParse: false })).not.toThrow();
        },
      ),
      { numRuns: 200 },
    );
  });

  it("property: a body changed in any way fails", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 500 }), fc.string({ minLength: 1, maxLength: 20 }), async (payload, extra) => {
        const h = await webhookHeaders(SECRET, "msg_p", payload);
        expect(() => new Webhook(SECRET).verify(payload + extra, h, { jsonParse: false })).toThrow();
      }),
      { numRuns: 100 },
    );
  });
});

describe("newMessageId", () => {
  it("is the prefix and 26 base32 chars, unique", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const id = newMessageId();
      expect(id).toMatch(/^msg_[0-9a-hjkmnp-tv-z]{26}$/);
      ids.add(id);
    }
    expect(ids.size).toBe(500);
    expect(newMessageId("evt")).toMatch(/^evt_[0-9a-z]{26}$/);
  });
});

describe("secretsEqual", () => {
  it.each([
    ["equal", "test-api-key-0123456789", "test-api-key-0123456789", true],
    ["both empty", "", "", true],
    ["one char off", "test-api-key-0123456789", "test-api-key-0123456788", false],
    ["prefix", "test-api-key", "test-api-key-0123456789", false],
    ["longer", "test-api-key-0123456789x", "test-api-key-0123456789", false],
    ["empty presented", "", "test-api-key-0123456789", false],
    ["empty expected", "test-api-key-0123456789", "", false],
    ["case", "ABC", "abc", false],
    ["unicode", "clé-🔑", "clé-🔑", true],
  ])("%s", async (_name, a, b, expected) => {
    expect(await secretsEqual(a, b)).toBe(expected);
  });

  it("property: equal exactly when the strings are equal", async () => {
    await fc.assert(
      // b is a itself, a with one character changed, a prefix or an extension of a, or anything: equal pairs are drawn often.
      fc.asyncProperty(
        fc.string({ minLength: 1 }).chain((a) =>
          fc.tuple(
            fc.constant(a),
            fc.oneof(fc.constant(a), fc.nat(a.length - 1).map((i) => a.slice(0, i) + String.fromCharCode(a.charCodeAt(i) ^ 1) + a.slice(i + 1)), fc.nat(a.length).map((n) => a.slice(0, n)), fc.string().map((x) => a + x), fc.string()),
          ),
        ),
        async ([a, b]) => {
          expect(await secretsEqual(a, b)).toBe(a === b);
          expect(await secretsEqual(a, a)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
