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
 * connection storm's tenant), copied as they are.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "policies");
const BENCH_SRC = join(ROOT, "bench/policies");
const OUT = join(ROOT, "bench/.generated");
const COPY = join(OUT, "policies");
export const BENCH_HANDSHAKE_LIMIT = 1_000_000;

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
  copyFileSync(join(BENCH_SRC, name), join(COPY, name));
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
