/**
 * JSON from the network, with a bound on nesting (SPEC section 4: "JSON nested
 * deeper than 64 levels is BAD_REQUEST (here and in every HTTP body), never
 * INTERNAL"). Used for client ext frames, HTTP API bodies, origin webhook
 * answers and auth callback answers.
 *
 * Why a bound: V8's JSON.parse is iterative and copes with any depth, but what
 * is done with the value afterwards recurses: JSON.stringify (the outbox,
 * relayed frames) and the structured clone of a Durable Object RPC (the HTTP
 * API) throw "Maximum call stack size exceeded" somewhere past a few thousand
 * levels, at a depth that depends on the stack left. So the depth is checked
 * on the text, before JSON.parse, by one linear scan that stops as soon as the
 * limit is passed.
 */

/** Deepest nesting accepted: `[]` and `{}` are 1 level, a scalar 0. */
export const MAX_JSON_DEPTH = 64;

export type JsonResult =
  | { ok: true; value: unknown }
  | { ok: false; error: "invalid" | "too_deep"; msg: string };

const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const OPEN_ARRAY = 0x5b; // [
const OPEN_OBJECT = 0x7b; // {
const CLOSE_ARRAY = 0x5d; // ]
const CLOSE_OBJECT = 0x7d; // }

/**
 * The deepest bracket nesting of a JSON text, brackets inside strings ignored.
 * Stops at `limit + 1` (the rest of the text is not read). Exact for valid
 * JSON; for invalid JSON only an estimate (JSON.parse refuses it anyway).
 */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++; // the escaped character, whatever it is, cannot end the string
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return deepest;
}

/** Parse JSON text nested at most `maxDepth` levels. Never throws. */
export function parseJson(text: string, { maxDepth = MAX_JSON_DEPTH }: { maxDepth?: number } = {}): JsonResult {
  // Each level takes at least two characters: a short text cannot be too deep, so skip the scan.
  if (text.length > 2 * maxDepth && jsonDepth(text, maxDepth) > maxDepth) {
    return { ok: false, error: "too_deep", msg: `JSON nested deeper than ${maxDepth} levels` };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, error: "invalid", msg: "invalid JSON" };
  }
}
