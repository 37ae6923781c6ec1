/**
 * @wsprism/client as another project gets it (issue 10, "nobody can install it"):
 * the core bundle stays within its size budget, and `npm pack` in client/ gives a
 * tarball that installs on its own, imports in Node and type-checks in a
 * TypeScript project, as client/README.md's first lines say.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const CLIENT = join(ROOT, "client");
/** Minified with esbuild, then gzip -9: what a browser downloads from a bundle of the core entry. */
const BUDGET_GZIP_BYTES = 6 * 1024;

const temps: string[] = [];
const temp = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

describe("@wsprism/client package", () => {
  it(`the core entry bundles to at most ${BUDGET_GZIP_BYTES} bytes minified and gzipped`, async () => {
    const out = await build({
      entryPoints: [join(CLIENT, "src/index.ts")],
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      logLevel: "silent",
    });
    const code = out.outputFiles[0]!.text;
    const gz = gzipSync(code, { level: 9 }).length;
    console.log(`core bundle: ${code.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET_GZIP_BYTES})`);
    expect(gz).toBeLessThanOrEqual(BUDGET_GZIP_BYTES);
    expect(code).not.toMatch(/from\s*["']/); // dependency-free: nothing left to import
  });

  it("declares what an installer needs: exports with types, files, a license, a version, a build on prepack (not prepare)", () => {
    const pkg = JSON.parse(readFileSync(join(CLIENT, "package.json"), "utf8"));
    expect(pkg.name).toBe("@wsprism/client");
    expect(pkg.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(pkg.license).toBe("MIT");
    expect(pkg.exports["."]).toMatchObject({ types: "./dist/index.d.ts", import: "./dist/index.js" });
    expect(pkg.files).toEqual(expect.arrayContaining(["dist", "README.md", "LICENSE"]));
    // prepack builds dist/ for `npm pack`; a prepare script would also ship in the
    // tarball's package.json and make installers warn about an unapproved install script.
    expect(pkg.scripts.prepack).toBeDefined();
    expect(pkg.scripts.prepare).toBeUndefined();
    expect(pkg.dependencies ?? {}).toEqual({});
  });

  it("states the TypeScript range its declarations need (Uint8Array<ArrayBuffer>: 5.7+), in package.json and the README", () => {
    const pkg = JSON.parse(readFileSync(join(CLIENT, "package.json"), "utf8"));
    // An optional peer: JavaScript users install nothing, TypeScript users see the range.
    expect(pkg.peerDependencies).toEqual({ typescript: ">=5.7" });
    expect(pkg.peerDependenciesMeta).toEqual({ typescript: { optional: true } });
    const readme = readFileSync(join(CLIENT, "README.md"), "utf8");
    expect(readme.slice(0, readme.indexOf("## "))).toMatch(/TypeScript 5\.7 or later/);
  });

  it("npm pack gives a tarball that installs alone, imports in Node 22 and type-checks", () => {
    const packDir = temp("wsprism-pack-");
    const npmEnv = { ...process.env, npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };
    const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", packDir], { cwd: CLIENT, env: npmEnv, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
    const files: string[] = packed[0].files.map((f: { path: string }) => f.path);
    expect(files).toEqual(expect.arrayContaining(["LICENSE", "README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/types.d.ts"]));
    expect(files.filter((f) => f.startsWith("src/"))).toEqual([]);

    const app = temp("wsprism-app-");
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    const installed = spawnSync("npm", ["install", "--offline", join(packDir, packed[0].filename)], { cwd: app, env: npmEnv, encoding: "utf8" });
    expect(installed.status).toBe(0);
    // No warning about the package's scripts (issue 19: "installing the packed SDK warns about its prepare script").
    expect(installed.stderr).not.toMatch(/install-scripts|prepare/);

    writeFileSync(
      join(app, "main.mjs"),
      `import { WsPrismClient, TERMINAL_CLOSE_CODES } from "@wsprism/client";
const c = new WsPrismClient({ url: "ws://127.0.0.1:1", tenant: "t", room: "r", getTicket: () => "x", autoConnect: false });
console.log(JSON.stringify({ status: c.status, terminal4401: TERMINAL_CLOSE_CODES.has(4401) }));`,
    );
    const ran = execFileSync(process.execPath, ["main.mjs"], { cwd: app, encoding: "utf8" });
    expect(JSON.parse(ran)).toEqual({ status: "closed", terminal4401: true });

    writeFileSync(
      join(app, "main.ts"),
      `import { WsPrismClient, WsPrismError, type CloseInfo } from "@wsprism/client";
const c = new WsPrismClient({
  url: "wss://gw.example.com", tenant: "acme", room: "lobby",
  getTicket: async () => ({ ticket: "opaque", exp: 1_900_000_000 }),
  maxRetries: 5, shouldReconnect: ({ code }) => code !== 4401, network: null, debug: true,
});
const last: CloseInfo | null = c.lastClose;
c.on("close", (info) => info.willReconnect);
void c.refresh().catch((e: unknown) => e instanceof WsPrismError && e.code);
export { last };`,
    );
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", lib: ["ES2022", "DOM"], types: [], strict: true, noEmit: true },
        files: ["main.ts"],
      }),
    );
    execFileSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], { cwd: app, stdio: "pipe" });
  }, 120_000);
});
