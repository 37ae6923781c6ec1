/**
 * The build-time policy compiler: policies/*.yaml -> CompiledPolicies (types.ts).
 *
 * Pure: no fs, no node: imports, no globals beyond URL; it runs in Node (the CLI,
 * scripts/compile-policies.ts) and inside workerd (the tests).
 *
 * Pipeline, per file:
 *   1. `yaml.parseDocument` with a LineCounter (syntax errors, duplicate keys).
 *   2. Our own node -> JS conversion: plain data in null-prototype objects, a
 *      `__proto__` key rejected, aliases expanded with a budget, non-core tags
 *      rejected, and a side table path -> source offsets for error positions.
 *      Steps 1 and 2 are load.ts.
 *   3. `PolicyFileSchema.safeParse` (schema.ts): types, ranges, enums, unknown keys,
 *      allowlist entry syntax, env var names, URLs. Defaults applied. issues.ts turns
 *      its issues into errors.
 *   4. Cross-field checks on the raw data (so they run even when step 3 failed
 *      elsewhere in the file): allowlist entries that name undefined services,
 *      duplicate allowlist entries (checks.ts).
 * Then across files (checks.ts): unique tenant ids, at most one `gateway` block, no
 * two jwt tenants accepting the same key without distinct audiences. When no file
 * has an error, output.ts builds the runtime shape; render.ts writes the generated
 * module and the JSON Schema.
 *
 * Every error is one line: `<file>:<line>:<col>: <key path>: <what was expected>`.
 */
import { checkAcrossFiles, crossChecks } from "./checks.ts";
import { reportIssue } from "./issues.ts";
import { isObj, SourceFile } from "./load.ts";
import { compiledPolicies } from "./output.ts";
import { PolicyFileSchema } from "./schema.ts";
import { show } from "./schema-common.ts";
import type { CompiledPolicies } from "./types.ts";

export { normaliseOrigin } from "./checks.ts";
export { formatPath } from "./load.ts";
export { GENERATED_BANNER, policyJsonSchema, renderModule, SCHEMA_COMMENT } from "./render.ts";

export interface PolicySource {
  /** Used verbatim as the file part of error messages and as `source` (e.g. "policies/acme.yaml"). */
  name: string;
  text: string;
}

export type CompileResult =
  | { ok: true; policies: CompiledPolicies }
  | { ok: false; errors: string[] };

/** Steps 1 to 4 for one file; its errors are recorded on it. */
function checkFile(file: SourceFile): void {
  if (!file.load()) return;

  if (!isObj(file.data)) {
    const what = file.data === null ? "an empty file" : show(file.data);
    file.error(file.offsetOf([], "value"), [], `expected a mapping with version: 1, got ${what}`);
    return;
  }

  const result = PolicyFileSchema.safeParse(file.data, { reportInput: true });
  if (result.success) file.parsed = result.data;
  else for (const issue of result.error.issues) reportIssue(file, issue, []);

  crossChecks(file, file.data);
}

/**
 * Compile policy files (in the order given; the CLI sorts them) into the data the
 * gateway loads. Never throws for any input text: problems come back as errors.
 */
export function compilePolicies(files: readonly PolicySource[]): CompileResult {
  const sources: SourceFile[] = [];
  for (const f of files) {
    const file = new SourceFile(f.name, f.text);
    try {
      checkFile(file);
    } catch (e) {
      file.error(0, [], `internal compiler error: ${e instanceof Error ? e.message : String(e)}`);
    }
    sources.push(file);
  }

  checkAcrossFiles(sources);

  const errors: string[] = [];
  const seen = new Set<string>();
  for (const file of sources) {
    for (const line of file.messages()) {
      if (!seen.has(line)) {
        seen.add(line);
        errors.push(line);
      }
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, policies: compiledPolicies(sources) };
}
