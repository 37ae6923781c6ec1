/**
 * `npm start -- --port N --origin-port M` (issue 19 item 9): the ports of the
 * gateway and of the example origin, from flags or WSPRISM_PORT /
 * WSPRISM_ORIGIN_PORT, and the demo policy's origin URL following the origin's
 * port. Binds no port: the argument parsing and the URL rewrite are pure, and
 * the compiler CLI runs on a temp output.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_ORIGIN_PORT, DEFAULT_PORT, parseStartOptions, rewriteOriginPort } from "../../scripts/start-options.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const NODE = join(ROOT, "node_modules/.bin/node");
const temps: string[] = [];
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

describe("npm start options", () => {
  it("defaults to 8787 and 8788", () => {
    expect(DEFAULT_PORT).toBe(8787);
    expect(DEFAULT_ORIGIN_PORT).toBe(8788);
    expect(parseStartOptions([], {})).toEqual({ ok: true, port: 8787, originPort: 8788 });
  });

  it("takes --port and --origin-port (also as --flag=value), over WSPRISM_PORT and WSPRISM_ORIGIN_PORT", () => {
    expect(parseStartOptions(["--port", "9787", "--origin-port", "9788"], {})).toEqual({ ok: true, port: 9787, originPort: 9788 });
    expect(parseStartOptions(["--port=9001", "--origin-port=9002"], {})).toEqual({ ok: true, port: 9001, originPort: 9002 });
    expect(parseStartOptions([], { WSPRISM_PORT: "9100", WSPRISM_ORIGIN_PORT: "9101" })).toEqual({ ok: true, port: 9100, originPort: 9101 });
    expect(parseStartOptions(["--port", "9200"], { WSPRISM_PORT: "9100", WSPRISM_ORIGIN_PORT: "9101" })).toEqual({
      ok: true,
      port: 9200,
      originPort: 9101,
    });
    expect(parseStartOptions([], { WSPRISM_PORT: "" })).toEqual({ ok: true, port: 8787, originPort: 8788 });
  });

  it("refuses what is not a port, the same port twice, and unknown flags, saying why", () => {
    for (const [argv, env, why] of [
      [["--port", "0"], {}, /--port: expected a port \(1-65535\), got "0"/],
      [["--port", "70000"], {}, /--port/],
      [["--origin-port", "12ab"], {}, /--origin-port: expected a port/],
      [[], { WSPRISM_ORIGIN_PORT: "x" }, /WSPRISM_ORIGIN_PORT: expected a port/],
      [["--port", "9000", "--origin-port", "9000"], {}, /must differ/],
      [["--prot", "9000"], {}, /Unknown option '--prot'/],
      [["--port"], {}, /--port/],
    ] as const) {
      const r = parseStartOptions([...argv], env as Record<string, string>);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(why);
    }
    const help = parseStartOptions(["--help"], {});
    expect(help).toMatchObject({ ok: false, help: true });
  });

  it("rewrites the demo's loopback origin URLs to the origin's port, and nothing else", () => {
    const yaml = [
      "url: http://127.0.0.1:8788/hooks/chat",
      'origin_url: "http://127.0.0.1:8788/auth"',
      "url: http://127.0.0.1:87889/x",
      "url: https://api.example.com:8788/hooks",
      "url: http://127.0.0.1:8788",
    ].join("\n");
    expect(rewriteOriginPort(yaml, 9788)).toBe(
      [
        "url: http://127.0.0.1:9788/hooks/chat",
        'origin_url: "http://127.0.0.1:9788/auth"',
        "url: http://127.0.0.1:87889/x",
        "url: https://api.example.com:8788/hooks",
        "url: http://127.0.0.1:9788",
      ].join("\n"),
    );
    expect(rewriteOriginPort(yaml, 8788)).toBe(yaml);
  });

  it("the policy compiler follows WSPRISM_ORIGIN_PORT (as wrangler's [build] runs it under npm start)", () => {
    const dir = mkdtempSync(join(tmpdir(), "wsprism-start-"));
    temps.push(dir);
    const compile = (env: Record<string, string>) => {
      const out = join(dir, "generated.ts");
      const r = spawnSync(NODE, ["scripts/compile-policies.ts", "--out", out, "--schema", join(dir, "schema.json")], {
        cwd: ROOT,
        encoding: "utf8",
        env: { ...process.env, WSPRISM_ORIGIN_PORT: "", ...env },
      });
      expect(r.status, r.stderr).toBe(0);
      return { module: readFileSync(out, "utf8"), stdout: r.stdout };
    };
    const moved = compile({ WSPRISM_ORIGIN_PORT: "9788" });
    expect(moved.module).toContain("http://127.0.0.1:9788/hooks/chat");
    expect(moved.module).not.toContain("127.0.0.1:8788");
    expect(moved.stdout).toMatch(/WSPRISM_ORIGIN_PORT=9788/);
    const plain = compile({});
    expect(plain.module).toContain("http://127.0.0.1:8788/hooks/chat");
    // A bad value is refused, not ignored.
    const bad = spawnSync(NODE, ["scripts/compile-policies.ts", "--out", join(dir, "x.ts"), "--schema", join(dir, "s.json")], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, WSPRISM_ORIGIN_PORT: "nope" },
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/WSPRISM_ORIGIN_PORT/);
  });
});
