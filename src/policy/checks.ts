/**
 * The checks no single key's schema can make, run on the raw data (so they also run
 * when the schema step failed elsewhere in the file):
 *   - in one file (step 4 of compile.ts): allowlist entries that name undefined
 *     services, duplicate allowlist entries and allowed origins;
 *   - across files: unique tenant ids, at most one `gateway` block, no two jwt
 *     tenants accepting the same key without distinct audiences (JWT binding).
 */
import { formatPath, isObj, own } from "./load.ts";
import type { Obj, Path, SourceFile } from "./load.ts";
import { BUILTIN_EXT_SERVICES, EXT_ENTRY_RE, HOT_ENTRY_RE, ORIGIN_RE } from "./schema-common.ts";
import { originPortProblem } from "./schema.ts";

/** Types in the built-in `room` service (section 4 of the SPEC). */
const ROOM_TYPES = ["join", "leave"];

/* ------------------------------------------------------------------ in one file */

/**
 * The well-formed string entries of `parent[key]` (syntax errors are the
 * schema's), each reported once. `parse` gives an entry's identity (`key`,
 * e.g. an origin in its normal form) or null when it is malformed; a repeated
 * identity is an error naming the `what`, a first one is handed to `check`.
 */
function uniqueEntries<T>(
  file: SourceFile,
  parent: unknown,
  key: string,
  parentPath: Path,
  what: string,
  parse: (entry: string) => { key: string; value: T } | null,
  check: (value: T, entry: string, path: Path, at: number) => void = () => {},
): void {
  const list = isObj(parent) ? own(parent, key) : undefined;
  if (!Array.isArray(list)) return;
  const seen = new Map<string, number>();
  list.forEach((entry, j) => {
    if (typeof entry !== "string") return;
    const parsed = parse(entry);
    if (!parsed) return;
    const path: Path = [...parentPath, key, j];
    const at = file.offsetOf(path, "value");
    const first = seen.get(parsed.key);
    if (first !== undefined) {
      file.error(at, path, `duplicate ${what} "${parsed.key}" (already at index ${first})`);
      return;
    }
    seen.set(parsed.key, j);
    check(parsed.value, entry, path, at);
  });
}

/** Step 4: the checks within one file, on its raw data. */
export function crossChecks(file: SourceFile, root: Obj): void {
  const tenants = own(root, "tenants");
  if (!Array.isArray(tenants)) return;
  tenants.forEach((t, i) => {
    if (!isObj(t)) return;
    const base: Path = ["tenants", i];
    const policy = own(t, "policy");
    const services = own(t, "services");
    const hotServices = own(t, "hot_services");

    uniqueEntries(file, policy, "ext_allowlist", [...base, "policy"], "entry", matching(EXT_ENTRY_RE), (m, entry, path, at) => {
      const svc = m[1]!;
      const type = m[2]!;
      if (svc === "room") {
        if (type !== "*" && !ROOM_TYPES.includes(type)) {
          file.error(at, path, `the built-in room service has the types ${ROOM_TYPES.join(" and ")}, got "${entry}"`);
        }
        return;
      }
      if ((BUILTIN_EXT_SERVICES as readonly string[]).includes(svc)) return;
      if (services !== undefined && !isObj(services)) return; // reported by the schema
      if (!isObj(services) || !Object.hasOwn(services, svc)) {
        file.error(
          at,
          path,
          `service "${svc}" is not defined in ${formatPath([...base, "services"])} (built in: ${BUILTIN_EXT_SERVICES.join(", ")})`,
        );
      }
    });

    uniqueEntries(file, policy, "hot_allowlist", [...base, "policy"], "entry", matching(HOT_ENTRY_RE), (m, _entry, path, at) => {
      const svcId = m[1]!;
      if (hotServices !== undefined && !isObj(hotServices)) return;
      if (!isObj(hotServices) || !Object.hasOwn(hotServices, svcId)) {
        file.error(at, path, `hot svc_id ${svcId} is not defined in ${formatPath([...base, "hot_services"])}`);
      }
    });

    // Origins are compared in their normal form: "https://A.example:443" repeats "https://a.example".
    uniqueEntries(file, t, "allowed_origins", base, "origin", (o) => {
      const norm = ORIGIN_RE.test(o) && !originPortProblem(o) ? normaliseOrigin(o) : null;
      return norm === null ? null : { key: norm, value: norm };
    });
  });
}

/** An entry is well formed when `re` matches it; it is its own identity. */
function matching(re: RegExp): (entry: string) => { key: string; value: RegExpExecArray } | null {
  return (entry) => {
    const m = re.exec(entry);
    return m ? { key: entry, value: m } : null;
  };
}

