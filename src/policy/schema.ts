/**
 * The policy file format (policies/*.yaml): one zod 4 schema, used both to validate
 * the YAML at build time (src/policy/compile.ts) and to generate the JSON Schema that
 * editors use (policies/policy.schema.json).
 *
 * Every object is strict (an unknown key is an error) and every optional key has its
 * default here, so the parsed output is complete. Error messages are written for
 * operators: "expected an integer between 64 and 1048576, got 10".
 *
 * The schema is split by concern: schema-common.ts (defaults, patterns, messages,
 * building blocks), schema-auth.ts, schema-limits.ts (limits and policy),
 * schema-recovery.ts (recovery) and schema-services.ts (services and hot_services,
 * with a service's own recovery key); this module holds the gateway
 * block, the tenant and the file, and re-exports the parts compile.ts and the tests use.
 *
 * Cross-field rules that need more than one key (allowlist entries that name a service,
 * unique tenant ids across files, one gateway block) live in checks.ts; output.ts
 * turns the parsed data into the CompiledPolicies shape of types.ts.
 *
 * This module is imported by the build script only (and by tests); the generated
 * module the Worker loads does not import zod.
 */
import { z } from "zod";
import { TENANT_RE } from "../protocol/codes.ts";
import { AuthSchema } from "./schema-auth.ts";
import { bool, DEFAULTS, envName, expect, int, ORIGIN_RE, positive, show, strict } from "./schema-common.ts";
import { LimitsSchema, PolicySchema, SessionsSchema } from "./schema-limits.ts";
import { RecoverySchema } from "./schema-recovery.ts";
import { HotServiceSchema, hotServiceId, serviceName, ServiceSchema } from "./schema-services.ts";

export {
  BUILTIN_EXT_SERVICES,
  DEFAULTS,
  EXT_ENTRY_RE,
  HOT_ENTRY_RE,
  HOT_SVC_ID_RE,
  looksLikeSecret,
  ORIGIN_RE,
  show,
  urlProblem,
} from "./schema-common.ts";
export { AuthSchema } from "./schema-auth.ts";
export { LimitsSchema, PolicySchema, SessionsSchema } from "./schema-limits.ts";
export { RecoverySchema } from "./schema-recovery.ts";
export { BroadcastServiceSchema, HotServiceSchema, OriginServiceSchema, ServiceSchema } from "./schema-services.ts";

/* ------------------------------------------------------------------ gateway */

export const HandshakeLimitSchema = strict({
  enabled: bool().default(DEFAULTS.gateway.handshake_limit.enabled).meta({
    description: "Turn the handshake defender on: token buckets checked in the Worker before any upgrade (429 RATE_LIMITED with Retry-After).",
  }),
  global_rps: positive().default(DEFAULTS.gateway.handshake_limit.global_rps).meta({
    description: "Upgrades per second admitted for the whole gateway (refill rate). Default 100.",
  }),
  global_burst: int(1).default(DEFAULTS.gateway.handshake_limit.global_burst).meta({
    description: "Bucket size of the global handshake limit. Default 200.",
  }),
  per_ip_rps: positive().default(DEFAULTS.gateway.handshake_limit.per_ip_rps).meta({
    description: "Upgrades per second admitted per client IP. Default 10.",
  }),
  per_ip_burst: int(1).default(DEFAULTS.gateway.handshake_limit.per_ip_burst).meta({
    description: "Bucket size of the per-IP handshake limit. Default 50.",
  }),
});

export const GatewaySchema = strict({
  idle_timeout_ms: int(1000, 86_400_000).default(DEFAULTS.gateway.idle_timeout_ms).meta({
    description: "A socket that sends no frame and no heartbeat for this long is closed with 4002. Default 60000.",
  }),
  handshake_limit: HandshakeLimitSchema.prefault({}).meta({
    description: "Handshake defender (off by default).",
  }),
});

/* ------------------------------------------------------------------ tenant and file */

