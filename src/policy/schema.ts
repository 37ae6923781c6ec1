/**
 * The policy file format (policies/*.yaml): one zod 4 schema, used both to validate
 * the YAML at build time (src/policy/compile.ts) and to generate the JSON Schema that
 * editors use (policies/policy.schema.json).
 *
 * Every object is strict (an unknown key is an error) and every optional key has its
 * default here, so the parsed output is complete. Error messages are written for
 * operators: "expected an integer between 64 and 1048576, got 10".
 *
 * Cross-field rules that need more than one key (allowlist entries that name a service,
 * unique tenant ids across files, one gateway block) live in compile.ts, which also
 * turns the parsed data into the CompiledPolicies shape of types.ts.
 *
 * This module is imported by the build script only (and by tests); the generated
 * module the Worker loads does not import zod.
 */
import { z } from "zod";
import { ENV_NAME_RE, SVC_RE, TENANT_RE } from "../protocol/codes.ts";

/* ------------------------------------------------------------------ defaults */

/** Defaults of every optional key, taken from the original Rust wsPrism where it has one. */
export const DEFAULTS = {
  gateway: {
    idle_timeout_ms: 60_000,
    handshake_limit: {
      enabled: false,
      global_rps: 100,
      global_burst: 200,
      per_ip_rps: 10,
      per_ip_burst: 50,
    },
  },
  auth: { cache_s: 60 },
  limits: {
    max_frame_bytes: 4096,
    max_sessions_total: 0,
    max_rooms_total: 0,
    max_users_per_room: 0,
    max_rooms_per_user: 0,
    max_state_bytes: 1_048_576,
  },
  policy: {
    rate_limit_rps: 200,
    rate_limit_burst: 400,
    rate_limit_scope: "connection",
    rate_limit_action: "drop",
    sessions: { mode: "multi", max_sessions_per_user: 4, on_exceed: "deny" },
    ext_allowlist: ["room:join", "room:leave"],
    hot_allowlist: [] as string[],
    hot_error_mode: "sys_error",
  },
  service: {
    events: ["message"],
    timeout_ms: 5000,
    batch_ms: 0,
    batch_max: 50,
    retry_for_s: 300,
  },
  hot_state: { tick_hz: 20 },
} as const;

/** Ext services the gateway implements itself; they may not be defined in `services`. */
export const BUILTIN_EXT_SERVICES = ["room", "sys"] as const;

/* ------------------------------------------------------------------ patterns */

function inner(re: RegExp): string {
  const s = re.source;
  if (!s.startsWith("^") || !s.endsWith("$")) throw new Error(`pattern ${s} is not anchored`);
  return s.slice(1, -1);
}

const SVC = inner(SVC_RE);
/** `svc:type` or `svc:*`. */
export const EXT_ENTRY_RE = new RegExp(`^(${SVC}):(${SVC}|\\*)$`);
/** A decimal integer 0..255 without leading zeros. */
const BYTE = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
/** A hot svc_id: decimal 1..255. 0 is reserved for the gateway's own frames (state batches). */
const SVC_ID = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]?)";
export const HOT_SVC_ID_RE = new RegExp(`^${SVC_ID}$`);
/** `svc_id:opcode` or `svc_id:*`: svc_id 1..255, opcode 0..255, in decimal. */
export const HOT_ENTRY_RE = new RegExp(`^(${SVC_ID}):(${BYTE}|\\*)$`);
/** An origin as browsers send it: `scheme://host[:port]`, no path, no trailing slash. */
export const ORIGIN_RE =
  /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)(?::([0-9]{1,5}))?$/;

/* ------------------------------------------------------------------ messages */

