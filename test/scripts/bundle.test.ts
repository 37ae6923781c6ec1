/**
 * The deployable bundle: built the way `wrangler deploy` builds it (the policy
 * compiler runs first, as wrangler's [build] command), and checked to contain
 * the compiled policies but no YAML parser or schema validator for them, no
 * zod at all, nothing of the bench's partyserver peer, and to stay within its
 * size budget.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

/**
 * The upload budget, in KiB (wrangler's "Total Upload": the modules, no source
 * map). It was 967 KiB when zod checked envelopes, API bodies and origin answers
 * at runtime, 232 KiB after; a Worker's size is paid in cold-start parse time.
 */
const BUDGET_KIB = 300;

describe("wrangler deploy --dry-run", () => {
  let out = "";
  let stdout = "";
  let modules: string[] = [];

  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), "wsprism-bundle-"));
    stdout = execFileSync("node_modules/.bin/wrangler", ["deploy", "--dry-run", "--outdir", out], {
      stdio: "pipe",
      env: { ...process.env, CI: "1", WRANGLER_SEND_METRICS: "false" },
      encoding: "utf8",
    });
    modules = readdirSync(out).filter((f) => /\.(m?js|wasm)$/.test(f));
  }, 120_000); // a build on a busy machine takes more than the 10 s hook default

  it("bundles the compiled policies, no YAML parser, no zod and no partyserver", () => {
    const files = modules.filter((f) => /\.m?js$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    const code = files.map((f) => readFileSync(join(out, f), "utf8")).join("\n");
    // The demo tenant is in, as data.
    expect(code).toContain('"demo"');
    // The yaml package's parser is not: these identifiers only exist in it.
    for (const marker of ["YAMLParseError", "LineCounter", "parseDocument", "yaml-language-server"]) {
      expect(code, marker).not.toContain(marker);
    }
    // Nor is the policy schema (it lives in src/policy/schema.ts, build-time only).
    expect(code).not.toContain("compilePolicies");
    // Nor zod (the policy compiler's, build time only): every zod schema carries a
    // `_zod` property, a name no minifier renames.
    expect(code).not.toContain("_zod");
    // Nor partyserver: a devDependency for the bench's peer (bench/entry.ts) only.
    // Its header names are string literals, kept by any minifier.
    for (const marker of ["x-partykit-props", "x-partykit-room"]) {
      expect(code, marker).not.toContain(marker);
    }
  });

  it(`stays within the ${BUDGET_KIB} KiB upload budget`, () => {
    // The modules as written (what is uploaded, without the source map).
    const bytes = modules.reduce((sum, f) => sum + statSync(join(out, f)).size, 0);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes / 1024, `modules: ${(bytes / 1024).toFixed(1)} KiB`).toBeLessThanOrEqual(BUDGET_KIB);
    // And wrangler's own figure, when it prints one.
    const total = /Total Upload: ([\d.]+) KiB/.exec(stdout);
    if (total) expect(Number(total[1]), total[0]).toBeLessThanOrEqual(BUDGET_KIB);
  });
});
