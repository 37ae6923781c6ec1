/** Test clients: real WebSockets opened through the Worker inside workerd. */
import { exports } from "cloudflare:workers";
import { decodeOutbound, encodeClientHot } from "../../src/protocol/hot.ts";

export interface Envelope {
  v: number;
  svc: string;
  type: string;
  data?: any;
  from?: { user: string; sid: string };
  seq?: number;
  room?: string;
  trace_id?: string;
  /** The room's log offset (SPEC section 10). */
  off?: number;
}

export type Incoming = { kind: "text"; text: string; json: Envelope } | { kind: "binary"; bytes: Uint8Array };

export function wsUrl(params: Record<string, string | undefined>): string {
  const u = new URL("http://gw.test/v1/ws");
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.append(k, v);
  return u.toString();
}

let ipCounter = 0;
/**
 * Each test upgrade comes from its own address (198.18.0.0/15, for benchmarks),
 * so the handshake defender's per-IP bucket never throttles unrelated tests;
 * pass `CF-Connecting-IP` to test the defender itself.
 */
function nextTestIp(): string {
  const n = ipCounter++;
  return `198.18.${(n >> 8) & 0xff}.${n & 0xff}`;
}

export async function upgrade(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(url, { headers: { Upgrade: "websocket", "CF-Connecting-IP": nextTestIp(), ...headers } });
}

export class TestClient {
  readonly inbox: Incoming[] = [];
  private waiters: Array<() => void> = [];
  private chain: Promise<void> = Promise.resolve();
  closeEvent: { code: number; reason: string } | null = null;
  /** `svc:type` of every text frame received, in order. */
  readonly received: string[] = [];
  /** Every text frame received, as sent (byte for byte), in order. */
  readonly texts: string[] = [];
  /** Presence syncs received (SPEC section 4: right after authed). */
  readonly syncs: Envelope[] = [];
  authed!: Envelope;
  /** Pongs that answer the helper's own `ping` at open: kept out of the inbox and the logs. */
  private ownPongs = 0;

  readonly ws: WebSocket;
  readonly res: Response;

