/**
 * A JWT is bound to one tenant (SPEC section 3): two `mode: jwt` tenants must
 * not accept the same key unless each sets its own audience. The build catches
 * the same `secret_env` name and the same `jwks_url` (policy/checks.ts); the same
 * secret under two names it cannot see. This module compares the values at run
 * time, once per isolate (per env object): SHA-256 of each jwt tenant's HS256
 * secret, never the secret itself, in memory or in a log.
 *
 * A pair whose secrets are equal and whose audiences do not keep them apart (the
 * build's rule: both set and different) is a clash. What follows:
 *  - authenticate() refuses every ticket of both tenants with 503 INTERNAL
 *    `tenant misconfigured` (fail closed: each would admit the other's users);
 *  - /readyz answers 503 naming the tenants, so a deploy check or a monitor
 *    sees it;
 *  - one error log line per isolate, `auth.shared_secret`, with the tenants and
 *    the env names;
 *  - the other tenants are served as usual.
 */
import type { Env } from "../env.ts";
import { readSecret } from "../env.ts";
import { log } from "../observability/log.ts";
import { getTenant, tenantIds } from "../policy/index.ts";
import type { CompiledAuth } from "../policy/types.ts";

export interface SharedSecret {
  tenants: [string, string];
  envs: [string, string];
}

interface TenantAuth {
  id: string;
  auth: CompiledAuth;
}

async function sha256(value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Pairs of jwt tenants, in the order given, whose HS256 secrets are equal and whose audiences do not keep them apart. */
export async function findSharedSecrets(tenants: readonly TenantAuth[], env: object): Promise<SharedSecret[]> {
  const seen: Array<{ id: string; env: string; audience: string | null; hash: string }> = [];
  const out: SharedSecret[] = [];
  for (const t of tenants) {
    if (t.auth.mode !== "jwt" || t.auth.secret_env === null) continue;
    const value = readSecret(env as Env, t.auth.secret_env);
    if (value === undefined) continue;
    const mine = { id: t.id, env: t.auth.secret_env, audience: t.auth.audience, hash: await sha256(value) };
    for (const o of seen) {
      if (o.hash !== mine.hash) continue;
      if (o.audience !== null && mine.audience !== null && o.audience !== mine.audience) continue;
      out.push({ tenants: [o.id, mine.id], envs: [o.env, mine.env] });
    }
    seen.push(mine);
  }
  return out;
}

const cache = new WeakMap<object, Promise<SharedSecret[]>>();
/** Clashes already logged in this isolate: one line each, however many env objects the runtime hands out. */
const logged = new Set<string>();

/** The compiled tenants' clashes under this env, computed (and logged) once per env object. */
export function sharedSecrets(env: Env): Promise<SharedSecret[]> {
  const key = env as unknown as object;
  let found = cache.get(key);
  if (!found) {
    const tenants = tenantIds().map((id) => ({ id, auth: getTenant(id)!.auth }));
    found = findSharedSecrets(tenants, env).then((clashes) => {
      for (const c of clashes) {
        const key = [...c.tenants, ...c.envs].join("\u0000");
        if (logged.has(key)) continue;
        logged.add(key);
        log("error", "auth.shared_secret", {
          trace_id: "-",
          tenants: c.tenants.join(","),
          envs: c.envs.join(","),
          msg: "two jwt tenants accept the same HS256 secret: their tickets are refused until each sets its own auth.audience or gets its own secret",
        });
      }
      return clashes;
    });
    cache.set(key, found);
  }
  return found;
}

/** Whether this tenant is in a clash (only jwt tenants with a secret can be). */
export async function secretShared(tenant: string, auth: CompiledAuth, env: Env): Promise<boolean> {
  if (auth.mode !== "jwt" || auth.secret_env === null || typeof env !== "object" || env === null) return false;
  return (await sharedSecrets(env)).some((c) => c.tenants.includes(tenant));
}
