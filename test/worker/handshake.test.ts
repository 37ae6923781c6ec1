/**
 * The handshake defender (src/worker/handshake.ts): unit tests of checkHandshake
 * with an injected config and clock, then the route inside workerd.
 *
 * The module state is per isolate, which here is this test file; every test
 * starts from resetHandshakeState(). Route tests send their own CF-Connecting-IP
 * (TEST-NET addresses), so they never touch the "unknown" bucket.
 */
import { exports } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { gateway } from "../../src/policy/index.ts";
import {
  checkHandshake,
  type HandshakeLimit,
  handshakeRejections,
  ipKey,
  MAX_TRACKED_IPS,
  resetHandshakeState,
  trackedIps,
} from "../../src/worker/handshake.ts";
import { connect, upgrade, uniqueRoom, wsUrl } from "../helpers/ws.ts";

const T0 = 1_700_000_000_000;

function limit(over: Partial<HandshakeLimit> = {}): HandshakeLimit {
  return { enabled: true, global_rps: 1000, global_burst: 100_000, per_ip_rps: 1, per_ip_burst: 5, ...over };
}

function req(ip?: string): Request {
  const headers: Record<string, string> = { Upgrade: "websocket" };
  if (ip !== undefined) headers["CF-Connecting-IP"] = ip;
  return new Request("http://gw.test/v1/ws?tenant=demo&room=a", { headers });
}

/** n checks from `ip` at `now`: how many were admitted. */
function burst(ip: string | undefined, n: number, cfg: HandshakeLimit, now: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (checkHandshake(req(ip), cfg, now) === null) ok++;
  return ok;
}

async function expect429(res: Response | null, retryAfter?: number): Promise<void> {
  expect(res).not.toBeNull();
  expect(res!.status).toBe(429);
  expect(res!.headers.get("content-type")).toContain("application/json");
  const ra = Number(res!.headers.get("Retry-After"));
  expect(Number.isInteger(ra) && ra >= 1).toBe(true);
  if (retryAfter !== undefined) expect(ra).toBe(retryAfter);
  const body = (await res!.json()) as { code: string; msg: string };
  expect(body.code).toBe("RATE_LIMITED");
  expect(typeof body.msg).toBe("string");
}

beforeEach(() => resetHandshakeState());