/** A short, single-line rendering of a YAML value for an error message. */
export function show(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null (an empty value)";
  if (typeof value === "string") {
    const s = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(s);
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return typeof value;
}

type Iss = { code?: string; input?: unknown };

/** "required (expected X)" when the key is missing, else "expected X, got Y". */
function expect(what: string) {
  return (iss: Iss): string =>
    iss.input === undefined ? `required (expected ${what})` : `expected ${what}, got ${show(iss.input)}`;
}

/** Heuristic: a value that is probably a secret rather than the name of an env var. */
export function looksLikeSecret(value: string): boolean {
  if (/^(whsec_|sk_|pk_|rk_|ghp_|xox|eyJ)/.test(value)) return true;
  if (/[+/=]/.test(value) && value.length >= 16) return true;
  return value.length >= 16 && /[a-z]/.test(value) && /[A-Z0-9]/.test(value) && !/[_-]/.test(value);
}

/* ------------------------------------------------------------------ building blocks */

function int(min: number, max?: number, note = "") {
  const what =
    max === undefined
      ? `an integer >= ${min}${note}`
      : `an integer between ${min} and ${max}${note}`;
  const error = expect(what);
  const s = z.int({ error }).min(min, { error });
  return max === undefined ? s : s.max(max, { error });
}

function positive() {
  const error = expect("a number greater than 0");
  return z.number({ error }).positive({ error });
}

function bool() {
  return z.boolean({ error: expect("true or false") });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: expect(`one of: ${values.join(", ")}`) });
}

function envName() {
  const what = "an env var name like ACME_API_KEY (A-Z, 0-9 and _, not starting with a digit)";
  const error = (iss: Iss): string => {
    if (iss.input === undefined) return `required (expected ${what})`;
    if (typeof iss.input === "string") {
      if (looksLikeSecret(iss.input))
        return `expected ${what}, got what looks like a secret (value not shown): never put secrets in policies, store it with \`wrangler secret put NAME\` and give NAME here`;
      if (iss.input.length > 40) return `expected ${what}, got a ${iss.input.length}-character string (value not shown)`;
    }
    return `expected ${what}, got ${show(iss.input)}`;
  };
  return z.string({ error }).regex(ENV_NAME_RE, { error });
}

/** Reasons a string is not an acceptable URL, or null when it is. */
export function urlProblem(value: string, opts: { httpsUnlessLocal: boolean }): string | null {
  if (value.trim() !== value || /\s/.test(value)) return "contains whitespace";
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "is not a valid URL";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return "must start with https:// or http://";
  if (url.username !== "" || url.password !== "") return "must not contain credentials (user:password@): secrets never go in policies";
  if (url.hostname === "") return "has no host";
  if (opts.httpsUnlessLocal && url.protocol === "http:") {
    const local = url.hostname === "localhost" || url.hostname === "127.0.0.1" || url.hostname === "[::1]";
    if (!local) return "must use https:// (http:// is only allowed for localhost and 127.0.0.1)";
  }
  return null;
}

function httpUrl(opts: { httpsUnlessLocal: boolean }) {
  const what = opts.httpsUnlessLocal
    ? "an https:// URL (http:// only for localhost)"
    : "an http:// or https:// URL";
  return z
    .string({ error: expect(what) })
    .refine((v) => urlProblem(v, opts) === null, {
      error: (iss) => {
        const v = String(iss.input);
        return `expected ${what}, got ${show(v)}: it ${urlProblem(v, opts) ?? "is invalid"}`;
      },
    })
    .meta({ format: "uri" });
}

/** A strict object whose messages say "expected a mapping" and, for an unknown key, list the known keys. */
function strict<S extends z.core.$ZodLooseShape>(shape: S, what = "a mapping") {
  const keys = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) =>
      iss.code === "unrecognized_keys"
        ? `expected one of: ${keys.join(", ")}`
        : expect(what)(iss),
  });
}

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

/* ------------------------------------------------------------------ auth */