  constructor(ws: WebSocket, res: Response) {
    this.ws = ws;
    this.res = res;
    // Frames are queued through one promise chain: a binary frame can arrive as a
    // Blob (workerd delivers Blobs to a client socket whose peer hibernated), and
    // reading it is async, so the chain keeps arrival order.
    ws.addEventListener("message", (ev: MessageEvent) => {
      const d = ev.data as string | ArrayBuffer | Blob;
      this.chain = this.chain.then(async () => {
        if (typeof d === "string") {
          if (d === "pong" && this.ownPongs > 0) {
            this.ownPongs--;
            this.wake();
            return;
          }
          let json: Envelope;
          try {
            json = JSON.parse(d);
          } catch {
            json = { v: 0, svc: "?", type: d };
          }
          this.received.push(`${json.svc}:${json.type}`);
          this.texts.push(d);
          // The presence sync right after authed is kept apart, so tests that wait for
          // presence joins and leaves see only those.
          if (json.svc === "sys" && json.type === "presence" && json.data?.event === "sync") this.syncs.push(json);
          else this.inbox.push({ kind: "text", text: d, json });
        } else {
          const buf = d instanceof Blob ? await d.arrayBuffer() : d;
          this.inbox.push({ kind: "binary", bytes: new Uint8Array(buf) });
        }
        this.wake();
      });
    });
    ws.addEventListener("close", (ev: CloseEvent) => {
      this.chain = this.chain.then(() => {
        this.closeEvent = { code: ev.code, reason: ev.reason };
        this.wake();
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async waitFor<T>(find: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; inbox: ${JSON.stringify(this.summary())}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  summary(): unknown[] {
    return this.inbox.map((m) => (m.kind === "text" ? m.json : `<${m.bytes.byteLength} bytes>`));
  }

  /** Next text envelope (optionally matching), removed from the inbox. */
  async next(match: (e: Envelope) => boolean = () => true, timeoutMs = 3000): Promise<Envelope> {
    return this.waitFor(
      () => {
        const i = this.inbox.findIndex((m) => m.kind === "text" && match(m.json));
        if (i < 0) return undefined;
        const [m] = this.inbox.splice(i, 1);
        return (m as { json: Envelope }).json;
      },
      "text frame",
      timeoutMs,
    );
  }

  async nextOf(svc: string, type: string, timeoutMs = 3000): Promise<Envelope> {
    return this.next((e) => e.svc === svc && e.type === type, timeoutMs);
  }

  async nextBinary(timeoutMs = 3000): Promise<Uint8Array> {
    return this.waitFor(
      () => {
        const i = this.inbox.findIndex((m) => m.kind === "binary");
        if (i < 0) return undefined;
        const [m] = this.inbox.splice(i, 1);
        return (m as { bytes: Uint8Array }).bytes;
      },
      "binary frame",
      timeoutMs,
    );
  }

  async closed(timeoutMs = 3000): Promise<{ code: number; reason: string }> {
    return this.waitFor(() => this.closeEvent ?? undefined, "close", timeoutMs);
  }

  /**
   * Wait `ms`, then remove and return every frame in the inbox (asserts nothing:
   * callers that mean "nothing arrived" use expectQuiet, or filter the result and
   * expect it empty).
   */
  async drain(ms = 150): Promise<Incoming[]> {
    await new Promise((r) => setTimeout(r, ms));
    await this.chain; // frames still being read (Blobs) count as arrived
    return this.inbox.splice(0);
  }

  /** Old name of drain(), kept for existing callers: it asserts nothing. */
  quiet(ms = 150): Promise<Incoming[]> {
    return this.drain(ms);
  }

  /**
   * Negative check: wait `ms` and throw as soon as a frame matching `match` is in
   * the inbox (one that was already there counts too). Frames that do not match
   * stay in the inbox.
   */
  async expectQuiet(ms = 150, match: (m: Incoming) => boolean = () => true, what = "frame"): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      await this.chain;
      const hit = this.inbox.find(match);
      if (hit) throw new Error(`expected no ${what} within ${ms} ms, got ${JSON.stringify(hit.kind === "text" ? hit.json : `<${hit.bytes.byteLength} bytes>`)}`);
      const left = deadline - Date.now();
      if (left <= 0) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /**
   * The `ping` a client sends as soon as the socket opens (SPEC v1.2 section 2; the SDK does
   * it): its first sign of life. Waits for the pong (or the close); the pong is not recorded.
   */
  async pingAtOpen(timeoutMs = 3000): Promise<void> {
    try {
      this.ws.send("ping");
      this.ownPongs++;
    } catch {
      return; // closed already
    }
    await this.waitFor(() => (this.ownPongs === 0 || this.closeEvent ? true : undefined), "pong to the ping at open", timeoutMs);
  }

  send(obj: unknown): void {
    this.ws.send(typeof obj === "string" ? obj : JSON.stringify(obj));
  }

  sendHot(svc: number, op: number, payload: Uint8Array | number[], seq?: number): void {
    this.ws.send(encodeClientHot(svc, op, payload instanceof Uint8Array ? payload : new Uint8Array(payload), seq));
  }

  close(code = 1000): void {
    try {
      this.ws.close(code, "bye");
    } catch {
      /* already closed */
    }
  }
}

export { decodeOutbound };

/** Matchers for expectQuiet. */
export const isText =
  (pred: (e: Envelope) => boolean = () => true) =>
  (m: Incoming): boolean =>
    m.kind === "text" && pred(m.json);
export const isBinary = (m: Incoming): boolean => m.kind === "binary";
export const isSys = (type?: string) => isText((e) => e.svc === "sys" && (type === undefined || e.type === type));

/**
 * Open a socket and wait for `sys.authed`, then send `ping` as a client does at open (SPEC
 * v1.2) and wait for its pong: the room has then seen the session arrive. `ping: false`: a
 * client that sends nothing. Throws with the HTTP error if rejected.
 */
export async function connect(
  params: Record<string, string | undefined>,
  headers: Record<string, string> = {},
  opts: { ping?: boolean } = {},
): Promise<TestClient> {
  const res = await upgrade(wsUrl(params), headers);
  if (res.status !== 101 || !res.webSocket) {
    throw new Error(`upgrade failed: ${res.status} ${await res.text()}`);
  }
  res.webSocket.accept();
  const client = new TestClient(res.webSocket, res);
  client.authed = await client.nextOf("sys", "authed");
  if (opts.ping !== false) await client.pingAtOpen();
  return client;
}

export const dev = (user: string, room = "lobby", extra: Record<string, string> = {}) =>
  connect({ tenant: "lobby", room, ticket: `dev:${user}`, ...extra });

let counter = 0;
/** A room name unique to this test run (isolated storage is per test file, rooms are not). */
export function uniqueRoom(prefix = "r"): string {
  return `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
}
