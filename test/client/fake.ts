/**
 * A scripted fake WebSocket and a client wired to it, shared by the SDK's unit
 * tests (test/client/client*.test.ts). The test plays the gateway; timers are
 * vitest's fake timers.
 */
import { vi } from "vitest";
import {
  WsPrismClient,
  type CloseInfo,
  type Status,
  type WebSocketLike,
  type WsPrismClientOptions,
} from "../../client/src/index.ts";

/** A scripted socket: the test plays the gateway. */
export class FakeSocket implements WebSocketLike {
  readyState = 0;
  binaryType = "blob";
  readonly url: string;
  readonly protocols: string[] | undefined;
  readonly sent: Array<string | Uint8Array> = [];
  closedWith: { code?: number; reason?: string } | null = null;
  onopen: ((ev: any) => unknown) | null = null;
  onmessage: ((ev: any) => unknown) | null = null;
  onclose: ((ev: any) => unknown) | null = null;
  onerror: ((ev: any) => unknown) | null = null;

  constructor(url: string, protocols?: string[]) {
    this.url = url;
    this.protocols = protocols;
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) throw new Error("InvalidStateError");
    this.sent.push(data);
  }
  /** Like a dead network: no close event comes back. */
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 2;
  }

  // --- the gateway's side ---
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  recv(data: unknown): void {
    this.onmessage?.({ data });
  }
  sys(type: string, data: unknown): void {
    this.recv(JSON.stringify({ v: 1, svc: "sys", type, data }));
  }
  /** `extra`: more authed fields, e.g. the resume ones (epoch, off, resumed, recovered, count, reason, last_seq). */
  authed(slot = 1, user = "alice", sid = "sid-a", extra: Record<string, unknown> = {}): void {
    this.sys("authed", { tenant: "acme", user, sid, room: "r1", slot, ...extra });
  }
  /** A logged ext frame (SPEC section 10): an envelope with its log offset `off`. */
  logged(off: number, svc: string, type: string, data: unknown): void {
    this.recv(JSON.stringify({ v: 1, svc, type, data, off }));
  }
  /** A failed connection as Node 22's global WebSocket reports it: `error`, and never `close`. */
  fail(): void {
    this.readyState = 3;
    this.onerror?.({ type: "error" });
  }
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Text frames other than heartbeats, parsed. */
  json(): any[] {
    return this.sent.filter((d): d is string => typeof d === "string" && d !== "ping").map((d) => JSON.parse(d));
  }
  pings(): number {
    return this.sent.filter((d) => d === "ping").length;
  }
  binary(): Uint8Array[] {
    return this.sent.filter((d): d is Uint8Array => typeof d !== "string");
  }
  query(): URLSearchParams {
    return new URL(this.url).searchParams;
  }
}

function b64url(s: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
export function fakeJwt(claims: Record<string, unknown>): string {
  return `${b64url(JSON.stringify({ alg: "HS256" }))}.${b64url(JSON.stringify(claims))}.sig`;
}

/** Let pending promises and microtasks run (getTicket, queueMicrotask). */
export const flush = () => vi.advanceTimersByTimeAsync(0);

export function setup(opts: Partial<WsPrismClientOptions> = {}) {
  const sockets: FakeSocket[] = [];
  class Ctor extends FakeSocket {
    constructor(url: string, protocols?: string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  let n = 0;
  const getTicket = vi.fn(() => `t${++n}`);
  const client = new WsPrismClient({
    url: "wss://gw.example",
    tenant: "acme",
    room: "r1",
    getTicket,
    WebSocket: Ctor,
    random: () => 0.5,
    ...opts,
  });
  const statuses: Status[] = [];
  const closes: CloseInfo[] = [];
  client.on("status", (s) => statuses.push(s));
  client.on("close", (c) => closes.push(c));
  const last = () => sockets.at(-1)!;
  /** Wait for the next socket, open it and send authed. */
  const connect = async (slot = 1) => {
    await flush();
    const s = last();
    s.open();
    s.authed(slot);
    return s;
  };
  return { client, sockets, getTicket, statuses, closes, last, connect };
}


/** The browser's network signal (`navigator.onLine`, `online`/`offline` events), scripted. */
export class FakeNetwork {
  onLine = true;
  private readonly listeners = new Map<string, Set<() => void>>();
  addEventListener(type: string, fn: () => void): void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(fn);
  }
  removeEventListener(type: string, fn: () => void): void {
    this.listeners.get(type)?.delete(fn);
  }
  /** Listeners currently registered, all types. */
  count(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
  set(online: boolean): void {
    this.onLine = online;
    for (const fn of [...(this.listeners.get(online ? "online" : "offline") ?? [])]) fn();
  }
}
