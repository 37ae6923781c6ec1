/** Public types of @wsprism/client (no code: nothing here reaches the bundle). */
import type { BackoffOptions } from "./backoff.js";
import type { Envelope } from "./codec.js";

/** The subset of the WHATWG WebSocket the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | Uint8Array<ArrayBuffer>): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => unknown) | null;
  onmessage: ((ev: any) => unknown) | null;
  onclose: ((ev: any) => unknown) | null;
  onerror: ((ev: any) => unknown) | null;
}

export type WebSocketCtor = new (url: string, protocols?: string[]) => WebSocketLike;

/** The network signal of a browser: `navigator.onLine` and the window's `online`/`offline` events. */
export interface NetworkLike {
  readonly onLine: boolean;
  addEventListener(type: "online" | "offline", fn: () => void): void;
  removeEventListener(type: "online" | "offline", fn: () => void): void;
}

export type Status = "connecting" | "open" | "reconnecting" | "closed";

export interface AuthedInfo {
  tenant: string;
  user: string;
  sid: string;
  room: string;
  slot: number;
  /** When the session's ticket expires (unix seconds): the JWT's `exp` or the origin auth answer's; null when unknown. Absent on older gateways. */
  exp?: number | null;
  /** The room's log position at connect (SPEC section 10); absent on gateways without it. */
  epoch?: string;
  off?: number;
  /** On a resume: the session kept its slot and presence. */
  resumed?: boolean;
  /** On a resume: true when the `count` missed frames follow, false (with `reason`) when the app must resync. */
  recovered?: boolean;
  count?: number;
  reason?: ResyncReason;
  /** The highest ACK_REQUESTED `seq` the room accepted from this session. */
  last_seq?: number;
}

/** A position in the room's log: `off` within `epoch` (SPEC section 10). */
export interface Position {
  readonly epoch: string;
  readonly off: number;
}

/**
 * Why a resume recovered nothing (SPEC section 10); `unknown` when the gateway gave no reason;
 * `sid_taken`: the sid was another user's, so the client started a new session under a fresh sid.
 */
export type ResyncReason = "too_old" | "epoch" | "too_many" | "disabled" | "sid_taken" | "unknown" | (string & {});

export interface PresenceEvent {
  event: "join" | "leave";
  user: string;
  sid: string;
  slot: number;
}

export interface ErrorInfo {
  code: string;
  msg: string;
  seq?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface Member {
  user: string;
  sid: string;
}

export interface ClientEvents {
  authed: AuthedInfo;
  presence: PresenceEvent;
  /** The room's members changed: the full list after `authed` (presence sync), then every join and leave. */
  members: ReadonlyMap<number, Member>;
  error: ErrorInfo;
  kicked: { reason: string };
  close: CloseInfo;
  status: Status;
  /** A resume got everything missed: emitted after the `count` replayed frames were delivered (at once when 0). */
  recovered: { count: number };
  /** A resume recovered nothing, or the sid was another user's (a new session): refetch your state from your origin. Emitted right after `authed`. */
  resync: { reason: ResyncReason };
}

export type MessageHandler<T = any> = (data: T, envelope: Envelope<T>) => void;
/** `seq` is null when the sender did not set one. `payload` is a view into the received buffer. */
export type HotHandler = (sender: number, payload: Uint8Array, seq: number | null) => void;

/**
 * What `getTicket()` gives: the ticket, or the ticket with its expiry (`exp`,
 * unix seconds) so that an opaque ticket is refreshed before it expires like a JWT.
 */
export type TicketResult = string | { ticket: string; exp?: number };

export interface WsPrismClientOptions {
  /** Gateway base URL, `ws(s)://host` (the path defaults to `/v1/ws`; `http(s)` is accepted too). */
  url: string;
  tenant: string;
  room: string;
  /** Session id to use (`^[A-Za-z0-9_-]{1,64}$`); by default the gateway's, kept from the first `authed`. */
  sid?: string;
  /** A ticket for the next connection attempt or refresh; called every time. */
  getTicket: () => TicketResult | Promise<TicketResult>;
  /** Interval of the `ping` heartbeat, ms (0 disables it). Default 10000. */
  heartbeatMs?: number;
  /** Close and reconnect when `pong` does not arrive within this, ms. Default 5000. */
  pongTimeoutMs?: number;
  /** An attempt (getTicket, handshake, `authed`) that takes longer is abandoned and counted as failed, ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Reconnect backoff: `random(0, min(maxMs, baseMs * 2^attempt))`. Default {baseMs: 250, maxMs: 15000}. */
  backoff?: BackoffOptions;
  /** Failed attempts in a row (no `authed` between them) after which the client stops. Default Infinity. */
  maxRetries?: number;
  /** Reconnect after this close? Replaces the default rule (no reconnect on TERMINAL_CLOSE_CODES). */
  shouldReconnect?: (close: { code: number; reason: string }) => boolean;
  /** Ext messages held while offline; beyond it `send` throws QUEUE_FULL. Default 256. */
  maxQueue?: number;
  /** The tenant's `max_frame_bytes`: a larger `send` throws PAYLOAD_TOO_LARGE without sending. Default: no check. */
  maxFrameBytes?: number;
  /** An acked `send` rejects with ACK_TIMEOUT after this, ms. Default 10000. */
  ackTimeoutMs?: number;
  /** Refresh the ticket this long before its `exp` (JWT, or `exp` from getTicket), ms. Default 30000. */
  refreshBeforeExpMs?: number;
  /** Connect from the constructor (on a microtask, so listeners added right after see every event). Default true. */
  autoConnect?: boolean;
  /** WebSocket constructor (default: the global one). For tests and non-standard runtimes. */
  WebSocket?: WebSocketCtor;
  /** Online/offline signal. Default: the browser's (`navigator.onLine`), none elsewhere; null: ignore it. */
  network?: NetworkLike | null;
  /** Log state transitions (never tickets): true for console.debug, or a function. */
  debug?: boolean | ((...args: unknown[]) => void);
  /** Random source of the backoff jitter, in [0, 1). Default Math.random. */
  random?: () => number;
}
