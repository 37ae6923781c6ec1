/**
 * The bench build's policies (wrangler's [build] command in bench/wrangler.bench.toml):
 * policies/*.yaml, copied to bench/.generated/policies/ with ONE change, then
 * compiled by the real compiler to bench/.generated/policies.ts, which the bench
 * build uses as `#policies` ([alias] in the bench config). src/policy/generated.ts
 * is left alone.
 *
 * The change: the handshake defender's buckets (`gateway.handshake_limit`) get
 * limits the load generator cannot reach. Every bench connection comes from
 * 127.0.0.1, one IP, and the demo's per-IP limit (tens of upgrades a second) would
 * turn a 2000-connection setup into minutes of 429s. The defender stays enabled
 * (if the policy enables it), so its per-upgrade cost is still measured; nothing
 * else differs from the demo policy.
 *
 * Added: the bench-only tenants of bench/policies/*.yaml (e.g. `bench-storm`, the
 * connection storm's tenant), copied as they are, except for the port of the
 * `bench-origin` tenant's origin URL when BENCH_ORIGIN_PORT is set (below).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isMap, isSeq, parseDocument } from "yaml";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "policies");
const BENCH_SRC = join(ROOT, "bench/policies");
const OUT = join(ROOT, "bench/.generated");
const COPY = join(OUT, "policies");
export const BENCH_HANDSHAKE_LIMIT = 1_000_000;

/**
 * The bench origin of "events to origins" listens on a port chosen per run
 * (bench/run.ts passes it as BENCH_ORIGIN_PORT to wrangler dev, which runs this
 * build): the port of every origin service URL of the bench-origin tenant becomes
 * that one. Unset, the files are copied as they are.
 */
const ORIGIN_TENANT = "bench-origin";
const originPort = process.env.BENCH_ORIGIN_PORT;
if (originPort !== undefined && !/^[1-9][0-9]{0,4}$/.test(originPort)) {
  process.stderr.write(`BENCH_ORIGIN_PORT must be a port number, got ${JSON.stringify(originPort)}\n`);
  process.exit(1);
}
let originPatched = 0;

function withOriginPort(text: string, name: string): string {
  if (originPort === undefined) return text;
  const doc = parseDocument(text, { keepSourceTokens: true });
  if (doc.errors.length > 0) return text; // the compiler reports it
  const tenants = doc.get("tenants");
  if (!isSeq(tenants)) return text;
  for (const t of tenants.items) {
    if (!isMap(t) || t.get("id") !== ORIGIN_TENANT) continue;
    const services = t.get("services");
    if (!isMap(services)) continue;
    for (const pair of services.items) {
      const svc = pair.value;
      const url = isMap(svc) ? svc.get("url") : undefined;
      if (!isMap(svc) || typeof url !== "string") continue;
      const u = new URL(url);
      u.port = originPort;
      svc.set("url", u.href);
      originPatched++;
      process.stdout.write(`bench policies: ${name}: ${ORIGIN_TENANT}.services.${String(pair.key)}.url = ${u.href}\n`);
    }
  }
  return doc.toString();
}

rmSync(COPY, { recursive: true, force: true });
mkdirSync(COPY, { recursive: true });
let patched = 0;
for (const name of readdirSync(SRC).sort()) {
  if (!name.endsWith(".yaml")) continue;
  const text = readFileSync(join(SRC, name), "utf8");
  const doc = parseDocument(text, { keepSourceTokens: true });
  let out = text;
  if (doc.errors.length === 0 && doc.hasIn(["gateway"])) {
    for (const key of ["global_rps", "global_burst", "per_ip_rps", "per_ip_burst"]) {
      doc.setIn(["gateway", "handshake_limit", key], BENCH_HANDSHAKE_LIMIT);
    }
    out = doc.toString();
    patched++;
  }
  writeFileSync(join(COPY, name), out);
}
for (const name of readdirSync(BENCH_SRC).sort()) {
  if (!name.endsWith(".yaml")) continue;
  // A name clash would silently replace a file of policies/: refuse it instead.
  if (readdirSync(COPY).includes(name)) {
    process.stderr.write(`bench/policies/${name}: policies/ has a file of that name; rename it\n`);
    process.exit(1);
  }
  const text = readFileSync(join(BENCH_SRC, name), "utf8");
  writeFileSync(join(COPY, name), withOriginPort(text, name));
}
if (originPort !== undefined && originPatched === 0) {
  process.stderr.write(`BENCH_ORIGIN_PORT is set but bench/policies/ has no ${ORIGIN_TENANT} tenant with an origin service\n`);
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  [join(ROOT, "scripts/compile-policies.ts"), "--dir", COPY, "--out", join(OUT, "policies.ts"), "--schema", join(OUT, "policy.schema.json")],
  { cwd: ROOT, stdio: "inherit" },
);
if (r.status === 0) {
  process.stdout.write(
    patched > 0
      ? `bench policies: gateway.handshake_limit rps/burst set to ${BENCH_HANDSHAKE_LIMIT} (one IP, many connections); everything else as policies/, plus bench/policies/\n`
      : "bench policies: as policies/ (no gateway block), plus bench/policies/\n",
  );
}
process.exit(r.status ?? 1);
