import type { DirectoryObject } from "./governance/directory.ts";
import type { MetricsObject } from "./observability/aggregator.ts";
import type { RoomObject } from "./room/room.ts";

/** Bindings and vars of the Worker (wrangler.toml). Secrets are read by the names the policies give. */
export interface Env {
  ROOMS: DurableObjectNamespace<RoomObject>;
  /** Session directories: one per tenant, `t/<tenant>` (src/governance). */
  DIRECTORY: DurableObjectNamespace<DirectoryObject>;
  /** The metrics aggregator (src/observability/aggregator.ts): METRICS_SHARDS objects named `metrics/<n>`. */
  METRICS: DurableObjectNamespace<MetricsObject>;
  /** "1" only under `npm start`: admits `dev:<user>` tickets. Never set in a deployed config. */
  WSPRISM_ALLOW_DEV_AUTH?: string;
  /** Lowest log level written: debug | info (default) | warn | error. */
  WSPRISM_LOG_LEVEL?: string;
  /** Bearer token for GET /metrics, when set. */
  METRICS_TOKEN?: string;
}

/** Read a secret named by a policy (`secret_env`, `key_env`). Returns undefined when unset or empty. */
export function readSecret(env: Env, name: string | null | undefined): string | undefined {
  if (!name) return undefined;
  const value = (env as unknown as Record<string, unknown>)[name];
  return typeof value === "string" && value.length > 0 ? value : undefined;
}
