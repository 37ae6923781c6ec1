/**
 * Refusals a browser can read (SPEC section 2). A browser sees a refused
 * upgrade as a bare 1006, so for a client that offered `wsprism.v1` the
 * permanent refusals (400, 401, 403, 409) are delivered on an accepted socket
 * instead: one `sys.error {code,msg}`, then close 4000 + status with the code
 * as the reason. The socket is the Worker's own: no room object is touched.
 * 426, 429 and 503 stay plain HTTP (cheap in a storm, and worth retrying).
 */
import { errorFrame } from "../protocol/envelope.ts";
import type { ErrorCode } from "../protocol/codes.ts";
import { SUBPROTOCOL } from "./subprotocol.ts";

const ON_SOCKET = new Set([400, 401, 403, 409]);

/** The HTTP status a refusal on a socket stands for (the response itself is a 101): for the metrics. */
export const refusedStatus = new WeakMap<Response, number>();

/** The contract's answer to a refusal `res` (a `jsonError`): itself, or the same on a socket. */
export async function deliverRefusal(res: Response, offeredV1: boolean): Promise<Response> {
  if (!offeredV1 || !ON_SOCKET.has(res.status)) return res;
  let body: { code?: unknown; msg?: unknown } = {};
  try {
    body = (await res.json()) as typeof body; // our own jsonError: small and well-formed
  } catch {
    // keep the defaults below
  }
  const code = typeof body.code === "string" ? body.code : "BAD_REQUEST";
  const msg = typeof body.msg === "string" ? body.msg : "refused";
  const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
  server.accept();
  server.send(errorFrame(code as ErrorCode, msg));
  server.close(4000 + res.status, code);
  const out = new Response(null, { status: 101, webSocket: client, headers: { "Sec-WebSocket-Protocol": SUBPROTOCOL } });
  refusedStatus.set(out, res.status);
  return out;
}
