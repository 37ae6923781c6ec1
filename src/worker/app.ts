/**
 * The Worker's HTTP surface (Hono). Routes are small modules:
 *   GET /v1/ws      connect.ts  (upgrade, handshake checks, route to the room object)
 *   GET /healthz    liveness
 *   GET /readyz     policies loaded, no two jwt tenants share a secret, a room object answers
 *   GET /metrics    metrics.ts  (Prometheus text, from the metrics aggregator)
 */
import { Hono } from "hono";
import type { Env } from "../env.ts";
import { log, newTraceId } from "../observability/log.ts";
import { tenantCount } from "../policy/index.ts";
import { jsonError } from "../protocol/http.ts";
import { sharedSecrets } from "../auth/shared-secrets.ts";
import { api } from "./api.ts";
import { connect } from "./connect.ts";
import { metricsRoute, withUpgradeMetrics } from "./metrics.ts";

export const app = new Hono<{ Bindings: Env }>();

app.get("/v1/ws", withUpgradeMetrics(connect));
app.route("/v1/tenants", api);

app.get("/healthz", (c) => c.text("ok"));
app.get("/metrics", metricsRoute);

app.get("/readyz", async (c) => {
  try {
    if (tenantCount() === 0) return c.text("no policies loaded", 503);
    const shared = await sharedSecrets(c.env);
    if (shared.length > 0) {
      const pairs = shared.map((s) => s.tenants.join(" and ")).join("; ");
      return c.text(`tenants share a JWT secret, their tickets are refused: ${pairs} (see the auth.shared_secret log)`, 503);
    }
    const stub = c.env.ROOMS.get(c.env.ROOMS.idFromName("__readyz__"));
    const answer = await stub.ping();
    return answer === "pong" ? c.text("ready") : c.text("room object did not answer", 503);
  } catch {
    return c.text("room object did not answer", 503);
  }
});

app.notFound(() => jsonError(404, "BAD_REQUEST", "no such route"));

app.onError((err) => {
  log("error", "http.unhandled", { trace_id: newTraceId(), error: String(err) });
  return jsonError(500, "INTERNAL", "internal error");
});