/** A port outside 1..65535 in an origin that otherwise matches ORIGIN_RE, or null. */
export function originPortProblem(origin: string): string | null {
  const port = ORIGIN_RE.exec(origin)?.[3];
  if (port === undefined) return null;
  const n = Number(port);
  return n >= 1 && n <= 65535 ? null : `the port must be between 1 and 65535, got ${port}`;
}

const originEntry = z
  .string({ error: expect('an origin "scheme://host[:port]"') })
  .regex(ORIGIN_RE, {
    error: (iss) =>
      `expected an origin "scheme://host[:port]" (no path, no trailing slash, no wildcard), got ${show(iss.input)}`,
  })
  .refine((o) => originPortProblem(o) === null, {
    error: (iss) => `expected an origin "scheme://host[:port]", got ${show(iss.input)}: ${originPortProblem(String(iss.input))}`,
  });

export const TenantSchema = strict({
  id: z.string({ error: expect("a tenant id") }).regex(TENANT_RE, {
    error: (iss) => `expected a tenant id matching ${TENANT_RE.source}, got ${show(iss.input)}`,
  }).meta({ description: "Tenant id, unique across all policy files." }),
  auth: AuthSchema,
  allowed_origins: z
    .array(originEntry, { error: expect('a list of origins "scheme://host[:port]"') })
    .default([])
    .meta({ description: "Origins allowed to connect (exact, case-insensitive). Empty or omitted: any Origin." }),
  presence: bool().default(false).meta({
    description: "Send sys.presence join/leave to the room's members. Default false.",
  }),
  api: strict({
    key_env: envName().meta({ description: "Name of the env var holding the bearer key of the HTTP API." }),
  }).optional().meta({ description: "Origin-facing HTTP API. Omitted: the API answers 401 for this tenant." }),
  limits: LimitsSchema.prefault({}).meta({ description: "Caps on frames, sessions and rooms." }),
  recovery: RecoverySchema.prefault({}).meta({
    description:
      "Resume and missed-message recovery (SPEC section 10): the log of ext frames, the window a session can come back in and the grace before its leave. Off by default.",
  }),
  policy: PolicySchema.prefault({}).meta({ description: "Rate limits, sessions and allowlists." }),
  services: z
    .record(serviceName, ServiceSchema, { error: expect("a mapping of service name to service") })
    .default({})
    .meta({ description: "Ext lane: svc -> {handler: broadcast} or an origin {url, secret_env, ...}." }),
  hot_services: z
    .record(hotServiceId, HotServiceSchema, { error: expect("a mapping of svc_id (1..255) to {mode: ...}") })
    .default({})
    .meta({ description: "Hot lane: svc_id (1..255; 0 is reserved) -> {mode: relay | echo | state}." }),
}, "a tenant: a mapping with id and auth");

export const PolicyFileSchema = strict(
  {
    version: z.literal(1, { error: expect("1 (the policy format version)") }).meta({
      description: "Policy format version: 1.",
    }),
    gateway: GatewaySchema.optional().meta({
      description: "Gateway-wide settings. At most one file may hold this block; defaults apply when none does.",
    }),
    tenants: z
      .array(TenantSchema, { error: expect("a list of tenants") })
      .default([])
      .meta({ description: "Tenants; ids are unique across all policy files." }),
  },
  "a mapping with version: 1",
).meta({
  title: "wsPrism edge policy file",
  description: "policies/*.yaml: gateway settings and tenants. See docs/configuration.md.",
});

export type PolicyFileInput = z.input<typeof PolicyFileSchema>;
export type PolicyFile = z.output<typeof PolicyFileSchema>;
export type GatewayConfig = z.output<typeof GatewaySchema>;
export type TenantConfig = z.output<typeof TenantSchema>;
export type AuthConfig = z.output<typeof AuthSchema>;
export type LimitsConfig = z.output<typeof LimitsSchema>;
export type PolicyConfig = z.output<typeof PolicySchema>;
export type SessionsConfig = z.output<typeof SessionsSchema>;
export type RecoveryConfig = z.output<typeof RecoverySchema>;
export type ServiceConfig = z.output<typeof ServiceSchema>;
export type HotServiceConfig = z.output<typeof HotServiceSchema>;
