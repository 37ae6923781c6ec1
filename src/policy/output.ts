/**
 * The last step of compile.ts: validated policy files -> CompiledPolicies (types.ts),
 * the runtime shape: allowlists as sorted tables and 256-bit opcode bitmaps, origins
 * in their normal form, defaults filled in (a service's `recovery` resolved against
 * the tenant's), everything in a stable order.
 */
import { normaliseOrigin } from "./checks.ts";
import type { SourceFile } from "./load.ts";
import type { RecoveryConfig, ServiceConfig, TenantConfig } from "./schema.ts";
import { DEFAULTS } from "./schema-common.ts";
import type {
  CompiledAuth,
  CompiledGateway,
  CompiledHotService,
  CompiledPolicies,
  CompiledRecovery,
  CompiledService,
  CompiledTenant,
  LifecycleEvent,
} from "./types.ts";

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function hotBitmap(opcodes: "*" | Set<number>): number[] {
  const words = new Array<number>(8).fill(0);
  if (opcodes === "*") return words.fill(0xffffffff);
  for (const op of opcodes) words[op >> 5] = (words[op >> 5]! | (1 << (op & 31))) >>> 0;
  return words;
}

function compileRecovery(r: RecoveryConfig): CompiledRecovery {
  return {
    enabled: r.enabled,
    window_s: r.window_s,
    grace_s: r.grace_s ?? Math.min(DEFAULTS.recovery.grace_s, r.window_s),
    max_messages: r.max_messages,
    max_bytes: r.max_bytes,
  };
}

/** `tenantRecovery`: the tenant's `recovery.enabled`, the default of a service's own `recovery`. */
function compileService(s: ServiceConfig, tenantRecovery: boolean): CompiledService {
  const recovery = s.recovery ?? tenantRecovery;
  if ("handler" in s) return { kind: "broadcast", recovery };
  const order: LifecycleEvent[] = ["open", "close", "message"];
  return {
    kind: "origin",
    url: s.url,
    secret_env: s.secret_env,
    events: order.filter((e) => s.events.includes(e)),
    timeout_ms: s.timeout_ms,
    batch_ms: s.batch_ms,
    batch_max: s.batch_max,
    retry_for_s: s.retry_for_s,
    recovery,
  };
}

function compileTenant(t: TenantConfig, source: string): CompiledTenant {
  let auth: CompiledAuth;
  switch (t.auth.mode) {
    case "jwt":
      auth = {
        mode: "jwt",
        secret_env: t.auth.secret_env ?? null,
        jwks_url: t.auth.jwks_url ?? null,
        audience: t.auth.audience ?? null,
      };
      break;
    case "origin":
      auth = { mode: "origin", origin_url: t.auth.origin_url, secret_env: t.auth.secret_env, cache_s: t.auth.cache_s };
      break;
    case "dev":
      auth = { mode: "dev" };
      break;
  }

  const p = t.policy;
  const ext = new Map<string, "*" | Set<string>>();
  for (const entry of p.ext_allowlist) {
    const i = entry.indexOf(":");
    const svc = entry.slice(0, i);
    const type = entry.slice(i + 1);
    const cur = ext.get(svc);
    if (type === "*" || cur === "*") ext.set(svc, "*");
    else ext.set(svc, (cur ?? new Set<string>()).add(type));
  }
  const hot = new Map<number, "*" | Set<number>>();
  for (const entry of p.hot_allowlist) {
    const [a, b] = entry.split(":") as [string, string];
    const svcId = Number(a);
    const cur = hot.get(svcId);
    if (b === "*" || cur === "*") hot.set(svcId, "*");
    else hot.set(svcId, (cur ?? new Set<number>()).add(Number(b)));
  }

  const single = p.sessions.mode === "single";
  const recovery = compileRecovery(t.recovery);
  return {
    id: t.id,
    source,
    auth,
    allowed_origins: t.allowed_origins.map((o) => normaliseOrigin(o) ?? o.toLowerCase()),
    presence: t.presence,
    api: t.api ? { key_env: t.api.key_env } : null,
    limits: { ...t.limits },
    recovery,
    policy: {
      rate_limit_rps: p.rate_limit_rps,
      rate_limit_burst: p.rate_limit_burst,
      rate_limit_scope: p.rate_limit_scope,
      rate_limit_action: p.rate_limit_action,
      sessions: {
        mode: p.sessions.mode,
        max_sessions_per_user: single
          ? 1
          : (p.sessions.max_sessions_per_user ?? DEFAULTS.policy.sessions.max_sessions_per_user),
        on_exceed: p.sessions.on_exceed,
      },
      hot_error_mode: p.hot_error_mode,
    },
    ext_allow: [...ext]
      .sort(([a], [b]) => cmp(a, b))
      .map(([svc, types]): [string, "*" | string[]] => [svc, types === "*" ? "*" : [...types].sort(cmp)]),
    hot_allow: [...hot]
      .sort(([a], [b]) => a - b)
      .map(([svcId, ops]): [number, number[]] => [svcId, hotBitmap(ops)]),
    services: Object.keys(t.services)
      .sort(cmp)
      .map((name): [string, CompiledService] => [name, compileService(t.services[name]!, recovery.enabled)]),
    hot_services: Object.keys(t.hot_services)
      .map(Number)
      .sort((a, b) => a - b)
      .map((id): [number, CompiledHotService] => {
        const h = t.hot_services[String(id)]!;
        if (h.mode === "state") return [id, { mode: "state", tick_hz: h.tick_hz }];
        return [id, h.mode === "relay" ? { mode: "relay", coalesce: h.coalesce } : { mode: "echo" }];
      }),
  };
}

function defaultGateway(): CompiledGateway {
  return {
    idle_timeout_ms: DEFAULTS.gateway.idle_timeout_ms,
    handshake_limit: { ...DEFAULTS.gateway.handshake_limit },
  };
}

/** The policies of files that all passed every check (in the order given; the last gateway block wins, there is at most one), tenants sorted by id. */
export function compiledPolicies(files: readonly SourceFile[]): CompiledPolicies {
  let gateway = defaultGateway();
  const tenants: CompiledTenant[] = [];
  for (const fc of files) {
    const file = fc.parsed!;
    if (file.gateway) gateway = { idle_timeout_ms: file.gateway.idle_timeout_ms, handshake_limit: { ...file.gateway.handshake_limit } };
    for (const t of file.tenants) tenants.push(compileTenant(t, fc.name));
  }
  tenants.sort((a, b) => cmp(a.id, b.id));
  return { version: 1, gateway, tenants };
}
