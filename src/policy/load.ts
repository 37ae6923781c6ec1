/**
 * Loading one policy file (steps 1 and 2 of compile.ts): YAML text -> plain data,
 * with the source offsets of every key and value, and the file's errors, each at an
 * offset, rendered as `<file>:<line>:<col>: <key path>: <message>`.
 *
 *   1. `yaml.parseDocument` with a LineCounter (syntax errors, duplicate keys).
 *   2. Our own node -> JS conversion (toData): plain data in null-prototype objects,
 *      a `__proto__` key rejected, aliases expanded with a budget, non-core tags
 *      rejected, and a side table path -> source offsets for error positions.
 *
 * Pure, like the rest of the compiler: no fs, no node: imports.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document, Node as YamlNode } from "yaml";
import { show } from "./schema-common.ts";
import type { PolicyFile } from "./schema.ts";

/** Expanding aliases may not produce more than this many nodes per file (billion laughs). */
const NODE_BUDGET = 200_000;
const MAX_DEPTH = 64;
const CORE_TAGS = new Set(
  ["str", "int", "float", "bool", "null", "map", "seq"].map((t) => `tag:yaml.org,2002:${t}`),
);

export type Path = (string | number)[];
export type Data = unknown;
export type Obj = Record<string, Data>;

interface Loc {
  /** Offset of the key (mapping entries only). */
  key?: number;
  /** Offset and end of the value. */
  start: number;
  end: number;
  /** The value is an empty scalar (`key:` with nothing after it): point at the key. */
  empty?: boolean;
}

interface FileError {
  offset: number;
  path: Path;
  message: string;
}

class ConversionLimit extends Error {}

/* ------------------------------------------------------------------ helpers */

