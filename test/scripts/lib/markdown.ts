/**
 * What the docs tests (test/scripts/docs.test.ts) need to read Markdown the way
 * GitHub renders it, without a Markdown parser: fenced code blocks, heading
 * anchors in GitHub's slug style, links, and the YAML examples checked against
 * the policy compiler. Every function is pure: text in, findings out.
 */
import { parseDocument } from "yaml";
import { compilePolicies } from "../../../src/policy/compile.ts";

export interface Fence {
  /** The info string's first word (`yaml`, `ts`, ...; "" when none). */
  lang: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The block's text, its fence's indentation removed. */
  text: string;
  /** The nearest line before the fence (trimmed): where a marker comment goes. */
  before: string;
}

const FENCE_RE = /^( {0,12})(`{3,}|~{3,})\s*([^\s`]*)/;

/** The fenced code blocks of a Markdown text, in order. An unclosed fence runs to the end. */
export function fences(md: string): Fence[] {
  const lines = md.split("\n");
  const out: Fence[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE_RE.exec(lines[i]!);
    if (!open) continue;
    const [, indent, marks, lang] = open as unknown as [string, string, string, string];
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = /^\s*(`{3,}|~{3,})\s*$/.exec(lines[j]!);
      if (close && close[1]![0] === marks[0] && close[1]!.length >= marks.length) break;
      const l = lines[j]!;
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    out.push({ lang: lang.toLowerCase(), line: i + 1, text: body.join("\n"), before: (lines[i - 1] ?? "").trim() });
    i = j;
  }
  return out;
}

/** The text with every fenced block's lines blanked (line numbers kept), for scanning prose. */
export function prose(md: string): string {
  const lines = md.split("\n");
  for (const f of fences(md)) {
    const end = Math.min(lines.length, f.line + f.text.split("\n").length + 1);
    for (let k = f.line - 1; k < end; k++) lines[k] = "";
  }
  return lines.join("\n");
}

/** Inline code spans replaced by spaces (newlines kept), so links and anchors inside code are not read. */
function withoutCodeSpans(text: string): string {
  return text.replace(/(`+)[\s\S]*?\1/g, (m) => m.replace(/[^\n]/g, " "));
}

/** GitHub's heading slug: lower case, punctuation dropped (not `-` or `_`), each space a hyphen. */
export function githubSlug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // links and images: their text
    .replace(/<[^>]+>/g, "") // HTML tags
    .replace(/[`*~]/g, ""); // code and emphasis markers
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a Markdown file offers: heading slugs (`-1`, `-2` for repeats) and `<a id|name="…">`. */
export function anchors(md: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  const text = prose(md);
  for (const line of text.split("\n")) {
    const h = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (h) {
      const base = githubSlug(h[1]!);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      out.add(n === 0 ? base : `${base}-${n}`);
    }
  }
  for (const m of withoutCodeSpans(text).matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) out.add(m[1]!);
  return out;
}

export interface Link {
  line: number;
  target: string;
}

/** Links and images (`[t](target)`, `[t]: target`, `href="…"`, `src="…"`) outside code. */
export function links(md: string): Link[] {
  const text = withoutCodeSpans(prose(md));
  const lineAt = (index: number) => text.slice(0, index).split("\n").length;
  const out: Link[] = [];
  for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ line: lineAt(m.index), target: m[1]! });
  for (const m of text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) out.push({ line: lineAt(m.index), target: m[1]! });
  for (const m of text.matchAll(/\b(?:href|src)="([^"]+)"/g)) out.push({ line: lineAt(m.index), target: m[1]! });
  return out;
}

/** A link that leaves the repository (a scheme such as https:, mailto:, or `//host`). */
export function isExternal(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//");
}

/* ------------------------------------------------------------------ YAML examples */

/**
 * Markers, on the line right before a ```yaml fence (an HTML comment, so GitHub
 * shows nothing):
 *   (none)                      a complete policy file: it must compile.
 *   <!-- fragment: tenant -->   the keys of one tenant (no `id`): compiled as the
 *                               only tenant of a file, with `auth: {mode: dev}`
 *                               added when the block has no `auth`.
 *   <!-- fragment: file -->     a policy file without its `version: 1` line (a
 *                               `gateway` or `tenants` excerpt): compiled with it.
 *   <!-- fragment -->           not compiled (placeholders, a partial excerpt, or
 *                               YAML that is no policy, such as prometheus.yml):
 *                               it must still parse as YAML.
 */
export const MARKER_RE = /^<!--\s*fragment(?::\s*([a-z]+))?\s*-->$/;

/** Why a YAML example fails its check (empty: it passes). `where` names it in messages. */
export function checkYamlExample(where: string, block: Pick<Fence, "text" | "before">): string[] {
  const marker = MARKER_RE.exec(block.before);
  const kind = marker ? (marker[1] ?? "parse") : "policy";
  const doc = parseDocument(block.text, { prettyErrors: false });
  if (doc.errors.length > 0) return doc.errors.map((e) => `${where}: invalid YAML: ${e.message.split("\n")[0]}`);
  if (kind === "parse") return [];

  let text = block.text;
  if (kind === "file") {
    text = `version: 1\n${block.text}`;
  } else if (kind === "tenant") {
    const data: unknown = doc.toJS();
    if (typeof data !== "object" || data === null || Array.isArray(data) || "id" in data) {
      return [`${where}: a tenant fragment must be a mapping of a tenant's keys without its id`];
    }
    const head = ["version: 1", "tenants:", "  - id: docs-example"];
    if (!("auth" in data)) head.push("    auth: { mode: dev }");
    text = [...head, ...block.text.split("\n").map((l) => (l === "" ? l : `    ${l}`))].join("\n");
  } else if (kind !== "policy") {
    return [`${where}: unknown marker "${block.before}"`];
  }
  const result = compilePolicies([{ name: where, text }]);
  return result.ok ? [] : result.errors.map((e) => (kind === "policy" ? e : `${e}  [compiled as:\n${text}\n]`));
}

/* ------------------------------------------------------------------ the JSON Schema */

/** Every property name of a JSON Schema, at any depth (under properties, anyOf, items, $defs, ...). */
export function schemaKeys(schema: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) {
    for (const s of schema) schemaKeys(s, out);
  } else if (typeof schema === "object" && schema !== null) {
    for (const [k, v] of Object.entries(schema)) {
      if (k === "properties" && typeof v === "object" && v !== null) {
        for (const [name, sub] of Object.entries(v)) {
          out.add(name);
          schemaKeys(sub, out);
        }
      } else if (typeof v === "object") {
        schemaKeys(v, out);
      }
    }
  }
  return out;
}

/** Every string value a JSON Schema allows by `enum` or `const` (modes, events, actions...). */
export function schemaEnums(schema: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) {
    for (const s of schema) schemaEnums(s, out);
  } else if (typeof schema === "object" && schema !== null) {
    for (const [k, v] of Object.entries(schema)) {
      if (k === "enum" && Array.isArray(v)) for (const e of v) if (typeof e === "string") out.add(e);
      if (k === "const" && typeof v === "string") out.add(v);
      if (k !== "properties" || typeof v === "object") schemaEnums(v, out);
    }
  }
  return out;
}