describe("checkHandshake: per-IP bucket", () => {
  it("a burst from one IP gets 429 with Retry-After after per_ip_burst; another IP is still admitted", async () => {
    const cfg = limit({ per_ip_rps: 0.5, per_ip_burst: 5 });
    expect(burst("198.51.100.1", 5, cfg, T0)).toBe(5);
    await expect429(checkHandshake(req("198.51.100.1"), cfg, T0), 2); // one token every 2 s
    expect(handshakeRejections()).toEqual({ handshake_global: 0, handshake_ip: 1 });
    expect(checkHandshake(req("198.51.100.2"), cfg, T0)).toBeNull();
  });

  it("Retry-After is the time until the next token, rounded up to whole seconds", async () => {
    const cfg = limit({ per_ip_rps: 0.1, per_ip_burst: 1 });
    expect(checkHandshake(req("198.51.100.1"), cfg, T0)).toBeNull();
    await expect429(checkHandshake(req("198.51.100.1"), cfg, T0), 10);
    await expect429(checkHandshake(req("198.51.100.1"), cfg, T0 + 4_500), 6); // 0.45 token: 5.5 s left
  });

  it("refills over (injected) time: admitted again, exactly as many as refilled", async () => {
    const cfg = limit({ per_ip_rps: 2, per_ip_burst: 4 });
    expect(burst("198.51.100.1", 10, cfg, T0)).toBe(4);
    expect(checkHandshake(req("198.51.100.1"), cfg, T0 + 400)).not.toBeNull(); // 0.8 token
    expect(burst("198.51.100.1", 3, cfg, T0 + 1_000)).toBe(2); // 2 tokens after 1 s
    expect(burst("198.51.100.1", 10, cfg, T0 + 60_000)).toBe(4); // never more than the burst
  });

  it("a rejected attempt costs nothing: the retry after Retry-After succeeds", async () => {
    const cfg = limit({ per_ip_rps: 1, per_ip_burst: 1 });
    expect(burst("198.51.100.1", 50, cfg, T0)).toBe(1);
    const res = checkHandshake(req("198.51.100.1"), cfg, T0 + 10);
    await expect429(res, 1);
    expect(checkHandshake(req("198.51.100.1"), cfg, T0 + 1_000)).toBeNull();
    expect(handshakeRejections().handshake_ip).toBe(50);
  });

  it("requests without CF-Connecting-IP (or with garbage in it) share the one 'unknown' bucket", () => {
    const cfg = limit({ per_ip_burst: 3, per_ip_rps: 0.001 });
    expect(checkHandshake(req(), cfg, T0)).toBeNull();
    expect(checkHandshake(req("not an ip"), cfg, T0)).toBeNull();
    expect(checkHandshake(req("x".repeat(5000)), cfg, T0)).toBeNull();
    expect(checkHandshake(req(), cfg, T0)).not.toBeNull();
    expect(checkHandshake(req("1.2.3.4; drop table"), cfg, T0)).not.toBeNull();
    expect(trackedIps()).toBe(1);
    expect(checkHandshake(req("198.51.100.9"), cfg, T0)).toBeNull();
  });

  it("IPv6 addresses of one /64 share a bucket; other /64s do not", () => {
    const cfg = limit({ per_ip_burst: 2, per_ip_rps: 0.001 });
    expect(checkHandshake(req("2001:db8:1:2::1"), cfg, T0)).toBeNull();
    expect(checkHandshake(req("2001:DB8:1:2:ffff:ffff:ffff:ffff"), cfg, T0)).toBeNull();
    expect(checkHandshake(req("2001:db8:1:2:0:0:0:abcd"), cfg, T0)).not.toBeNull();
    expect(checkHandshake(req("2001:db8:1:3::1"), cfg, T0)).toBeNull();
  });
});

