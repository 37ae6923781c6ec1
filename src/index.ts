/**
 * wsPrism edge gateway: the Worker entry point.
 *
 *   src/worker/       HTTP routes (Hono): upgrade checks, health
 *   src/auth/         ticket verification (jwt, dev)
 *   src/room/         the room Durable Object: sockets, policy, both lanes
 *   src/protocol/     wire codecs: ext envelopes, hot frames, codes
 *   src/policy/       compiled policies (generated from policies/*.yaml)
 *   src/governance/   sessions per user and tenant caps across rooms (directory objects)
 *   src/origin/       the origin bridge: durable webhooks, actions
 *   src/observability logs and counters
 */
import type { Env } from "./env.ts";
import { app } from "./worker/app.ts";

export { DirectoryObject } from "./governance/directory.ts";
export { MetricsObject } from "./observability/aggregator.ts";
export { RoomObject } from "./room/room.ts";

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
} satisfies ExportedHandler<Env>;
