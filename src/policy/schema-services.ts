/**
 * The `services` (ext lane: broadcast or an origin) and `hot_services` (hot lane:
 * relay, echo or state) blocks of a tenant, with the schemas of their keys. Part of
 * the policy schema (schema.ts).
 */
import { z } from "zod";
import { SVC_RE } from "../protocol/codes.ts";
import {
  bool,
  BUILTIN_EXT_SERVICES,
  DEFAULTS,
  envName,
  expect,
  HOT_SVC_ID_RE,
  httpUrl,
  int,
  oneOf,
  show,
  strict,
} from "./schema-common.ts";

/** `recovery: true | false` of a service (SPEC section 10); omitted: the tenant's `recovery.enabled`. */
function serviceRecovery() {
  return bool().optional().meta({
    description:
      "Log this service's frames for resume (SPEC section 10), or not, whatever the tenant's recovery.enabled says. Default: the tenant's recovery.enabled.",
  });
}

export const BroadcastServiceSchema = strict({
  handler: z.literal("broadcast", { error: expect("broadcast (the only built-in handler)") }),
  recovery: serviceRecovery(),
});

const lifecycleEvent = oneOf(["open", "close", "message"]);

export const OriginServiceSchema = strict({
  url: httpUrl({ httpsUnlessLocal: false }).meta({ description: "The origin's webhook endpoint." }),
  secret_env: envName().meta({ description: "Name of the env var holding the whsec_ signing secret." }),
  events: z
    .array(lifecycleEvent, { error: expect("a list of open, close, message") })
    .min(1, { error: "expected at least one of: open, close, message" })
    .refine((list) => new Set(list).size === list.length, { error: "expected each of open, close, message at most once" })
    .default([...DEFAULTS.service.events])
    .meta({ description: "Which events this origin gets: open, close, message. Default [message].", uniqueItems: true }),
  timeout_ms: int(100, 60_000).default(DEFAULTS.service.timeout_ms).meta({
    description: "Timeout of one webhook POST. Default 5000.",
  }),
  batch_ms: int(0, 10_000).default(DEFAULTS.service.batch_ms).meta({
    description: "Events arriving within this window share one POST. 0 = no wait (default).",
  }),
  batch_max: int(1, 1000).default(DEFAULTS.service.batch_max).meta({
    description: "Most events in one POST. Default 50.",
  }),
  retry_for_s: int(1, 604_800).default(DEFAULTS.service.retry_for_s).meta({
    description: "Retry failed deliveries (5xx, 408, 429, timeouts) for this long. Default 300.",
  }),
  recovery: serviceRecovery(),
});

/** `{handler: broadcast}` or an origin. issues.ts picks the branch for error messages by the `handler` key. */
export const ServiceSchema = z.union([BroadcastServiceSchema, OriginServiceSchema]);

export const serviceName = z
  .string()
  .regex(SVC_RE, { error: (iss) => `expected a service name matching ${SVC_RE.source}, got ${show(iss.input)}` })
  .regex(new RegExp(`^(?!(?:${BUILTIN_EXT_SERVICES.join("|")})$)`), {
    error: (iss) => `"${String(iss.input)}" is a reserved service name (built in: ${BUILTIN_EXT_SERVICES.join(", ")})`,
  });

export const HotServiceSchema = z.discriminatedUnion(
  "mode",
  [
    strict({
      mode: z.literal("relay"),
      coalesce: bool().default(false).meta({
        description:
          "Pack the frames bound for one member while the room is busy into one batch frame, flushed when the room's pending work is done (no delay when idle). Default false.",
      }),
    }),
    strict({ mode: z.literal("echo") }),
    strict({
      mode: z.literal("state"),
      tick_hz: int(1, 120).default(DEFAULTS.hot_state.tick_hz).meta({
        description: "Batches of changed states per second. Default 20.",
      }),
    }),
  ],
  { error: expect("a mapping with mode: relay, echo or state") },
);

export const hotServiceId = z
  .string()
  .regex(HOT_SVC_ID_RE, { error: (iss) => `expected a hot svc_id, an integer 1..255 in decimal (0 is reserved for the gateway), got ${show(iss.input)}` });