describe("ipKey", () => {
  it.each([
    [null, "unknown"],
    ["", "unknown"],
    ["203.0.113.7", "203.0.113.7"],
    [" 203.0.113.7 ", "203.0.113.7"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0db8:0000:0001:0002:0003:0004:0005", "2001:db8:0:1::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::", "fe80:0:0:0::/64"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["1:2:3:4:5:6:7:8:9", "unknown"],
    ["1::2::3", "unknown"],
    ["1:2:3:4::5:6:7:8", "unknown"],
    ["12345::", "unknown"],
    ["hello", "unknown"],
    ["a".repeat(100), "unknown"],
  ])("%j -> %s", (header, key) => {
    expect(ipKey(header)).toBe(key);
  });
});

describe("checkHandshake: global bucket", () => {
  it("limits across IPs, with Retry-After from the global refill", async () => {
    const cfg = limit({ global_rps: 0.25, global_burst: 5, per_ip_burst: 100 });
    for (let i = 0; i < 5; i++) expect(checkHandshake(req(`198.51.100.${i}`), cfg, T0)).toBeNull();
    await expect429(checkHandshake(req("198.51.100.200"), cfg, T0), 4);
    await expect429(checkHandshake(req("198.51.100.0"), cfg, T0), 4);
    expect(handshakeRejections()).toEqual({ handshake_global: 2, handshake_ip: 0 });
    expect(checkHandshake(req("198.51.100.201"), cfg, T0 + 4_000)).toBeNull(); // one token refilled
    expect(checkHandshake(req("198.51.100.202"), cfg, T0 + 4_000)).not.toBeNull();
  });

  it("one flooding IP is stopped by its own bucket and does not drain the global one", () => {
    const cfg = limit({ global_rps: 0.001, global_burst: 10, per_ip_rps: 0.001, per_ip_burst: 3 });
    expect(burst("198.51.100.66", 1000, cfg, T0)).toBe(3);
    expect(handshakeRejections()).toEqual({ handshake_global: 0, handshake_ip: 997 });
    for (let i = 0; i < 7; i++) expect(checkHandshake(req(`203.0.113.${i}`), cfg, T0)).toBeNull();
  });

  it("an upgrade the global bucket refuses keeps its per-IP token", () => {
    const cfg = limit({ global_rps: 1, global_burst: 1, per_ip_rps: 0.001, per_ip_burst: 1 });
    expect(checkHandshake(req("198.51.100.1"), cfg, T0)).toBeNull();
    expect(checkHandshake(req("198.51.100.2"), cfg, T0)).not.toBeNull(); // global
    expect(checkHandshake(req("198.51.100.2"), cfg, T0 + 1_000)).toBeNull(); // its one token was kept
    expect(handshakeRejections()).toEqual({ handshake_global: 1, handshake_ip: 0 });
  });
});

describe("checkHandshake: memory", () => {
  it("the IP map stays bounded under 50,000 distinct IPs", () => {
    const cfg = limit({ per_ip_rps: 0.001, per_ip_burst: 2 });
    for (let i = 0; i < 50_000; i++) {
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      expect(checkHandshake(req(ip), cfg, T0 + i)).toBeNull();
      expect(trackedIps()).toBeLessThanOrEqual(MAX_TRACKED_IPS);
    }
    expect(trackedIps()).toBe(MAX_TRACKED_IPS);
    expect(MAX_TRACKED_IPS).toBe(10_000);
  });

  it("least recently used entries are evicted first", () => {
    const cfg = limit({ per_ip_rps: 0.0001, per_ip_burst: 1 });
    const spam = (from: number, n: number) => {
      for (let i = from; i < from + n; i++) checkHandshake(req(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`), cfg, T0);
    };
    expect(checkHandshake(req("198.51.100.1"), cfg, T0)).toBeNull();
    spam(0, MAX_TRACKED_IPS / 2);
    expect(checkHandshake(req("198.51.100.1"), cfg, T0)).not.toBeNull(); // used: now the most recent
    spam(MAX_TRACKED_IPS / 2, MAX_TRACKED_IPS - 1); // evicts the first half, not 198.51.100.1
    expect(trackedIps()).toBe(MAX_TRACKED_IPS);
    expect(checkHandshake(req("198.51.100.1"), cfg, T0)).not.toBeNull(); // still remembered
    spam(2 * MAX_TRACKED_IPS, MAX_TRACKED_IPS); // now it is the oldest: evicted
    expect(checkHandshake(req("198.51.100.1"), cfg, T0)).toBeNull(); // forgotten (lossy past the cap)
  });

  it("buckets that refilled to full are dropped (idle addresses cost no memory)", () => {
    const cfg = limit({ per_ip_rps: 10, per_ip_burst: 5 });
    for (let i = 0; i < 100; i++) checkHandshake(req(`10.1.0.${i}`), cfg, T0);
    expect(trackedIps()).toBe(100);
    // 0.1 s later the buckets are full again (4 tokens + 10/s): every later check drops some.
    for (let i = 0; i < 10; i++) checkHandshake(req("198.51.100.1"), cfg, T0 + 100 + i);
    expect(trackedIps()).toBe(1);
  });

  it("a bucket that is not yet full is kept", () => {
    const cfg = limit({ per_ip_rps: 1, per_ip_burst: 5 });
    expect(burst("198.51.100.1", 5, cfg, T0)).toBe(5);
    for (let i = 0; i < 10; i++) checkHandshake(req(`10.2.0.${i}`), cfg, T0 + 4_000); // 4 of 5 tokens back
    expect(checkHandshake(req("198.51.100.1"), cfg, T0 + 4_000)).toBeNull();
    expect(trackedIps()).toBe(11);
  });
});

describe("checkHandshake: enabled:false", () => {
  it("admits everything and tracks nothing", () => {
    const cfg = limit({ enabled: false, global_burst: 1, per_ip_burst: 1 });
    expect(burst("198.51.100.1", 1000, cfg, T0)).toBe(1000);
    expect(burst(undefined, 1000, cfg, T0)).toBe(1000);
    expect(trackedIps()).toBe(0);
    expect(handshakeRejections()).toEqual({ handshake_global: 0, handshake_ip: 0 });
  });
});

describe("GET /v1/ws with the compiled demo policy", () => {
  const noTicket = () => wsUrl({ tenant: "demo", room: "storm" }); // admitted ones get a cheap 401

  it("the demo policy enables the defender with 20/s per IP, burst 40", () => {
    expect(gateway.handshake_limit).toEqual({
      enabled: true,
      global_rps: 500,
      global_burst: 1000,
      per_ip_rps: 20,
      per_ip_burst: 40,
    });
  });

  it("/healthz, /readyz and the HTTP API stay up during a storm of 100 attempts from one IP", async () => {
    const ip = "192.0.2.10";
    const start = Date.now();
    const storm = Array.from({ length: 100 }, () => upgrade(noTicket(), { "CF-Connecting-IP": ip }));
    const health = Array.from({ length: 20 }, () => exports.default.fetch("http://gw.test/healthz", { headers: { "CF-Connecting-IP": ip } }));
    const results = await Promise.all(storm);
    const healthRes = await Promise.all(health);
    const elapsedS = (Date.now() - start) / 1000;

    for (const h of healthRes) {
      expect(h.status).toBe(200);
      expect(await h.text()).toBe("ok");
    }
    const statuses = results.map((r) => r.status);
    const admitted = statuses.filter((s) => s === 401).length;
    const limited = statuses.filter((s) => s === 429).length;
    expect(admitted + limited).toBe(100);
    expect(admitted).toBeGreaterThanOrEqual(40);
    expect(admitted).toBeLessThanOrEqual(40 + Math.ceil(elapsedS * 20) + 1);
    expect(limited).toBeGreaterThan(0);
    await expect429(results[statuses.indexOf(429)]!, 1);
    expect(handshakeRejections().handshake_ip).toBe(limited);

    const ready = await exports.default.fetch("http://gw.test/readyz", { headers: { "CF-Connecting-IP": ip } });
    expect(ready.status).toBe(200);
    const api = await exports.default.fetch("http://gw.test/v1/tenants/demo/rooms/storm/presence", {
      headers: { "CF-Connecting-IP": ip, Authorization: "Bearer wrong" },
    });
    expect(api.status).not.toBe(429);
    // Not an upgrade: 426 comes first, the defender only guards upgrades.
    expect((await exports.default.fetch(noTicket(), { headers: { "CF-Connecting-IP": ip } })).status).toBe(426);
    // Another address is untouched by the storm and gets a real socket.
    const c = await connect({ tenant: "lobby", room: uniqueRoom(), ticket: "dev:alice" }, { "CF-Connecting-IP": "192.0.2.11" });
    expect(c.authed.data.user).toBe("alice");
    c.close();
  });

  it("the limited IP is admitted again after Retry-After", async () => {
    const ip = "192.0.2.20";
    let retryAfter = 0;
    for (let i = 0; i < 60 && retryAfter === 0; i++) {
      const res = await upgrade(noTicket(), { "CF-Connecting-IP": ip });
      if (res.status === 429) retryAfter = Number(res.headers.get("Retry-After"));
      else expect(res.status).toBe(401);
    }
    expect(retryAfter).toBe(1); // 20 tokens/s: the next one within a second
    await new Promise((r) => setTimeout(r, retryAfter * 1000));
    expect((await upgrade(noTicket(), { "CF-Connecting-IP": ip })).status).toBe(401);
  });
});
