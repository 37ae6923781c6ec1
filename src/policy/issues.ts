/**
 * Step 3 of compile.ts, the reporting half: a zod issue from PolicyFileSchema
 * (schema.ts) -> errors at the offending key or value of the file, with a "did you
 * mean" for an unknown key and, for a service, the union branch the author meant.
 */
import type { z } from "zod";
import { isObj, own } from "./load.ts";
import type { Path, SourceFile } from "./load.ts";
import { show } from "./schema-common.ts";

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** Report `issue` (found under `prefix`) as errors of `file`. */
export function reportIssue(file: SourceFile, issue: z.core.$ZodIssue, prefix: Path): void {
  const path: Path = [...prefix, ...(issue.path as Path)];
  const input = (issue as { input?: unknown }).input;

  switch (issue.code) {
    case "unrecognized_keys": {
      const allowed = issue.message.startsWith("expected one of: ")
        ? issue.message.slice("expected one of: ".length).split(", ")
        : [];
      for (const key of issue.keys) {
        const near = allowed
          .map((k) => ({ k, d: levenshtein(key, k) }))
          .filter((x) => x.d <= Math.max(1, Math.floor(key.length / 4)))
          .sort((a, b) => a.d - b.d)[0];
        const hint = near ? `, did you mean "${near.k}"?` : allowed.length ? ` (expected one of: ${allowed.join(", ")})` : "";
        file.error(file.offsetOf([...path, key], "key"), [...path, key], `unknown key "${key}"${hint}`);
      }
      return;
    }
    case "invalid_key": {
      const inner = issue.issues[0]?.message ?? issue.message;
      file.error(file.offsetOf(path, "key"), path, inner);
      return;
    }
    case "invalid_union": {
      if (issue.errors.length === 0) {
        // A discriminated union whose discriminator matched nothing.
        const d = issue as { discriminator?: string; options?: unknown[] };
        if (d.discriminator !== undefined && Array.isArray(d.options)) {
          const value = isObj(input) ? own(input, d.discriminator) : undefined;
          const choices = d.options.map(String).join(", ");
          if (!isObj(input)) {
            // The parent is not a mapping at all: report at the parent.
            const parent = path.slice(0, -1);
            file.error(file.offsetOf(parent, "value"), parent, issue.message);
          } else if (value === undefined) {
            file.error(file.offsetOf(path, "value"), path, `required (expected one of: ${choices})`);
          } else {
            file.error(file.offsetOf(path, "value"), path, `expected one of: ${choices}, got ${show(value)}`);
          }
          return;
        }
        file.error(file.offsetOf(path, "value"), path, issue.message);
        return;
      }
      // The service union: {handler: broadcast} | origin. Pick the branch the author meant.
      if (!isObj(input)) {
        file.error(
          file.offsetOf(path, "value"),
          path,
          `expected a service: {handler: broadcast} or an origin {url, secret_env, ...}, got ${show(input)}`,
        );
        return;
      }
      const branch = Object.hasOwn(input, "handler") ? issue.errors[0] : issue.errors[issue.errors.length - 1];
      for (const inner of branch ?? []) reportIssue(file, inner, path);
      return;
    }
    default:
      file.error(file.offsetOf(path, "value"), path, issue.message);
  }
}
