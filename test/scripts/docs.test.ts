/**
 * Docs that cannot rot (issue 18): checks on the Markdown a user reads, run by
 * `npm test` in the node project.
 *
 * - YAML examples. Every ```yaml (or ```yml) block in README.md, docs/*.md and
 *   client/README.md is a complete policy file that the project's compiler
 *   (src/policy/compile.ts) accepts, unless the line right before its fence is
 *   a marker comment (invisible on GitHub):
 *     <!-- fragment: tenant -->  the keys of one tenant, without `id`: compiled
 *                                as the only tenant of a file (with
 *                                `auth: {mode: dev}` when the block has no auth);
 *     <!-- fragment: file -->    a policy file without its `version: 1` line (a
 *                                `gateway` or `tenants` excerpt): compiled with it;
 *     <!-- fragment -->          not compiled (placeholders, a partial excerpt,
 *                                YAML that is no policy such as prometheus.yml),
 *                                but it must still parse as YAML.
 * - Every key of the generated JSON Schema (policies/policy.schema.json, every
 *   `properties` at any depth) appears in docs/configuration.md in backticks
 *   (`key`, or a dotted path ending in it), and so does every enum value.
 * - Every relative link and #anchor in those files resolves: the file or
 *   directory exists, and an anchor into a Markdown file matches one of its
 *   headings (GitHub's slug style, `-1` for a repeat) or an `<a id>`.
 * - No tracked Markdown file (git ls-files '*.md') is over 512 KiB: a runaway
 *   edit (docs/configuration.md once grew to 7 MB) fails here, not in review.
 *
 * The last block checks the checkers themselves on broken input, so none of them
 * can silently pass everything.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  anchors,
  checkYamlExample,
  codeSpans,
  documentedInBackticks,
  fences,
  githubSlug,
  inCodeSpan,
  isExternal,
  links,
  schemaEnums,
  schemaKeys,
  unlinkedSpecSections,
} from "./lib/markdown.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const MAX_MD_BYTES = 512 * 1024;

/** The Markdown a user reads, relative to ROOT. */
const DOCS = [
  "README.md",
  "client/README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`),
];

const read = (file: string) => readFileSync(join(ROOT, file), "utf8");

/** Broken relative links of one file (`where: target: why`). */
function brokenLinks(file: string, md: string, readFile: (abs: string) => string | null): string[] {
  const out: string[] = [];
  for (const { line, target } of links(md)) {
    if (isExternal(target)) continue;
    const hash = target.indexOf("#");
    const path = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
    const anchor = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
    const abs = path === "" ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), path);
    const where = `${file}:${line}: ${target}`;
    const text = readFile(abs);
    if (text === null) {
      out.push(`${where}: ${relative(ROOT, abs)} does not exist`);
      continue;
    }
    if (anchor === null || !abs.endsWith(".md")) continue;
    if (!anchors(text).has(anchor)) out.push(`${where}: no heading or <a id> "${anchor}" in ${relative(ROOT, abs)}`);
  }
  return out;
}

/** Contents of a file ("" for a directory), or null when it does not exist. */
function fromDisk(abs: string): string | null {
  if (!existsSync(abs)) return null;
  return statSync(abs).isDirectory() ? "" : readFileSync(abs, "utf8");
}

/** Tracked Markdown files over the size bound. */
function oversized(files: string[], size: (file: string) => number): string[] {
  return files.filter((f) => size(f) > MAX_MD_BYTES).map((f) => `${f}: ${size(f)} bytes (over ${MAX_MD_BYTES})`);
}

/** Schema keys and enum values that docs/configuration.md does not mention in backticks. */
function undocumented(schema: unknown, md: string): string[] {
  const spans = codeSpans(md);
  const keys = [...schemaKeys(schema)].filter((k) => !documentedInBackticks(spans, k)).map((k) => `key \`${k}\``);
  const values = [...schemaEnums(schema)].filter((v) => !inCodeSpan(spans, v)).map((v) => `value \`${v}\``);
  return [...keys, ...values];
}

describe("docs", () => {
  it("every ```yaml example compiles with the policy compiler, or is a marked fragment that parses", () => {
    const problems: string[] = [];
    let count = 0;
    for (const file of DOCS) {
      for (const block of fences(read(file))) {
        if (block.lang !== "yaml" && block.lang !== "yml") continue;
        count++;
        problems.push(...checkYamlExample(`${file} (yaml block at line ${block.line})`, block));
      }
    }
    expect(problems).toEqual([]);
    expect(count).toBeGreaterThan(10); // the files were found and read
  });

  it("every key and enum value of policies/policy.schema.json is documented in docs/configuration.md", () => {
    const schema: unknown = JSON.parse(read("policies/policy.schema.json"));
    expect(schemaKeys(schema).size).toBeGreaterThan(50);
    expect(undocumented(schema, read("docs/configuration.md"))).toEqual([]);
  });

  it("every relative link and #anchor resolves", () => {
    const problems = DOCS.flatMap((file) => brokenLinks(file, read(file), fromDisk));
    expect(problems).toEqual([]);
  });

  it('every "SPEC section N" links to section N of docs/protocol.md (the SPEC itself is not published)', () => {
    expect(DOCS.flatMap((file) => unlinkedSpecSections(file, read(file)))).toEqual([]);
  });

  it("no tracked Markdown file is over 512 KiB", () => {
    const git = spawnSync("git", ["ls-files", "-z", "--", "*.md"], { cwd: ROOT, encoding: "utf8" });
    expect(git.status, git.stderr).toBe(0);
    const files = git.stdout.split("\0").filter((f) => f !== "" && existsSync(join(ROOT, f)));
    expect(files).toEqual(expect.arrayContaining(DOCS));
    expect(oversized(files, (f) => statSync(join(ROOT, f)).size)).toEqual([]);
  });
});

