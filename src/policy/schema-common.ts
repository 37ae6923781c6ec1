/**
 * What every part of the policy schema is built from: the defaults of optional keys,
 * the entry and origin patterns, the operator-facing messages, and the zod building
 * blocks (integers, enums, env var names, URLs, strict mappings) whose errors read
 * "expected an integer between 64 and 1048576, got 10".
 *
 * Build time only, like the rest of the schema (schema.ts is its root).
 */
import { z } from "zod";
import { ENV_NAME_RE, SVC_RE } from "../protocol/codes.ts";

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
  recovery: {
    enabled: false,
    window_s: 120,
    /** Capped at window_s when omitted (an explicit grace_s above window_s is an error). */
    grace_s: 10,
    max_messages: 1000,
    max_bytes: 4_194_304,
  },
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
export function expect(what: string) {
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

export function int(min: number, max?: number, note = "") {
  const what =
    max === undefined
      ? `an integer >= ${min}${note}`
      : `an integer between ${min} and ${max}${note}`;
  const error = expect(what);
  const s = z.int({ error }).min(min, { error });
  return max === undefined ? s : s.max(max, { error });
}

export function positive() {
  const error = expect("a number greater than 0");
  return z.number({ error }).positive({ error });
}

export function bool() {
  return z.boolean({ error: expect("true or false") });
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: expect(`one of: ${values.join(", ")}`) });
}

export function envName() {
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

export function httpUrl(opts: { httpsUnlessLocal: boolean }) {
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
export function strict<S extends z.core.$ZodLooseShape>(shape: S, what = "a mapping") {
  const keys = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) =>
      iss.code === "unrecognized_keys"
        ? `expected one of: ${keys.join(", ")}`
        : expect(what)(iss),
  });
}