/** The contents of the inline code spans of `md`'s prose (fenced blocks are not prose). */
export function codeSpans(md: string): string[] {
  return [...prose(md).matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!.trim());
}

/** Whether some code span is `name`, or a dotted path ending in it (`policy.name`), maybe with a value (`name: x`). */
export function documentedInBackticks(spans: readonly string[], name: string): boolean {
  const re = new RegExp(`^(?:[\\w.\\[\\]<>-]*\\.)?${escapeRe(name)}(?::.*)?$`);
  return spans.some((c) => re.test(c));
}

/** Whether `value` is a word of some code span (`single`, `mode: single`, `[open, close]`). */
export function inCodeSpan(spans: readonly string[], value: string): boolean {
  const re = new RegExp(`(?<![\\w-])${escapeRe(value)}(?![\\w-])`);
  return spans.some((c) => re.test(c));
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Mentions of "SPEC section N" in prose that are not the text of a link to
 * section N of docs/protocol.md (the repository's copy of the contract: the
 * SPEC itself is not published). `file` is relative to the repository root.
 */
export function unlinkedSpecSections(file: string, md: string): string[] {
  const text = withoutCodeSpans(prose(md));
  const spans: Array<{ start: number; end: number; target: string }> = [];
  for (const m of text.matchAll(/\[([^\]]*)\]\(\s*<?([^)\s>]+)>?\s*\)/g)) spans.push({ start: m.index, end: m.index + m[0].length, target: m[2]! });
  const here = file.split("/").slice(0, -1);
  const resolveFrom = (target: string): string => {
    const path = target.split("#")[0]!;
    if (path === "") return file;
    const parts = [...here];
    for (const seg of path.split("/")) {
      if (seg === "..") parts.pop();
      else if (seg !== "." && seg !== "") parts.push(seg);
    }
    return parts.join("/");
  };
  const out: string[] = [];
  for (const m of text.matchAll(/SPEC\s+section\s+(\d+)/g)) {
    const n = m[1]!;
    const link = spans.find((l) => l.start < m.index && m.index < l.end);
    const ok = link && resolveFrom(link.target) === "docs/protocol.md" && (link.target.split("#")[1] ?? "").startsWith(`${n}-`);
    if (!ok) out.push(`${file}:${text.slice(0, m.index).split("\n").length}: SPEC section ${n}`);
  }
  return out;
}