const JwtAuthSchema = strict({
  mode: z.literal("jwt"),
  secret_env: envName().optional().meta({
    description: "Name of the env var holding the HS256 secret.",
  }),
  jwks_url: httpUrl({ httpsUnlessLocal: true }).optional().meta({
    description: "JWKS endpoint (RS256, ES256, EdDSA keys), fetched and cached. https only (http for localhost).",
  }),
  audience: z.string({ error: expect("a string") }).min(1, { error: expect("a non-empty string") }).optional().meta({
    description:
      "When set, the ticket's `aud` claim must match it. Tenants that share a secret_env or jwks_url must each set a distinct audience.",
  }),
}).superRefine((auth, ctx) => {
  if (auth.secret_env === undefined && auth.jwks_url === undefined) {
    ctx.addIssue({
      code: "custom",
      message: "jwt auth needs secret_env (HS256), jwks_url, or both",
      input: auth,
    });
  }
});

const OriginAuthSchema = strict({
  mode: z.literal("origin"),
  origin_url: httpUrl({ httpsUnlessLocal: false }).meta({
    description: "The Worker POSTs {ticket, tenant, room, ip} here, signed like a webhook; a 200 with {user} admits.",
  }),
  secret_env: envName().meta({
    description: "Name of the env var holding the whsec_ secret that signs the auth call.",
  }),
  cache_s: int(0, 3600).default(DEFAULTS.auth.cache_s).meta({
    description: "Seconds an answer of the auth origin is cached (0 = not cached). Default 60.",
  }),
});

const DevAuthSchema = strict({
  mode: z.literal("dev"),
});

export const AuthSchema = z
  .discriminatedUnion("mode", [JwtAuthSchema, OriginAuthSchema, DevAuthSchema], {
    error: expect("a mapping with mode: jwt, origin or dev"),
  })
  .meta({ description: "How tickets are verified: jwt, origin or dev." });

/* ------------------------------------------------------------------ limits and policy */

export const LimitsSchema = strict({
  max_frame_bytes: int(64, 1_048_576).default(DEFAULTS.limits.max_frame_bytes).meta({
    description: "Largest frame (text or binary) a client may send; larger ones are closed with 1009. Default 4096.",
  }),
  max_sessions_total: int(0, undefined, " (0 = unlimited)").default(DEFAULTS.limits.max_sessions_total).meta({
    description: "Sessions of the tenant across all rooms. 0 = unlimited (default).",
  }),
  max_rooms_total: int(0, undefined, " (0 = unlimited)").default(DEFAULTS.limits.max_rooms_total).meta({
    description: "Rooms of the tenant with at least one session. 0 = unlimited (default).",
  }),
  max_users_per_room: int(0, 65535, " (0 = unlimited)").default(DEFAULTS.limits.max_users_per_room).meta({
    description: "Sessions in one room (slots are u16). 0 = unlimited (default).",
  }),
  max_rooms_per_user: int(0, undefined, " (0 = unlimited)").default(DEFAULTS.limits.max_rooms_per_user).meta({
    description: "Rooms one user may be in at once. 0 = unlimited (default).",
  }),
  max_state_bytes: int(1024, 16_777_216).default(DEFAULTS.limits.max_state_bytes).meta({
    description:
      "Hot lane state mode: bytes of kept states per room (each counts its frame plus 64 bytes of bookkeeping; " +
      "at most 64 keys per sender). A frame that would exceed it is RESOURCE_EXHAUSTED. Default 1048576 (1 MiB).",
  }),
});

