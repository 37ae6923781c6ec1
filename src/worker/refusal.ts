/**
 * Refusals a browser can read (SPEC section 2). A browser sees a refused
 * upgrade as a bare 1006, so for a client that offered `wsprism.v1` the
 * permanent refusals (400, 401, 403, 409) are delivered on an accepted socket
 * instead: one `sys.error {code,msg}`, then close 4000 + status with the code
 * as the reason. The socket is the Worker's own: no room object is touched.
 * 426, 429 and 503 stay plain HTTP (cheap in a storm, and worth retrying).
 *
 * v1.2: the socket ends within 5 s even if the client never answers the close.
 * A socket the Worker accepted holds its request (and 200 KB or more of workerd
 * memory) until the client's answering close arrives, and workerd has no close
 * timeout and no way to drop one socket: a second close() is a no-op. So the
 * request waits REFUSAL_LINGER_MS for the answer and then aborts itself
 * (`ctx.abort`), which drops the socket and its TCP connection. workerd logs
 * the abort as an uncaught exception of that request; nothing else is lost
 * (the socket is the request's only business by then).
 */
import { errorFrame } from "../protocol/envelope.ts";
import type { ErrorCode } from "../protocol/codes.ts";
import { SUBPROTOCOL } from "./subprotocol.ts";

const ON_SOCKET = new Set([400, 401, 403, 409]);

/** How long a refusal socket waits for the client's answering close (SPEC v1.2: ended within 5 s). */
export const REFUSAL_LINGER_MS = 3_000;

/** The request's context: `abort` is workerd's ExecutionContext.abort (Hono's type does not list it). */
type RequestCtx = { waitUntil(p: Promise<unknown>): void; abort?(reason?: unknown): void };

/** The HTTP status a refusal on a socket stands for (the response itself is a 101): for the metrics. */
export const refusedStatus = new WeakMap<Response, number>();

/** The contract's answer to a refusal `res` (a `jsonError`): itself, or the same on a socket. */
export async function deliverRefusal(res: Response, offeredV1: boolean, ctx: RequestCtx): Promise<Response> {
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
  endSoon(server, ctx);
  const out = new Response(null, { status: 101, webSocket: client, headers: { "Sec-WebSocket-Protocol": SUBPROTOCOL } });
  refusedStatus.set(out, res.status);
  return out;
}

/** Keep the request until the client answers the close, for REFUSAL_LINGER_MS at most; then drop the socket. */
function endSoon(server: WebSocket, ctx: RequestCtx): void {
  ctx.waitUntil(
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        resolve();
        ctx.abort?.(new Error("refusal socket: no answer to the close"));
      }, REFUSAL_LINGER_MS);
      const answered = (): void => {
        clearTimeout(timer);
        resolve();
      };
      server.addEventListener("close", answered);
      server.addEventListener("error", answered);
    }),
  );
}
