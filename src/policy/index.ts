/**
 * Runtime view of the compiled policies. The generated module (`#policies`, built
 * from policies/*.yaml by scripts/compile-policies.ts) is plain data; this module
 * turns it once, at load, into Maps and bitmaps that answer in O(1).
 */
import { POLICIES } from "#policies";
import type { CompiledGateway, CompiledHotService, CompiledService, CompiledTenant } from "./types.ts";

export type { CompiledGateway, CompiledHotService, CompiledService, CompiledTenant } from "./types.ts";

export interface TenantPolicy extends CompiledTenant {
  /** svc -> true (any type) or the set of allowed types. */
  extAllow: Map<string, true | Set<string>>;
  /** 256 svc ids x 8 u32 words: bit `op` of svc `s` is word `s*8 + (op>>5)`, bit `op&31`. */
  hotBits: Uint32Array;
  serviceMap: Map<string, CompiledService>;
  /** Indexed by svc_id; undefined when the svc has no mode. */
  hotModes: Array<CompiledHotService | undefined>;
  /** Lower-cased exact origins; empty = any. */
  originSet: Set<string>;
}

function prepare(t: CompiledTenant): TenantPolicy {
  const extAllow = new Map<string, true | Set<string>>();
  for (const [svc, types] of t.ext_allow) extAllow.set(svc, types === "*" ? true : new Set(types));
  const hotBits = new Uint32Array(256 * 8);
  for (const [svc, words] of t.hot_allow) for (let i = 0; i < 8; i++) hotBits[svc * 8 + i] = words[i]! >>> 0;
  const hotModes: Array<CompiledHotService | undefined> = new Array(256).fill(undefined);
  for (const [svc, mode] of t.hot_services) hotModes[svc] = mode;
  return {
    ...t,
    extAllow,
    hotBits,
    serviceMap: new Map(t.services),
    hotModes,
    originSet: new Set(t.allowed_origins.map((o) => o.toLowerCase())),
  };
}

const tenants = new Map<string, TenantPolicy>(POLICIES.tenants.map((t) => [t.id, prepare(t)]));

export const gateway: CompiledGateway = POLICIES.gateway;

export function getTenant(id: string): TenantPolicy | undefined {
  return tenants.get(id);
}

export function tenantCount(): number {
  return tenants.size;
}

/** Every tenant id of the compiled policies (metrics label values, /metrics zero series). */
export function tenantIds(): string[] {
  return [...tenants.keys()];
}

export function extAllowed(t: TenantPolicy, svc: string, type: string): boolean {
  const entry = t.extAllow.get(svc);
  return entry === true || (entry !== undefined && entry.has(type));
}

export function hotAllowed(t: TenantPolicy, svc: number, op: number): boolean {
  return (t.hotBits[(svc << 3) | (op >>> 5)]! & (1 << (op & 31))) !== 0;
}

export function originAllowed(t: TenantPolicy, origin: string | null | undefined): boolean {
  if (t.originSet.size === 0) return true;
  return origin != null && t.originSet.has(origin.toLowerCase());
}
