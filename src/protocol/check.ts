/**
 * Small hand-written checks for JSON values from the network: the ext envelope
 * (every client frame), the HTTP API bodies and the origin's answer actions.
 *
 * Why not zod at runtime: its classic API and locales were three quarters of
 * the deploy bundle, and the envelope check runs on every frame. The policy
 * compiler (build time) keeps zod. The wording of the messages is zod's
 * English one, which clients have seen since v1: "Too big: expected number to
 * be <=4294967295", "Invalid input: expected string, received number".
 *
 * Every check reads only the value it is given (own properties of a parsed
 * JSON object), never throws, and builds no message unless the value is bad.
 */

/** What is wrong with one value: a missing field, a bad value, or unknown keys. */
export type Issue =
  | { kind: "missing"; path: string }
  | { kind: "invalid"; path: string; msg: string }
  | { kind: "unknown"; keys: string[] };

/** Unknown-key messages name at most this many keys, each cut to KEY_CHARS. */
const MAX_KEYS_NAMED = 5;
const KEY_CHARS = 64;

/**
 * The message for an issue: `missing svc`, `to.user: <msg>`, `unknown field "x", "y"`.
 * `root` names the value itself (path ""), e.g. "body".
 */
export function describeIssue(issue: Issue, root: string): string {
  if (issue.kind === "unknown") {
    return `unknown field ${issue.keys.map((k) => JSON.stringify(k.slice(0, KEY_CHARS))).join(", ")}`;
  }
  const where = issue.path === "" ? root : issue.path;
  return issue.kind === "missing" ? `missing ${where}` : `${where}: ${issue.msg}`;
}

export function invalid(path: string, msg: string): Issue {
  return { kind: "invalid", path, msg };
}

/** A JSON value's type as zod names it in "received …". */
function typeName(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "array";
  return typeof x;
}

/** `expected` X, `received` what `x` is. */
export function wrongType(path: string, expected: string, x: unknown): Issue {
  return invalid(path, `Invalid input: expected ${expected}, received ${typeName(x)}`);
}

/** A plain JSON object (not null, not an array). */
export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** A string matching `re`; `msg` when it does not. */
export function checkPattern(x: unknown, path: string, re: RegExp, msg: string): Issue | null {
  if (typeof x !== "string") return x === undefined ? { kind: "missing", path } : wrongType(path, "string", x);
  return re.test(x) ? null : invalid(path, msg);
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/**
 * An integer in [0, max] (max ≤ MAX_SAFE_INTEGER), with zod's checks in zod's
 * order: number, finite, integer, safe, then the bounds. A huge number such as
 * 1e300 is an integer outside the safe range; 1e400 is Infinity.
 */
export function checkUint(x: unknown, path: string, max: number): Issue | null {
  if (typeof x !== "number") return x === undefined ? { kind: "missing", path } : wrongType(path, "number", x);
  if (Number.isNaN(x)) return invalid(path, "Invalid input: expected number, received NaN");
  if (!Number.isFinite(x)) return invalid(path, `Invalid input: expected number, received ${x > 0 ? "" : "-"}Infinity`);
  if (!Number.isInteger(x)) return invalid(path, "Invalid input: expected int, received number");
  if (x > MAX_SAFE) return invalid(path, `Too big: expected int to be <=${MAX_SAFE}`);
  if (x < -MAX_SAFE) return invalid(path, `Too small: expected int to be >=-${MAX_SAFE}`);
  if (x < 0) return invalid(path, "Too small: expected number to be >=0");
  if (x > max) return invalid(path, `Too big: expected number to be <=${max}`);
  return null;
}

/**
 * The keys of `obj` that are not in `known` (at most MAX_KEYS_NAMED of them), or
 * null. Own keys only: `__proto__` and `constructor` from JSON.parse are plain
 * own keys like any other, and are refused like any other.
 */
export function unknownKeys(obj: object, known: ReadonlySet<string>): Issue | null {
  let keys: string[] | null = null;
  for (const k of Object.keys(obj)) {
    if (known.has(k)) continue;
    (keys ??= []).push(k);
    if (keys.length === MAX_KEYS_NAMED) break;
  }
  return keys === null ? null : { kind: "unknown", keys };
}