export function isObj(v: Data): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function own(o: Obj, key: string): Data {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

/** `tenants[0].services.chat.url`; `(root)` for the file itself. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else {
      const s = String(seg);
      if (/^[A-Za-z0-9_-]+$/.test(s)) out += out === "" ? s : `.${s}`;
      else out += `[${JSON.stringify(s)}]`;
    }
  }
  return out === "" ? "(root)" : out;
}

function pathKey(path: readonly PropertyKey[]): string {
  return JSON.stringify(path.map((p) => (typeof p === "number" ? p : String(p))));
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, " ").trim();
}

/* ------------------------------------------------------------------ one file */

/**
 * One policy file: its text, the data it holds once loaded, where each value is in
 * the text, and the errors found in it by any step of the compiler.
 */
export class SourceFile {
  readonly errors: FileError[] = [];
  readonly locs = new Map<string, Loc>();
  /** Offsets of keys not in `locs` (duplicates), for naming the path of a YAML error. */
  private readonly keyAt = new Map<number, Path>();
  private readonly lines = new LineCounter();
  private doc: Document.Parsed | undefined;
  private nodes = 0;
  data: Data = undefined;
  parsed: PolicyFile | undefined;
  readonly name: string;
  readonly text: string;

  constructor(name: string, text: string) {
    this.name = name;
    this.text = text;
  }

  position(offset: number): string {
    const { line, col } = this.lines.linePos(Math.max(0, Math.min(offset, this.text.length)));
    return `${line}:${col}`;
  }

  error(offset: number, path: Path, message: string): void {
    this.errors.push({ offset, path, message: oneLine(message) });
  }

  /** Offset for an error about `path`: the key for "key" errors, else the value, else the nearest ancestor. */
  offsetOf(path: Path, kind: "key" | "value"): number {
    const loc = this.locs.get(pathKey(path));
    if (loc) {
      if (kind === "key" || loc.empty) return loc.key ?? loc.start;
      return loc.start;
    }
    for (let n = path.length - 1; n >= 0; n--) {
      const parent = this.locs.get(pathKey(path.slice(0, n)));
      if (parent) return parent.empty ? (parent.key ?? parent.start) : parent.start;
    }
    return 0;
  }

  /** Path of the innermost node holding `offset`, for YAML syntax errors. */
  pathAt(offset: number): Path {
    const dup = this.keyAt.get(offset);
    if (dup) return dup;
    let best: Path = [];
    let bestLen = -1;
    for (const [key, loc] of this.locs) {
      // Strictly after the key: a broken document can yield a key that starts at the error itself.
      const inside = loc.key === undefined ? offset >= loc.start : offset > loc.key;
      if (inside && offset < Math.max(loc.end, (loc.key ?? loc.start) + 1)) {
        const path = JSON.parse(key) as Path;
        if (path.length > bestLen) {
          best = path;
          bestLen = path.length;
        }
      }
    }
    return best;
  }

  /**
   * Steps 1 and 2: parse the YAML and convert it into `data`. False when the file
   * has errors (all reported); `data` is still set when only the conversion found
   * some (a rejected key, an unsupported tag), so the checks across files see it.
   */
  load(): boolean {
    const doc = parseDocument(this.text, {
      lineCounter: this.lines,
      prettyErrors: false,
      uniqueKeys: true,
      strict: true,
      schema: "core",
      version: "1.2",
      keepSourceTokens: false,
    });
    this.doc = doc;
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length > 0) {
      // Build the position table (best effort) so syntax errors can name a key path.
      try {
        this.toData(doc.contents as YamlNode | null, [], [], undefined);
      } catch {
        /* the document is broken; positions without paths are fine */
      }
      this.errors.length = 0;
      for (const p of problems) {
        const offset = p.pos[0];
        this.error(offset, this.pathAt(offset), `invalid YAML: ${p.message}`);
      }
      return false;
    }

    try {
      this.data = this.toData(doc.contents as YamlNode | null, [], [], undefined);
    } catch (e) {
      if (e instanceof ConversionLimit) return false;
      throw e;
    }
    return this.errors.length === 0;
  }

  /** The errors as `<file>:<line>:<col>: <key path>: <message>`, in source order (ties in the order found). */
  messages(): string[] {
    return this.errors
      .map((e, i) => ({ e, i }))
      .sort((a, b) => a.e.offset - b.e.offset || a.i - b.i)
      .map(({ e }) => `${this.name}:${this.position(e.offset)}: ${formatPath(e.path)}: ${e.message}`);
  }

  /* ---------------------------------------------------------------- YAML -> data */

  private toData(node: YamlNode | null, path: Path, stack: YamlNode[], keyOffset: number | undefined): Data {
    if (node === null || node === undefined) {
      // An empty document.
      this.locs.set(pathKey(path), { key: keyOffset, start: keyOffset ?? 0, end: keyOffset ?? 0, empty: true });
      return null;
    }
    if (++this.nodes > NODE_BUDGET) {
      this.error(node.range?.[0] ?? 0, path, `too many nodes (over ${NODE_BUDGET}): aliases expand to too much data`);
      throw new ConversionLimit();
    }
    if (stack.length > MAX_DEPTH) {
      this.error(node.range?.[0] ?? 0, path, `nested deeper than ${MAX_DEPTH} levels`);
      throw new ConversionLimit();
    }
    const [start, , end] = node.range ?? [0, 0, 0];
    const isEmpty = isScalar(node) && node.value === null && start === node.range?.[1] && keyOffset !== undefined;
    const loc: Loc = { key: keyOffset, start, end, empty: isEmpty || undefined };
    this.locs.set(pathKey(path), loc);

    if (isAlias(node)) {
      const target = this.doc ? node.resolve(this.doc) : undefined;
      if (!target) {
        this.error(start, path, `unknown alias *${node.source}`);
        return undefined;
      }
      if (stack.includes(target)) {
        this.error(start, path, `alias *${node.source} refers to a node that contains it`);
        return undefined;
      }
      const value = this.toData(target, path, [...stack, node], keyOffset);
      // Errors about the value itself point at the alias; errors inside it at the anchored nodes.
      this.locs.set(pathKey(path), loc);
      return value;
    }

    const tag = (node as { tag?: string }).tag;
    if (tag !== undefined && !CORE_TAGS.has(tag)) {
      this.error(start, path, `unsupported YAML tag ${tag.replace("tag:yaml.org,2002:", "!!")}`);
      return undefined;
    }

    if (isScalar(node)) {
      const v = node.value;
      if (v === null || typeof v === "string" || typeof v === "number" || typeof v === "boolean") return v;
      this.error(start, path, `unsupported value (${typeof v})`);
      return undefined;
    }

    if (isSeq(node)) {
      const out: Data[] = [];
      node.items.forEach((item, i) => {
        out.push(this.toData(item as YamlNode | null, [...path, i], [...stack, node], undefined));
      });
      return out;
    }

    if (isMap(node)) {
      const out: Obj = Object.create(null) as Obj;
      for (const pair of node.items) {
        const keyNode = pair.key as YamlNode | null;
        const kStart = keyNode?.range?.[0] ?? start;
        if (!isScalar(keyNode)) {
          this.error(kStart, path, "keys must be plain strings or numbers");
          continue;
        }
        const kv = keyNode.value;
        if (typeof kv !== "string" && typeof kv !== "number" && typeof kv !== "boolean") {
          this.error(kStart, path, `keys must be plain strings or numbers, got ${show(kv)}`);
          continue;
        }
        const key = String(kv);
        const childPath = [...path, key];
        if (key === "__proto__") {
          this.error(kStart, childPath, 'the key "__proto__" is not allowed');
          continue;
        }
        if (Object.hasOwn(out, key)) {
          this.keyAt.set(kStart, childPath);
          this.error(kStart, childPath, `duplicate key "${key}"`);
          continue;
        }
        const valueNode = pair.value as YamlNode | null;
        if (valueNode === null) {
          // `? key` with no value: treat as an empty value at the key.
          this.locs.set(pathKey(childPath), { key: kStart, start: kStart, end: kStart, empty: true });
          out[key] = null;
          continue;
        }
        out[key] = this.toData(valueNode, childPath, [...stack, node], kStart);
      }
      return out;
    }

    this.error(start, path, "unsupported YAML node");
    return undefined;
  }
}
