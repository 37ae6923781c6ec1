import { env, exports } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { Env } from "../../src/env.ts";
import { collect, sinkFor, type FlushBatch, type MetricsSink } from "../../src/observability/aggregator.ts";
import { CATALOG, seriesKey } from "../../src/observability/prometheus.ts";
import { tenantIds } from "../../src/policy/index.ts";
import { app } from "../../src/worker/app.ts";
import { connect } from "../../src/worker/connect.ts";
import { checkHandshake } from "../../src/worker/handshake.ts";
import { exposition, syncHandshakeRejections, tenantLabel, withUpgradeMetrics } from "../../src/worker/metrics.ts";

const scrape = () => exports.default.fetch("http://gw.test/metrics");

/** Send batches to the real /metrics shard of a new source. */
async function push(deltas: Array<[string, number]>, gauges?: Array<[string, number]>): Promise<void> {
  const source = `r_test_${crypto.randomUUID()}`;
  const batch: FlushBatch = { source, seq: 1, at: Date.now(), deltas, ...(gauges ? { gauges } : {}) };
  await (sinkFor(env, source) as MetricsSink).add([batch]);
}

async function total(key: string): Promise<number> {
  const s = await collect(env);
  return new Map([...s.counters, ...s.gauges]).get(key) ?? 0;
}

/** The value of one series in an exposition, or undefined. */
function valueIn(text: string, key: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${key} `));
  return line === undefined ? undefined : Number(line.slice(key.length + 1));
}

describe("GET /metrics", () => {
  it("serves the Prometheus text format with every metric's HELP and TYPE and zero series per tenant", async () => {
    const res = await scrape();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    for (const [name, info] of Object.entries(CATALOG)) {
      expect(text).toContain(`# HELP ${name} `);
      expect(text).toContain(`# TYPE ${name} ${info.type}\n`);
    }
    for (const tenant of tenantIds()) {
      expect(valueIn(text, seriesKey("wsprism_ext_messages_total", { tenant })), tenant).toBeTypeOf("number");
      expect(valueIn(text, seriesKey("wsprism_ws_sessions_active", { tenant })), tenant).toBeTypeOf("number");
      expect(valueIn(text, seriesKey("wsprism_ws_upgrades_total", { tenant, status: "101" })), tenant).toBeTypeOf("number");
    }
    // Series that follow from the policy: origin services, hot modes, room caps.
    expect(valueIn(text, seriesKey("wsprism_origin_requests_total", { tenant: "hooks", svc: "chat", outcome: "ok" }))).toBeTypeOf("number");
    expect(valueIn(text, seriesKey("wsprism_origin_dead_letters_total", { tenant: "hooks", svc: "slow" }))).toBeTypeOf("number");
    expect(valueIn(text, seriesKey("wsprism_origin_requests_total", { tenant: "hooks", svc: "notify", outcome: "ok" }))).toBeUndefined();
    expect(valueIn(text, seriesKey("wsprism_hot_frames_total", { tenant: "lobby", mode: "state" }))).toBeTypeOf("number");
    expect(valueIn(text, seriesKey("wsprism_handshake_rejections_total", { tenant: "jwt-t", reason: "room_full" }))).toBeTypeOf("number");
    // Every sample line is `name{...} value` or `name value`.
    for (const line of text.trimEnd().split("\n")) {
      if (!line.startsWith("#")) expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/);
    }
  });

  it("shows the sums of every flushed source, gauges included, and hides tenants the policy does not know", async () => {
    const ext = seriesKey("wsprism_ext_messages_total", { tenant: "demo" });
    const sessions = seriesKey("wsprism_ws_sessions_active", { tenant: "lobby" });
    const before = { ext: await total(ext), sessions: await total(sessions) };
    await push([[ext, 2]], [[sessions, 3]]);
    await push([[ext, 5], [seriesKey("wsprism_ext_messages_total", { tenant: "not-in-policy" }), 1]], [[sessions, 4]]);
    const text = await (await scrape()).text();
    expect(valueIn(text, ext)).toBe(before.ext + 7);
    expect(valueIn(text, sessions)).toBe(before.sessions + 7);
    expect(text).not.toContain("not-in-policy");
  });

  it("needs the bearer token when METRICS_TOKEN is set (401 JSON otherwise)", async () => {
    const withToken = { ...env, METRICS_TOKEN: "s3cret-token" } as Env;
    const call = async (auth?: string) => {
      const ctx = createExecutionContext();
      const res = await app.fetch(new Request("http://gw.test/metrics", { headers: auth ? { Authorization: auth } : {} }), withToken, ctx);
      await waitOnExecutionContext(ctx);
      return res;
    };
    for (const bad of [undefined, "Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token-and-more", "Basic s3cret-token", "s3cret-token", "Bearer "]) {
      const res = await call(bad);
      expect(res.status, String(bad)).toBe(401);
      expect(res.headers.get("content-type")).toContain("application/json");
      expect(await res.json()).toMatchObject({ code: "AUTH_FAILED" });
    }
    const ok = await call("Bearer s3cret-token");
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain("# TYPE wsprism_ws_upgrades_total counter");
    expect((await call("bearer s3cret-token")).status).toBe(200);
    // Without the secret the route is open.
    expect((await scrape()).status).toBe(200);
  });
});

