/**
 * The SDK under test, driven the same way in Node and in a browser page: a map of
 * named clients whose state is read as plain JSON snapshots. Node imports it with
 * a WebSocket class (the global one, or the `ws` package); test/scripts/sdk-e2e
 * bundles it with esbuild for Chromium, where it becomes `window.__sdk`.
 */
import { WsPrismClient, type CloseInfo, type ErrorInfo, type WebSocketCtor } from "../../../client/src/index.ts";

export interface ClientSpec {
  url: string;
  tenant: string;
  room: string;
  /** getTicket() answers these in turn; the last one over and over. */
  tickets: string[];
  maxRetries?: number;
  connectTimeoutMs?: number;
  heartbeatMs?: number;
  ackTimeoutMs?: number;
  maxFrameBytes?: number;
  backoff?: { baseMs?: number; maxMs?: number };
}

export interface Snapshot {
  status: string;
  closes: CloseInfo[];
  errors: ErrorInfo[];
  /** `authed` events so far. */
  authed: number;
  /** getTicket() calls so far: one per attempt. */
  ticketCalls: number;
  /** Users in `client.members`, sorted. */
  members: string[];
  lastClose: CloseInfo | null;
  lastError: ErrorInfo | null;
  /** `chat` messages received: data.text, in order. */
  chats: string[];
}

export interface Harness {
  make(id: string, spec: ClientSpec): void;
  snap(id: string): Snapshot;
  /** An ext send; resolves "ok" or the WsPrismError code (thrown or rejected). */
  send(id: string, text: string, ack: boolean, pad?: number): Promise<string>;
  /** Several acked sends at once; resolves their outcomes in order. */
  burst(id: string, n: number): Promise<string[]>;
  reconnect(id: string): void;
  close(id: string): void;
  closeAll(): void;
}

export function createHarness(WebSocket?: WebSocketCtor): Harness {
  const clients = new Map<string, { client: WsPrismClient; snap: Snapshot }>();
  const get = (id: string) => {
    const c = clients.get(id);
    if (!c) throw new Error(`no client ${id}`);
    return c;
  };
  const outcome = (p: () => Promise<void>): Promise<string> => {
    try {
      return p().then(
        () => "ok",
        (e: { code?: string }) => e.code ?? String(e),
      );
    } catch (e) {
      return Promise.resolve((e as { code?: string }).code ?? String(e));
    }
  };
  return {
    make(id, spec) {
      const snap: Snapshot = {
        status: "connecting", closes: [], errors: [], authed: 0, ticketCalls: 0,
        members: [], lastClose: null, lastError: null, chats: [],
      };
      const tickets = [...spec.tickets];
      const client = new WsPrismClient({
        url: spec.url,
        tenant: spec.tenant,
        room: spec.room,
        getTicket: () => {
          snap.ticketCalls++;
          return tickets.length > 1 ? tickets.shift()! : tickets[0]!;
        },
        ...(WebSocket ? { WebSocket } : {}),
        ...(spec.maxRetries !== undefined ? { maxRetries: spec.maxRetries } : {}),
        ...(spec.connectTimeoutMs !== undefined ? { connectTimeoutMs: spec.connectTimeoutMs } : {}),
        ...(spec.heartbeatMs !== undefined ? { heartbeatMs: spec.heartbeatMs } : {}),
        ...(spec.ackTimeoutMs !== undefined ? { ackTimeoutMs: spec.ackTimeoutMs } : {}),
        ...(spec.maxFrameBytes !== undefined ? { maxFrameBytes: spec.maxFrameBytes } : {}),
        ...(spec.backoff ? { backoff: spec.backoff } : {}),
      });
      const sync = () => {
        snap.status = client.status;
        snap.lastClose = client.lastClose;
        snap.lastError = client.lastError;
        snap.members = [...client.members.values()].map((m) => m.user).sort();
      };
      client.on("status", sync);
      client.on("members", sync);
      client.on("close", (c) => (snap.closes.push(c), sync()));
      client.on("error", (e) => (snap.errors.push(e), sync()));
      client.on("authed", () => (snap.authed++, sync()));
      client.onMessage("chat", "msg", (d: { text?: string }) => snap.chats.push(String(d?.text)));
      clients.set(id, { client, snap });
    },
    snap(id) {
      const { client, snap } = get(id);
      snap.status = client.status;
      return JSON.parse(JSON.stringify(snap)) as Snapshot;
    },
    send(id, text, ack, pad = 0) {
      const { client } = get(id);
      return outcome(() => client.send("chat", "msg", { text, pad: "x".repeat(pad) }, { ack }));
    },
    burst(id, n) {
      const { client } = get(id);
      return Promise.all(Array.from({ length: n }, (_, i) => outcome(() => client.send("chat", "msg", { text: `b${i}` }, { ack: true }))));
    },
    reconnect(id) {
      get(id).client.reconnect();
    },
    close(id) {
      get(id).client.close();
    },
    closeAll() {
      for (const { client } of clients.values()) client.close();
      clients.clear();
    },
  };
}
