/**
 * Room patterns of the JWT `rooms` claim (SPEC section 3).
 *
 * A pattern is either an exact room name, or ends with a single `*` that matches
 * any suffix, including the empty one: "match:*" admits "match:", "match:42" and
 * "match:a:b"; a bare "*" admits every room. Only a trailing `*` is special: a `*`
 * anywhere else ("a*b") is a literal character, compared exactly.
 */

/** Whether one of `patterns` admits `room`. `null` (no `rooms` claim) admits every room. */
export function roomAllowed(patterns: readonly string[] | null, room: string): boolean {
  if (patterns === null) return true;
  for (const pattern of patterns) {
    if (typeof pattern !== "string") continue;
    if (pattern.endsWith("*")) {
      if (room.startsWith(pattern.slice(0, -1))) return true;
    } else if (pattern === room) {
      return true;
    }
  }
  return false;
}