describe("Worker-side upgrade metrics", () => {
  it("counts non-101 answers by tenant (only tenants of the policy, else \"-\") and status", async () => {
    const a = new Hono<{ Bindings: Env }>();
    a.get("/v1/ws", withUpgradeMetrics(connect));
    const demo426 = seriesKey("wsprism_ws_upgrades_total", { tenant: "demo", status: "426" });
    const none400 = seriesKey("wsprism_ws_upgrades_total", { tenant: "-", status: "400" });
    const before = { demo426: await total(demo426), none400: await total(none400) };
    const ctx = createExecutionContext();
    expect((await a.fetch(new Request("http://gw.test/v1/ws?tenant=demo&room=r"), env, ctx)).status).toBe(426);
    const unknown = new Request("http://gw.test/v1/ws?tenant=evil-tenant&room=r&ticket=x", { headers: { Upgrade: "websocket" } });
    expect((await a.fetch(unknown, env, ctx)).status).toBe(400);
    await waitOnExecutionContext(ctx);
    expect(await total(demo426)).toBe(before.demo426 + 1);
    expect(await total(none400)).toBe(before.none400 + 1);
    const text = await (await scrape()).text();
    expect(text).not.toContain("evil-tenant");
  });

  it("hands the handshake defender's refusals to the aggregator under tenant \"-\"", async () => {
    const key = seriesKey("wsprism_handshake_rejections_total", { tenant: "-", reason: "handshake_ip" });
    const ctx0 = createExecutionContext();
    syncHandshakeRejections(env, ctx0); // take whatever this isolate counted so far
    await waitOnExecutionContext(ctx0);
    const before = await total(key);
    const limit = { enabled: true, global_rps: 1000, global_burst: 1000, per_ip_rps: 0.001, per_ip_burst: 1 };
    const req = new Request("http://gw.test/v1/ws", { headers: { "CF-Connecting-IP": "203.0.113.77" } });
    const now = Date.now();
    expect(checkHandshake(req, limit, now)).toBeNull();
    expect(checkHandshake(req, limit, now)?.status).toBe(429);
    expect(checkHandshake(req, limit, now)?.status).toBe(429);
    const ctx = createExecutionContext();
    syncHandshakeRejections(env, ctx);
    syncHandshakeRejections(env, ctx); // nothing new: counted once
    await waitOnExecutionContext(ctx);
    expect(await total(key)).toBe(before + 2);
  });

  it("tenantLabel never echoes an unknown value", () => {
    expect(tenantLabel("demo")).toBe("demo");
    expect(tenantLabel("nope")).toBe("-");
    expect(tenantLabel(null)).toBe("-");
    expect(tenantLabel("__proto__")).toBe("-");
  });

  it("exposition keeps zero series under real values and drops malformed keys", () => {
    const key = seriesKey("wsprism_ext_messages_total", { tenant: "demo" });
    const text = exposition({ counters: [[key, 42], ["garbage{", 1]], gauges: [] }, ["demo"]);
    expect(valueIn(text, key)).toBe(42);
    expect(valueIn(text, seriesKey("wsprism_ws_sessions_active", { tenant: "demo" }))).toBe(0);
    expect(text).not.toContain("garbage");
    expect(text).not.toContain('tenant="hooks"');
  });
});
