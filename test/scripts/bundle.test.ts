/**
 * The deployable bundle: built the way `wrangler deploy` builds it (the policy
 * compiler runs first, as wrangler's [build] command), and checked to contain
 * the compiled policies but no YAML parser or schema validator for them, and
 * nothing of the bench's partyserver peer.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

describe("wrangler deploy --dry-run", () => {
  it("bundles the compiled policies, no YAML parser and no partyserver", () => {
    const out = mkdtempSync(join(tmpdir(), "wsprism-bundle-"));
    execFileSync("node_modules/.bin/wrangler", ["deploy", "--dry-run", "--outdir", out], {
      stdio: "pipe",
      env: { ...process.env, CI: "1", WRANGLER_SEND_METRICS: "false" },
    });
    const files = readdirSync(out).filter((f) => f.endsWith(".js"));
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
    // Nor partyserver: a devDependency for the bench's peer (bench/entry.ts) only.
    // Its header names are string literals, kept by any minifier.
    for (const marker of ["x-partykit-props", "x-partykit-room"]) {
      expect(code, marker).not.toContain(marker);
    }
  });
});
