/**
 * GET /metrics: the whole gateway's counters and gauges in the Prometheus text
 * format 0.0.4, read from the metrics aggregator (src/observability/aggregator.ts).
 *
 *  - When the `METRICS_TOKEN` secret is set, the request needs
 *    `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time);
 *    otherwise 401 AUTH_FAILED. Without the secret the route is open.
 *  - Every metric of the catalog gets its HELP and TYPE lines, and every
 *    tenant of the compiled policy its zero series, so dashboards and alerts
 *    see a series before the first event.
 *  - Only tenants of the compiled policy (and "-", the gateway itself) are
 *    shown: totals of a tenant removed from the policy disappear with it.
 *  - A shard that does not answer fails the scrape (503): partial sums would
 *    look like counter resets to Prometheus.
 *
 * Also here: the Worker-side counting of upgrades that never reach a room
 * (`withUpgradeMetrics`), including the handshake defender's refusals.
 */
import type { Context, Handler } from "hono";
import type { Env } from "../env.ts";
import { collect, recordWorkerMetric, type MetricsSnapshot } from "../observability/aggregator.ts";
import { log, newTraceId } from "../observability/log.ts";
import { CONTENT_TYPE, familiesFrom, parseSeriesKey, render, seriesKey } from "../observability/prometheus.ts";
import { secretsEqual } from "../origin/sign.ts";
import { gateway, getTenant, tenantIds, type TenantPolicy } from "../policy/index.ts";
import { jsonError } from "../protocol/http.ts";
import { handshakeRejections, type HandshakeRejectReason } from "./handshake.ts";
import { refusedStatus } from "./refusal.ts";

type Ctx = Context<{ Bindings: Env }>;

/** Label value for things that belong to no tenant (the handshake defender, unknown tenants). */
export const NO_TENANT = "-";

/** A tenant label value: the id when the compiled policy has it, else NO_TENANT. Never echoes client input. */
export function tenantLabel(raw: string | null | undefined): string {
  return raw && getTenant(raw) ? raw : NO_TENANT;
}

export async function metricsRoute(c: Ctx): Promise<Response> {
  const token = c.env.METRICS_TOKEN;
  if (token) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(c.req.header("Authorization") ?? "");
    if (!m || !(await secretsEqual(m[1]!, token))) {
      const res = jsonError(401, "AUTH_FAILED", "missing or wrong bearer token");
      res.headers.set("WWW-Authenticate", 'Bearer realm="metrics"');
      return res;
    }
  }
  let snap: MetricsSnapshot;
  try {
    snap = await collect(c.env);
  } catch (err) {
    log("error", "metrics.scrape_failed", { trace_id: newTraceId(), error: String(err).slice(0, 200) });
    return jsonError(503, "INTERNAL", "metrics aggregator unavailable", 5);
  }
  return new Response(exposition(snap), {
    headers: { "content-type": CONTENT_TYPE, "cache-control": "no-store" },
  });
}

/** The exposition text of a snapshot: zero series for the policy's tenants, then the aggregated values. */
export function exposition(snap: MetricsSnapshot, tenants: readonly string[] = tenantIds()): string {
  const allowed = new Set([...tenants, NO_TENANT]);
  const values = new Map<string, number>();
  for (const t of tenants) {
    const policy = getTenant(t);
    if (policy) for (const key of zeroSeries(policy)) values.set(key, 0);
  }
  if (gateway.handshake_limit.enabled) {
    for (const reason of ["handshake_ip", "handshake_global"] satisfies HandshakeRejectReason[]) {
      values.set(seriesKey("wsprism_handshake_rejections_total", { tenant: NO_TENANT, reason }), 0);
    }
  }
  for (const [key, v] of [...snap.counters, ...snap.gauges]) {
    const parsed = parseSeriesKey(key);
    if (!parsed) continue;
    const tenant = parsed.labels["tenant"];
    if (tenant !== undefined && !allowed.has(tenant)) continue;
    values.set(key, v);
  }
  return render(familiesFrom(values));
}

