/**
 * Policy compiler CLI: policies/*.yaml -> src/policy/generated.ts (+ policies/policy.schema.json).
 *
 *   node scripts/compile-policies.ts [--dir <dir>]... [--out <file>] [--schema <file>]
 *
 *   --dir <dir>     a directory of *.yaml policy files; repeatable; replaces the default (policies)
 *   --out <file>    the generated module (default src/policy/generated.ts)
 *   --schema <file> where the JSON Schema goes (default policies/policy.schema.json)
 *
 * Runs on Node 22 with native type stripping (wrangler's [build] command, npm scripts).
 * Files are written only when their content changes, so `wrangler dev`, which watches
 * the policies and re-runs this, does not rebuild for nothing.
 * Exit status: 0 ok, 1 policy errors (one per line on stderr), 2 bad usage.
 *
 * With WSPRISM_ORIGIN_PORT set (npm start -- --origin-port M sets it, for its own
 * run of this and for wrangler's [build]), the demo's loopback origin URLs
 * (http://127.0.0.1:8788…) are compiled with that port instead: see start-options.ts.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { compilePolicies, policyJsonSchema, renderModule } from "../src/policy/compile.ts";
import type { PolicySource } from "../src/policy/compile.ts";
import { DEFAULT_ORIGIN_PORT, parsePort, rewriteOriginPort } from "./start-options.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const TYPES = resolve(ROOT, "src/policy/types.ts");
const USAGE = "usage: node scripts/compile-policies.ts [--dir <dir>]... [--out <file>] [--schema <file>]";

function slash(p: string): string {
  return sep === "/" ? p : p.split(sep).join("/");
}

/** A path as shown to the operator: relative to the working directory when inside it. */
function display(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? slash(abs) : slash(rel);
}

/** Write `content` to `file` unless it already holds exactly that. Returns whether it wrote. */
function writeIfChanged(file: string, content: string): boolean {
  if (existsSync(file) && readFileSync(file, "utf8") === content) return false;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content);
  return true;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function main(argv: string[]): number {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        dir: { type: "string", multiple: true },
        out: { type: "string" },
        schema: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`policies: ${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  const portText = process.env.WSPRISM_ORIGIN_PORT;
  const originPort = portText === undefined || portText === "" ? DEFAULT_ORIGIN_PORT : parsePort("WSPRISM_ORIGIN_PORT", portText);
  if (typeof originPort === "string") {
    process.stderr.write(`policies: ${originPort}\n`);
    return 2;
  }
  if (originPort !== DEFAULT_ORIGIN_PORT) {
    process.stdout.write(`policies: WSPRISM_ORIGIN_PORT=${originPort}: http://127.0.0.1:${DEFAULT_ORIGIN_PORT} compiled as http://127.0.0.1:${originPort}\n`);
  }

  const dirs = (args.dir ?? [resolve(ROOT, "policies")]).map((d) => resolve(d));
  const out = args.out ? resolve(args.out) : resolve(ROOT, "src/policy/generated.ts");
  const schemaOut = args.schema ? resolve(args.schema) : resolve(ROOT, "policies/policy.schema.json");

  const errors: string[] = [];
  const seen = new Set<string>();
  const sources: PolicySource[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      errors.push(`${display(dir)}: cannot read the policy directory: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      continue;
    }
    for (const name of names.sort()) {
      const file = resolve(dir, name);
      if (name.endsWith(".yml")) {
        process.stderr.write(`policies: ignoring ${display(file)} (only *.yaml files are compiled)\n`);
      }
      if (!name.endsWith(".yaml") || seen.has(file)) continue;
      seen.add(file);
      sources.push({ name: display(file), text: rewriteOriginPort(readFileSync(file, "utf8"), originPort) });
    }
  }
  if (errors.length === 0 && sources.length === 0) {
    errors.push(`${dirs.map(display).join(", ")}: no *.yaml policy files found`);
  }
  if (errors.length === 0) {
    const result = compilePolicies(sources);
    if (!result.ok) errors.push(...result.errors);
    else {
      let typesImport = slash(relative(dirname(out), TYPES));
      if (!typesImport.startsWith(".")) typesImport = `./${typesImport}`;
      const wroteModule = writeIfChanged(out, renderModule(result.policies, typesImport));
      const wroteSchema = writeIfChanged(schemaOut, `${JSON.stringify(policyJsonSchema(), null, 2)}\n`);
      const tenants = result.policies.tenants.length;
      const note = wroteModule || wroteSchema ? "" : " (unchanged)";
      process.stdout.write(
        `policies: ${plural(tenants, "tenant")} from ${plural(sources.length, "file")} -> ${display(out)}${note}\n`,
      );
      return 0;
    }
  }
  for (const line of errors) process.stderr.write(`${line}\n`);
  return 1;
}

process.exitCode = main(process.argv.slice(2));