/** Lower case, default port dropped; null when the syntax is wrong (the schema reports it). */
export function normaliseOrigin(origin: string): string | null {
  const lower = origin.toLowerCase();
  const m = /^([a-z][a-z0-9+.-]*):\/\/(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?$/.exec(lower);
  if (!m) return null;
  const [, scheme, host, port] = m;
  const dropPort = port === undefined || (scheme === "https" && port === "443") || (scheme === "http" && port === "80");
  return dropPort ? `${scheme}://${host}` : `${scheme}://${host}:${Number(port)}`;
}

/* ------------------------------------------------------------------ across files */

/** Across files: one gateway block, unique tenant ids, each reported at the later file naming the first. */
export function checkAcrossFiles(files: readonly SourceFile[]): void {
  let gatewayAt: { fc: SourceFile; offset: number } | undefined;
  const tenantAt = new Map<string, { fc: SourceFile; offset: number }>();
  for (const fc of files) {
    if (!isObj(fc.data)) continue;
    if (Object.hasOwn(fc.data, "gateway")) {
      const offset = fc.offsetOf(["gateway"], "key");
      if (gatewayAt) {
        fc.error(
          offset,
          ["gateway"],
          `only one file may define the gateway block; already defined at ${gatewayAt.fc.name}:${gatewayAt.fc.position(gatewayAt.offset)}`,
        );
      } else gatewayAt = { fc, offset };
    }
    const tenants = own(fc.data, "tenants");
    if (!Array.isArray(tenants)) continue;
    tenants.forEach((t, i) => {
      const id = isObj(t) ? own(t, "id") : undefined;
      if (typeof id !== "string") return;
      const path: Path = ["tenants", i, "id"];
      const offset = fc.offsetOf(path, "value");
      const first = tenantAt.get(id);
      if (first) {
        fc.error(
          offset,
          path,
          `duplicate tenant id "${id}"; already defined at ${first.fc.name}:${first.fc.position(first.offset)}`,
        );
      } else tenantAt.set(id, { fc, offset });
    });
  }

  checkSharedTokenKeys(files);
}

/**
 * A JWT is bound to one tenant (SPEC section 3): two `mode: jwt` tenants that
 * accept the same key (the same `secret_env`, or the same `jwks_url`) would each
 * accept the other's tokens, unless both set an `audience` and the two differ.
 * Reported at the later tenant's key, naming the earlier one. Runs on the raw
 * data, like the tenant id check, so it also runs when a file has other errors.
 * Two URLs count as the same key set when jwksIdentity() makes them equal. The
 * same secret under two `secret_env` names cannot be seen here: the Worker
 * checks the values at run time (auth/shared-secrets.ts).
 */
function checkSharedTokenKeys(files: readonly SourceFile[]): void {
  const KEYS = ["secret_env", "jwks_url"] as const;
  const earlier = new Map<string, { id: string; audience: string | null; fc: SourceFile; offset: number }[]>();
  for (const fc of files) {
    if (!isObj(fc.data)) continue;
    const tenants = own(fc.data, "tenants");
    if (!Array.isArray(tenants)) continue;
    tenants.forEach((t, i) => {
      const auth = isObj(t) ? own(t, "auth") : undefined;
      if (!isObj(auth) || own(auth, "mode") !== "jwt") return;
      const rawId = own(t as Obj, "id");
      const id = typeof rawId === "string" ? rawId : `#${i}`;
      const aud = own(auth, "audience");
      const audience = typeof aud === "string" && aud !== "" ? aud : null;
      for (const key of KEYS) {
        const value = own(auth, key);
        if (typeof value !== "string") continue;
        const path: Path = ["tenants", i, "auth", key];
        const offset = fc.offsetOf(path, "value");
        const same = `${key}\u0000${key === "jwks_url" ? jwksIdentity(value) : value}`;
        const others = earlier.get(same) ?? [];
        const clash = others.find((o) => audience === null || o.audience === null || o.audience === audience);
        if (clash) {
          const what = clash.audience !== null && clash.audience === audience ? `the same ${key} and the same audience` : `the same ${key}`;
          fc.error(
            offset,
            path,
            `tenant "${id}" would accept tokens made for tenant "${clash.id}" (${what} as ${clash.fc.name}:${clash.fc.position(clash.offset)}): expected each of them to set its own auth.audience, or another ${key}`,
          );
        }
        others.push({ id, audience, fc, offset });
        earlier.set(same, others);
      }
    });
  }
}

const UNRESERVED = /^[A-Za-z0-9._~-]$/;

/**
 * What a `jwks_url` is compared by. Spellings of one key set are equal: scheme
 * and host case, the default port, a trailing dot on the host, user info, a
 * query or a fragment, duplicate and trailing slashes, dot segments and
 * percent-encoded unreserved characters in the path. The path stays case
 * sensitive. Leaning towards "the same" on purpose: a false match costs one
 * `audience` line, a missed one lets a tenant accept another's tokens. The text
 * itself when it does not parse (the schema reports it).
 */
export function jwksIdentity(url: string): string {
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    return url;
  }
  const decoded = u.pathname.replace(/%[0-9A-Fa-f]{2}/g, (m) => {
    const c = String.fromCharCode(Number.parseInt(m.slice(1), 16));
    return UNRESERVED.test(c) ? c : m.toUpperCase();
  });
  // Once more through the parser, for dot segments that were percent-encoded.
  const path = new URL(decoded.replace(/\/{2,}/g, "/"), "https://x.invalid").pathname.replace(/\/{2,}/g, "/").replace(/\/+$/, "");
  const host = u.hostname.replace(/\.$/, "");
  return `${u.protocol}//${host}${u.port ? `:${u.port}` : ""}${path || "/"}`;
}
