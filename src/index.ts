/**
 * wsPrism edge gateway: the Worker entry point.
 *
 *   src/worker/       HTTP routes (Hono): upgrade checks, health
 *   src/auth/         ticket verification (jwt, dev)
 *   src/room/         the room Durable Object: sockets, policy, both lanes
 *   src/protocol/     wire codecs: ext envelopes, hot frames, codes
 *   src/policy/       compiled policies (generated from policies/*.yaml)
 *   src/governance/   session identity and caps across rooms (one directory object per tenant)
 *   src/origin/       the origin bridge: durable webhooks, answer parsing (room/ applies them)
 *   src/observability logs and counters
 */
import type { Env } from "./env.ts";
import { configureLogs } from "./observability/log.ts";
import { app } from "./worker/app.ts";

export { DirectoryObject } from "./governance/directory.ts";
export { MetricsObject } from "./observability/aggregator.ts";
export { RoomObject } from "./room/room.ts";

export default {
  fetch: (request, env, ctx) => {
    configureLogs(env.WSPRISM_LOG_LEVEL);
    return app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