export const SessionsSchema = strict({
  mode: oneOf(["single", "multi"]).default("multi").meta({
    description: "single: one session per user; multi: up to max_sessions_per_user. Default multi.",
  }),
  max_sessions_per_user: int(1).optional().meta({
    description: "Sessions per user in multi mode (default 4). In single mode omit it or set 1.",
    default: DEFAULTS.policy.sessions.max_sessions_per_user,
  }),
  on_exceed: oneOf(["deny", "kick_oldest"]).default("deny").meta({
    description: "deny: the new session gets 409 TOO_MANY_SESSIONS; kick_oldest: the oldest is closed with 4004. Default deny.",
  }),
}).superRefine((s, ctx) => {
  if (s.mode === "single" && s.max_sessions_per_user !== undefined && s.max_sessions_per_user !== 1) {
    ctx.addIssue({
      code: "custom",
      path: ["max_sessions_per_user"],
      message: `must be 1 or omitted when mode is single, got ${s.max_sessions_per_user}`,
      input: s.max_sessions_per_user,
    });
  }
});

const extEntry = z
  .string({ error: expect('an entry "svc:type" or "svc:*"') })
  .regex(EXT_ENTRY_RE, {
    error: (iss) =>
      `expected an entry "svc:type" or "svc:*" (svc and type match ${SVC_RE.source}), got ${show(iss.input)}`,
  });

const hotEntry = z
  .string({ error: expect('an entry "svc_id:opcode" or "svc_id:*"') })
  .regex(HOT_ENTRY_RE, {
    error: (iss) =>
      `expected an entry "svc_id:opcode" or "svc_id:*" with svc_id 1..255 (0 is reserved) and opcode 0..255 written in decimal, got ${show(iss.input)}`,
  });

export const PolicySchema = strict({
  rate_limit_rps: positive().default(DEFAULTS.policy.rate_limit_rps).meta({
    description: "Token bucket refill rate, messages (text and binary) per second. Default 200.",
  }),
  rate_limit_burst: int(1).default(DEFAULTS.policy.rate_limit_burst).meta({
    description: "Token bucket size. Default 400.",
  }),
  rate_limit_scope: oneOf(["connection", "tenant"]).default("connection").meta({
    description: "One bucket per connection, or one for the whole tenant. Default connection.",
  }),
  rate_limit_action: oneOf(["drop", "error", "close"]).default("drop").meta({
    description: "Over the limit: drop silently, answer sys.error RATE_LIMITED, or close with 4008. Default drop.",
  }),
  sessions: SessionsSchema.prefault({}).meta({ description: "Sessions per user." }),
  ext_allowlist: z
    .array(extEntry, { error: expect("a list of \"svc:type\" or \"svc:*\" entries") })
    .default([...DEFAULTS.policy.ext_allowlist])
    .meta({
      description: 'Ext lane messages clients may send: "svc:type" or "svc:*". Default ["room:join", "room:leave"].',
      uniqueItems: true,
    }),
  hot_allowlist: z
    .array(hotEntry, { error: expect("a list of \"svc_id:opcode\" or \"svc_id:*\" entries") })
    .default([])
    .meta({
      description: 'Hot lane frames clients may send: "svc_id:opcode" or "svc_id:*" (svc_id 1..255, opcode 0..255, decimal; svc_id 0 is reserved for the gateway). Default [].',
      uniqueItems: true,
    }),
  hot_error_mode: oneOf(["sys_error", "silent"]).default("sys_error").meta({
    description: "sys_error: a bad hot frame is answered with sys.error; silent: dropped and counted. Default sys_error.",
  }),
});

/* ------------------------------------------------------------------ services */

export const BroadcastServiceSchema = strict({
  handler: z.literal("broadcast", { error: expect("broadcast (the only built-in handler)") }),
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
});

/** `{handler: broadcast}` or an origin. compile.ts picks the branch for error messages by the `handler` key. */
export const ServiceSchema = z.union([BroadcastServiceSchema, OriginServiceSchema]);

const serviceName = z
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

const hotServiceId = z
  .string()
  .regex(HOT_SVC_ID_RE, { error: (iss) => `expected a hot svc_id, an integer 1..255 in decimal (0 is reserved for the gateway), got ${show(iss.input)}` });

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
export type ServiceConfig = z.output<typeof ServiceSchema>;
export type HotServiceConfig = z.output<typeof HotServiceSchema>;
