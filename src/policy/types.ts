/**
 * Shape of the compiled policy module (src/policy/generated.ts), produced at build
 * time by scripts/compile-policies.ts from policies/*.yaml.
 *
 * Everything here is plain data (JSON-compatible) so the generated module needs no
 * parser at runtime. Keyed collections are emitted as arrays of [key, value] pairs
 * rather than object literals, so a key such as "__proto__" can never touch a
 * prototype; src/policy/index.ts turns them into Maps once, at module load.
 */

export type RateLimitScope = "connection" | "tenant";
export type RateLimitAction = "drop" | "error" | "close";
export type HotErrorMode = "silent" | "sys_error";
export type LifecycleEvent = "open" | "close" | "message";

export interface CompiledGateway {
  idle_timeout_ms: number;
  handshake_limit: {
    enabled: boolean;
    global_rps: number;
    global_burst: number;
    per_ip_rps: number;
    per_ip_burst: number;
  };
}

export type CompiledAuth =
  | { mode: "jwt"; secret_env: string | null; jwks_url: string | null; audience: string | null }
  | { mode: "origin"; origin_url: string; secret_env: string; cache_s: number }
  | { mode: "dev" };

export type CompiledService =
  | {
      kind: "origin";
      url: string;
      secret_env: string;
      events: LifecycleEvent[];
      timeout_ms: number;
      batch_ms: number;
      batch_max: number;
      retry_for_s: number;
      /** Log this service's frames for resume: the service's `recovery`, else the tenant's `recovery.enabled`. */
      recovery: boolean;
    }
  | {
      kind: "broadcast";
      /** As for an origin service: resolved from the service, else the tenant. */
      recovery: boolean;
    };

export type CompiledHotService =
  | { mode: "relay"; coalesce: boolean }
  | { mode: "echo" }
  | { mode: "state"; tick_hz: number };

export interface CompiledLimits {
  max_frame_bytes: number;
  max_sessions_total: number; // 0 = unlimited
  max_rooms_total: number; // 0 = unlimited
  max_users_per_room: number; // 0 = unlimited
  max_rooms_per_user: number; // 0 = unlimited
  /** Hot `state` mode: bytes of kept states per room (frames + per-key bookkeeping). */
  max_state_bytes: number;
}

/** Resume and missed-message recovery (SPEC section 10), every default filled in. */
export interface CompiledRecovery {
  /** The tenant's default for its services; each compiled service carries its own resolved `recovery`. */
  enabled: boolean;
  /** Seconds a session can come back (its slot reserved, its missed frames replayable). */
  window_s: number;
  /** Seconds presence `leave` and origin `close` wait after an abnormal disconnect; 0..window_s. */
  grace_s: number;
  /** The most frames one resume replays; more: `recovered: false`, `too_many`. */
  max_messages: number;
  /** Bytes of the log kept per room. */
  max_bytes: number;
}

export interface CompiledSessions {
  mode: "single" | "multi";
  /** Effective limit: always 1 in `single` mode; at least 1 in `multi`. */
  max_sessions_per_user: number;
  on_exceed: "deny" | "kick_oldest";
}

export interface CompiledPolicy {
  rate_limit_rps: number;
  rate_limit_burst: number;
  rate_limit_scope: RateLimitScope;
  rate_limit_action: RateLimitAction;
  sessions: CompiledSessions;
  hot_error_mode: HotErrorMode;
}

export interface CompiledTenant {
  id: string;
  /** policies/<file> the tenant came from, for error messages and logs. */
  source: string;
  auth: CompiledAuth;
  /** Exact origins (scheme://host[:port], lower case). Empty = any Origin. */
  allowed_origins: string[];
  presence: boolean;
  api: { key_env: string } | null;
  limits: CompiledLimits;
  recovery: CompiledRecovery;
  policy: CompiledPolicy;
  /** Ext allowlist: svc -> "*" (any type) or the allowed types. */
  ext_allow: Array<[svc: string, types: "*" | string[]]>;
  /** Hot allowlist: svc_id -> 256-bit opcode bitmap as 8 little-endian u32 words. */
  hot_allow: Array<[svcId: number, bitmap: number[]]>;
  services: Array<[svc: string, service: CompiledService]>;
  hot_services: Array<[svcId: number, service: CompiledHotService]>;
}

export interface CompiledPolicies {
  version: 1;
  gateway: CompiledGateway;
  tenants: CompiledTenant[];
}