describe("the docs checkers catch what they should", () => {
  it("slugs headings as GitHub does", () => {
    expect(githubSlug("6. Origin webhooks")).toBe("6-origin-webhooks");
    expect(githubSlug("The auth callback (`auth.mode: origin`)")).toBe("the-auth-callback-authmode-origin");
    expect(githubSlug("`gateway.handshake_limit`")).toBe("gatewayhandshake_limit");
    expect(githubSlug("Refusals on a socket (clients that offered `wsprism.v1`)")).toBe(
      "refusals-on-a-socket-clients-that-offered-wsprismv1",
    );
    expect([...anchors("# A\n## A\n```\n# not a heading\n```\n<a id=\"x\"></a>\n")]).toEqual(["a", "a-1", "x"]);
  });

  it("reports a YAML example that does not compile, a fragment that does not parse, and an unknown marker", () => {
    const ok = "version: 1\ntenants:\n  - id: a\n    auth: { mode: dev }\n";
    expect(checkYamlExample("x", { text: ok, before: "" })).toEqual([]);
    expect(checkYamlExample("x", { text: ok.replace("auth:", "auht:"), before: "" }).join("\n")).toMatch(/unknown key "auht"/);
    expect(checkYamlExample("x", { text: "limits:\n  max_frame_bytes: 10\n", before: "<!-- fragment: tenant -->" }).join("\n")).toMatch(
      /max_frame_bytes: expected an integer between 64 and 1048576, got 10/,
    );
    expect(checkYamlExample("x", { text: "presence: true\n", before: "<!-- fragment: tenant -->" })).toEqual([]);
    expect(checkYamlExample("x", { text: "gateway:\n  idle_timeout_ms: 1\n", before: "<!-- fragment: file -->" })).not.toEqual([]);
    expect(checkYamlExample("x", { text: "gateway: {...}\n", before: "<!-- fragment -->" })).toEqual([]);
    expect(checkYamlExample("x", { text: "a: [1, 2\n", before: "<!-- fragment -->" }).join("\n")).toMatch(/invalid YAML/);
    expect(checkYamlExample("x", { text: "a: 1\n", before: "<!-- fragment: nonsense -->" }).join("\n")).toMatch(/unknown marker/);
  });

  it("reports an undocumented schema key or enum value", () => {
    const schema = { properties: { a: { properties: { deep_key: { enum: ["one", "two"] } } } } };
    expect(undocumented(schema, "`a`, `x.deep_key`: `one` or `mode: two`")).toEqual([]);
    expect(undocumented(schema, "`a`, deep_key: `one`")).toEqual(["key `deep_key`", "value `two`"]);
    // Between two code spans is not a code span; a fenced example is not documentation.
    expect(undocumented(schema, "`a`, `x.deep_key`: `one`, two, `three`\n```\nmode: two\n```\n")).toEqual(["value `two`"]);
  });

  it("reports a missing file, a missing anchor, and ignores links in code", () => {
    const files: Record<string, string> = { [join(ROOT, "docs/b.md")]: "# Real heading\n" };
    const readFile = (abs: string) => files[abs] ?? null;
    const md = "[ok](b.md#real-heading) [gone](c.md) [bad](b.md#no-such)\n`[code](nowhere.md)`\n```\n[x](y.md)\n```\n[self](#top)\n# Top\n";
    expect(brokenLinks("docs/a.md", md, (abs) => (abs === join(ROOT, "docs/a.md") ? md : readFile(abs)))).toEqual([
      "docs/a.md:1: c.md: docs/c.md does not exist",
      'docs/a.md:1: b.md#no-such: no heading or <a id> "no-such" in docs/b.md',
    ]);
  });

  it('reports a "SPEC section N" that is not a link to section N of docs/protocol.md', () => {
    const md = [
      "[SPEC section 10](protocol.md#10-resume-and-recovery) ok, [SPEC section 2](../docs/protocol.md#2-connecting) ok,",
      "SPEC section 4 bare, [SPEC section 5](protocol.md#4-ext-lane) wrong section, [SPEC section 6](origins.md#6-x) wrong file,",
      "`SPEC section 7` in code is fine",
    ].join("\n");
    expect(unlinkedSpecSections("docs/a.md", md)).toEqual(["docs/a.md:2: SPEC section 4", "docs/a.md:2: SPEC section 5", "docs/a.md:2: SPEC section 6"]);
    expect(unlinkedSpecSections("client/README.md", "[SPEC section 2](../docs/protocol.md#2-connecting)")).toEqual([]);
    expect(unlinkedSpecSections("README.md", "see SPEC\nsection 3")).toEqual(["README.md:1: SPEC section 3"]);
  });

  it("reports an oversized Markdown file", () => {
    expect(oversized(["a.md", "b.md"], (f) => (f === "a.md" ? MAX_MD_BYTES + 1 : 10))).toEqual([
      `a.md: ${MAX_MD_BYTES + 1} bytes (over ${MAX_MD_BYTES})`,
    ]);
  });
});