/** The series every tenant shows from the start, at 0. */
function zeroSeries(t: TenantPolicy): string[] {
  const tenant = t.id;
  const keys = [
    seriesKey("wsprism_ws_upgrades_total", { tenant, status: "101" }),
    seriesKey("wsprism_ws_sessions_active", { tenant }),
    seriesKey("wsprism_ext_messages_total", { tenant }),
    seriesKey("wsprism_policy_decisions_total", { tenant, lane: "ext", decision: "allow", reason: "ok" }),
    seriesKey("wsprism_decode_errors_total", { tenant, lane: "ext" }),
    seriesKey("wsprism_decode_errors_total", { tenant, lane: "hot" }),
  ];
  if (t.limits.max_users_per_room > 0) {
    keys.push(seriesKey("wsprism_handshake_rejections_total", { tenant, reason: "room_full" }));
  }
  const modes = new Set(t.hot_services.map(([, s]) => s.mode));
  if (modes.size > 0) keys.push(seriesKey("wsprism_policy_decisions_total", { tenant, lane: "hot", decision: "allow", reason: "ok" }));
  for (const mode of modes) keys.push(seriesKey("wsprism_hot_frames_total", { tenant, mode }));
  for (const [svc, s] of t.services) {
    if (s.kind !== "origin") continue;
    for (const outcome of ["ok", "retry", "rejected"]) {
      keys.push(seriesKey("wsprism_origin_requests_total", { tenant, svc, outcome }));
    }
    keys.push(seriesKey("wsprism_origin_retries_total", { tenant, svc }));
    keys.push(seriesKey("wsprism_origin_dead_letters_total", { tenant, svc }));
  }
  return keys;
}

// --- Worker-side upgrade counting ---------------------------------------------

/** Handshake defender refusals of this isolate already handed to the aggregator. */
const defenderSeen: Record<HandshakeRejectReason, number> = { handshake_global: 0, handshake_ip: 0 };

/**
 * Hand the handshake defender's new refusals (its per-isolate counts,
 * `handshakeRejections()`) to the aggregator as
 * `wsprism_handshake_rejections_total{tenant="-",reason}`. The defender guards
 * the gateway as a whole, before any tenant is known, hence tenant "-".
 */
export function syncHandshakeRejections(env: Env, ctx: Pick<ExecutionContext, "waitUntil"> | undefined): void {
  const now = handshakeRejections();
  for (const reason of Object.keys(defenderSeen) as HandshakeRejectReason[]) {
    const delta = now[reason] - defenderSeen[reason];
    defenderSeen[reason] = now[reason];
    if (delta > 0) recordWorkerMetric(env, ctx, "wsprism_handshake_rejections_total", { tenant: NO_TENANT, reason }, delta);
  }
}

function executionCtx(c: Ctx): Pick<ExecutionContext, "waitUntil"> | undefined {
  try {
    return c.executionCtx;
  } catch {
    return undefined; // app.request() without an execution context (tests)
  }
}

/**
 * Wrap the upgrade route: every answer other than 101 is counted as
 * `wsprism_ws_upgrades_total{tenant,status}` (tenant: the `tenant` query
 * parameter when the policy knows it, else "-"), and the handshake defender's
 * refusals are handed over. 101s are counted by the room that accepted them.
 * Usage in app.ts: `app.get("/v1/ws", withUpgradeMetrics(connect));`
 */
export function withUpgradeMetrics(handler: (c: Ctx) => Promise<Response>): Handler<{ Bindings: Env }> {
  return async (c) => {
    let res: Response;
    try {
      res = await handler(c);
    } catch (err) {
      count(c, 500);
      throw err;
    }
    const status = res.status === 101 ? refusedStatus.get(res) : res.status;
    if (status !== undefined) count(c, status); // a 101 is counted by its room; a refusal on a socket by its status
    return res;
  };
}

function count(c: Ctx, status: number): void {
  try {
    const ctx = executionCtx(c);
    syncHandshakeRejections(c.env, ctx);
    const tenant = tenantLabel(new URL(c.req.url).searchParams.get("tenant"));
    recordWorkerMetric(c.env, ctx, "wsprism_ws_upgrades_total", { tenant, status: String(status) });
  } catch (err) {
    log("error", "metrics.record_failed", { trace_id: "-", error: String(err).slice(0, 200) });
  }
}
