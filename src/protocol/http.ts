/** JSON error responses of the contract: `{"code":"…","msg":"…"}` (SPEC section 2). */
import type { HttpErrorCode } from "./codes.ts";

export function jsonError(status: number, code: HttpErrorCode, msg: string, retryAfter?: number): Response {
  const headers = new Headers({ "content-type": "application/json; charset=utf-8" });
  if (retryAfter !== undefined) headers.set("Retry-After", String(Math.max(1, Math.ceil(retryAfter))));
  return new Response(JSON.stringify({ code, msg }), { status, headers });
}
