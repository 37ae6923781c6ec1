/** JSON error responses of the contract: `{"code":"…","msg":"…"}` (SPEC section 2). */
import type { HttpErrorCode } from "./codes.ts";

export function jsonError(status: number, code: HttpErrorCode, msg: string, retryAfter?: number): Response {
  const headers = new Headers({ "content-type": "application/json; charset=utf-8" });
  if (retryAfter !== undefined) headers.set("Retry-After", String(Math.max(1, Math.ceil(retryAfter))));
  return new Response(JSON.stringify({ code, msg }), { status, headers });
}

/**
 * Read at most `max` bytes of a request's or response's body. Returns null when
 * it is larger (declared or actual; the rest is not read) and "bad_length" when
 * Content-Length is not a number. Never throws on a size problem.
 */
export async function readBounded(msg: Request | Response, max: number): Promise<Uint8Array | null | "bad_length"> {
  const declared = msg.headers.get("Content-Length");
  if (declared !== null) {
    if (!/^\d+$/.test(declared.trim())) return "bad_length";
    if (Number(declared) > max) {
      await msg.body?.cancel().catch(() => {});
      return null;
    }
  }
  if (!msg.body) return new Uint8Array(0);
  // A declared length within bounds: the runtime reads exactly that much (one call, no chunk loop).
  if (declared !== null) return new Uint8Array(await msg.arrayBuffer());
  const reader = msg.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const all = new Uint8Array(total);
  let o = 0;
  for (const chunk of chunks) {
    all.set(chunk, o);
    o += chunk.byteLength;
  }
  return all;
}

const decoder = new TextDecoder();

/** `readBounded` decoded as UTF-8 text; null when too large or malformed in length. */
export async function readBoundedText(msg: Request | Response, max: number): Promise<string | null> {
  const declared = msg.headers.get("Content-Length");
  // The usual answers: empty (nothing to read), or a declared length within bounds (one native call).
  if (declared === "0") {
    await msg.body?.cancel();
    return "";
  }
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) <= max) return await msg.text();
  const bytes = await readBounded(msg, max);
  return bytes === null || bytes === "bad_length" ? null : decoder.decode(bytes);
}
