/**
 * @wsprism/client: a dependency-free TypeScript SDK for the wsPrism v1 gateway,
 * for browsers and Node 22+ (global `WebSocket`).
 *
 * - connects with the ticket as a subprotocol (`wsprism.v1`, `ticket.<ticket>`),
 *   keeps the gateway's `sid` across reconnects (a reconnect replaces the old
 *   session instead of adding one);
 * - a `ping` at open and a heartbeat (`ping`/`pong`), reconnect with exponential
 *   backoff and full jitter, a fresh ticket from `getTicket()` on every attempt;
 * - ext lane: `send()` with seq and optional ack, a bounded offline queue;
 * - hot lane: `sendHot()` (never queued), `onHot()` for relay/echo frames and
 *   for every inner frame of a state batch;
 * - presence map, JWT refresh before `exp`, RTT.
 *
 * See client/README.md for the API reference.
 */
import { backoffDelay, type BackoffOptions } from "./backoff.js";
import {
  decodeBinaryMessage,
  encodeEnvelope,
  encodeHotFrame,
  isProtocolToken,
  jwtExp,
  NAME_RE,
  parseEnvelope,
  type Envelope,
  type InboundHotFrame,
} from "./codec.js";
import { Emitter, safeCall } from "./emitter.js";
import type {
  AuthedInfo,
  ClientEvents,
  CloseInfo,
  ErrorInfo,
  HotHandler,
  Member,
  MessageHandler,
  NetworkLike,
  Position,
  PresenceEvent,
  Status,
  TicketResult,
  WebSocketCtor,
  WebSocketLike,
  WsPrismClientOptions,
} from "./types.js";

export { backoffCeiling, backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
export {
  decodeBatchFrame,
  decodeBinaryMessage,
  decodeHotFrame,
  encodeHotFrame,
  isBatchFrame,
  jwtExp,
  type Envelope,
  type InboundHotFrame,
} from "./codec.js";
export { Emitter } from "./emitter.js";

export type * from "./types.js";

/** The subprotocol of the v1 wire contract. */
export const SUBPROTOCOL = "wsprism.v1";

/**
 * Close codes after which the client does not reconnect (unless `shouldReconnect`
 * says otherwise): 1000 normal (e.g. after `room:leave`), 1008 policy, 4001 auth
 * expired (the refresh did not happen or was refused), 4003 kicked, 4004 session
 * replaced, and the gateway's permanent refusals 4000 + HTTP status (SPEC section 2):
 * 4400 BAD_REQUEST / UNKNOWN_TENANT, 4401 AUTH_FAILED, 4403 NOT_ALLOWED,
 * 4409 TOO_MANY_SESSIONS. A new ticket would not change their answer. Except a 4400 for
 * a sid another user holds: the client then connects as a new session under a fresh sid.
 */
export const TERMINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1008, 4001, 4003, 4004, 4400, 4401, 4403, 4409]);

/** The gateway's `sys.error` msg (BAD_REQUEST, then 4400) for a sid another user holds: the SDK then takes a fresh sid. */
const SID_TAKEN = "sid is held by another user";

/**
 * Close code the SDK uses (and reports) when it gives up waiting: no `pong` in
 * time (reason `pong timeout`), no `authed` in time (`connect timeout`), or a
 * manual `reconnect()` (`reconnect`). Browsers only let a page close with 1000
 * or 3000-4999.
 */
export const CLOSE_TIMEOUT = 4000;
/** @deprecated the same as CLOSE_TIMEOUT. */
export const CLOSE_PONG_TIMEOUT = CLOSE_TIMEOUT;

const WS_OPEN = 1;

/** An error of the SDK or of the gateway, with the contract's (or the SDK's) code. */
export class WsPrismError extends Error {
  readonly code: string;
  readonly seq: number | undefined;

  constructor(code: string, msg: string, seq?: number) {
    super(`${code}: ${msg}`);
    this.name = "WsPrismError";
    this.code = code;
    this.seq = seq;
  }
}

// --- Internals -------------------------------------------------------------------

interface Outgoing {
  seq: number;
  text: string;
  ack: boolean;
  resolve?: () => void;
  reject?: (err: WsPrismError) => void;
  /** Not resent after a reconnect (the ticket refresh: the new connection has a fresh ticket). */
  once?: boolean;
}

interface Pending {
  resolve: () => void;
  reject: (err: WsPrismError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** The frame, to resend after a resume; absent for `once` messages. */
  text?: string;
}

type Timer = ReturnType<typeof setTimeout>;

/** setTimeout's largest delay (about 24.8 days). */
const MAX_TIMER_MS = 0x7fffffff;

interface BlobLike {
  arrayBuffer(): Promise<ArrayBuffer>;
}

function isBlobLike(d: unknown): d is BlobLike {
  return typeof d === "object" && d !== null && typeof (d as BlobLike).arrayBuffer === "function" && !ArrayBuffer.isView(d);
}

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class WsPrismClient {
  /** Room members by slot: yourself (from `authed`), everyone already there (the presence sync), then joins and leaves. */
  readonly members = new Map<number, Member>();

  private readonly opts: Required<Omit<WsPrismClientOptions, "sid" | "WebSocket" | "backoff" | "shouldReconnect" | "maxFrameBytes" | "network" | "debug">> & {
    backoff: BackoffOptions;
    shouldReconnect: (close: { code: number; reason: string }) => boolean;
    maxFrameBytes: number;
  };
  private readonly Ctor: WebSocketCtor | undefined;
  private readonly net: NetworkLike | null;
  private readonly log: ((...args: unknown[]) => void) | null;
  private readonly events = new Emitter<ClientEvents>();
  private readonly messageHandlers = new Map<string, Set<MessageHandler>>();
  private readonly hotHandlers = new Map<string, Set<HotHandler>>();

  private _status: Status;
  private ws: WebSocketLike | null = null;
  /** Bumped by every connection attempt and by close(): stale async work checks it. */
  private gen = 0;
  /** Set by close() and terminal closes: no reconnect. */
  private stopped: boolean;
  /** Failed attempts since the last `authed`: the backoff exponent, and what maxRetries bounds. */
  private attempts = 0;
  private _sid: string | undefined;
  private _session: AuthedInfo | null = null;
  private _lastClose: CloseInfo | null = null;
  private _lastError: ErrorInfo | null = null;
  /** Expiry (unix s), if known, of the current connection's ticket (or of the last accepted refresh). */
  private ticketExp: number | null = null;
  private seq = 0;
  private readonly queue: Outgoing[] = [];
  private readonly pending = new Map<number, Pending>();
  /** Room log position (SPEC section 10): from `authed`, then from every frame with `off`. */
  private pos: Position | null = null;
  /** Replayed frames still to come after a recovered resume. */
  private replay = 0;

  private reconnectTimer: Timer | null = null;
  private connectTimer: Timer | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: Timer | null = null;
  private refreshTimer: Timer | null = null;
  private pingSentAt: number | null = null;
  private _rtt: number | null = null;
  private watching = false;

  constructor(options: WsPrismClientOptions) {
    if (!options || typeof options.getTicket !== "function") throw new TypeError("getTicket is required");
    this.opts = {
      ...options,
      heartbeatMs: options.heartbeatMs ?? 10_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 5_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      backoff: options.backoff ?? {},
      maxRetries: options.maxRetries ?? Infinity,
      shouldReconnect: options.shouldReconnect ?? ((c) => !TERMINAL_CLOSE_CODES.has(c.code)),
      maxQueue: options.maxQueue ?? 256,
      maxFrameBytes: options.maxFrameBytes ?? 0,
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      refreshBeforeExpMs: options.refreshBeforeExpMs ?? 30_000,
      autoConnect: options.autoConnect ?? true,
      random: options.random ?? Math.random,
    };
    this._sid = options.sid;
    this.Ctor = options.WebSocket ?? ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketCtor | undefined);
    if (!this.Ctor) throw new TypeError("no global WebSocket: pass the WebSocket option");
    this.net = options.network === undefined ? browserNetwork() : options.network;
    const debug = options.debug;
    this.log = debug === true ? (...a) => console.debug("[wsprism]", ...a) : typeof debug === "function" ? debug : null;
    this.buildUrl("x"); // throws early on a malformed url
    const auto = this.opts.autoConnect;
    this._status = auto ? "connecting" : "closed";
    this.stopped = !auto;
    if (auto) {
      queueMicrotask(() => {
        if (this.stopped) return; // close() came first
        this.watchNetwork(true);
        void this.open();
      });
    }
  }

  // --- State -------------------------------------------------------------------

  get status(): Status {
    return this._status;
  }

  /** The last `authed` data (null before the first). */
  get session(): AuthedInfo | null {
    return this._session;
  }

  /** The session id used for (re)connecting: the option, else the gateway's from the first `authed`. */
  get sid(): string | undefined {
    return this._sid;
  }

  /** Round-trip time of the last heartbeat (ms), null before the first `pong`. */
  get rtt(): number | null {
    return this._rtt;
  }

  /**
   * The room log position reached (`{epoch, off}`, SPEC section 10): sent as
   * `resume=<epoch>.<off>` on every reconnect. Null until an `authed` carries one.
   */
  get position(): Position | null {
    return this.pos;
  }

  /** Ext messages waiting for a connection. */
  get queued(): number {
    return this.queue.length;
  }

  /** The last `close` event (why the client is reconnecting or stopped), null before the first. */
  get lastClose(): CloseInfo | null {
    return this._lastClose;
  }

  /** The last `error` event (e.g. the gateway's AUTH_FAILED before a 4401 close), null before the first. */
  get lastError(): ErrorInfo | null {
    return this._lastError;
  }

  // --- Events ------------------------------------------------------------------

  on<K extends keyof ClientEvents>(event: K, fn: (payload: ClientEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  /**
   * Ext messages by svc and type; `"*"` as either is a wildcard (`onMessage("*", fn)`: every
   * message). `sys` messages are delivered too.
   */
  onMessage<T = any>(svc: string, fn: MessageHandler<T>): () => void;
  onMessage<T = any>(svc: string, type: string, fn: MessageHandler<T>): () => void;
  onMessage(svc: string, type: string | MessageHandler, fn?: MessageHandler): () => void {
    if (typeof type === "function") [type, fn] = ["*", type];
    if (typeof fn !== "function") throw new TypeError("fn is required");
    return addHandler(this.messageHandlers, `${svc}:${type}`, fn);
  }

  /** Hot frames by svc_id and opcode (`"*"`: every opcode): relay/echo frames and each frame of a state batch. */
  onHot(svc: number, op: number | "*", fn: HotHandler): () => void {
    return addHandler(this.hotHandlers, `${svc}:${op}`, fn);
  }

  // --- Lifecycle -----------------------------------------------------------------

  /** Start connecting (after `autoConnect: false`, or again after a terminal close or `close()`). */
  connect(): void {
    if (this.stopped) this.reconnect();
  }

  /**
   * Connect again now: the current connection (if any) is closed (4000
   * `reconnect`, reported as a `close` event), the backoff wait skipped and the
   * retry count reset. Works after a terminal close or `close()` too.
   */
  reconnect(): void {
    const ws = this.ws;
    if (ws) this.drop(ws, CLOSE_TIMEOUT, "reconnect", true);
    this.stopped = false;
    this.attempts = 0;
    this.watchNetwork(true);
    this.setStatus(this._session ? "reconnecting" : "connecting");
    void this.open();
  }

  /**
   * Close for good: no reconnect. Acks in flight and queued acked messages reject
   * with CLOSED; queued messages without ack are dropped.
   */
  close(code = 1000, reason = "client closed"): void {
    if (this.stopped && this._status === "closed") return;
    this.stopped = true;
    const ws = this.ws;
    if (ws) this.drop(ws, code, reason, false);
    this.stop("client closed");
  }

  // --- Ext lane ----------------------------------------------------------------------

  /**
   * Send an ext message. Assigns the next `seq`. With `ack: true` the promise
   * resolves on `sys.ack` for that seq and rejects (a WsPrismError with `.code`)
   * on a `sys.error` for it (RATE_LIMITED, PAYLOAD_TOO_LARGE, NOT_ALLOWED…), after
   * `ackTimeoutMs` (ACK_TIMEOUT), or when the socket closes first (DISCONNECTED).
   * Without ack it resolves at once.
   *
   * While not connected the message is queued (up to `maxQueue`) and flushed in
   * order after the next `authed`. Throws synchronously: BAD_REQUEST (bad svc/type,
   * `sys`, data not JSON), PAYLOAD_TOO_LARGE (over `maxFrameBytes`), QUEUE_FULL,
   * CLOSED (after `close()` or a terminal close).
   */
  send(svc: string, type: string, data?: unknown, opts: { ack?: boolean } = {}): Promise<void> {
    if (!NAME_RE.test(svc) || !NAME_RE.test(type)) {
      throw new WsPrismError("BAD_REQUEST", "svc and type must match ^[a-z0-9_-]{1,32}$");
    }
    if (svc === "sys") throw new WsPrismError("BAD_REQUEST", "svc sys is reserved to the SDK");
    if (this.stopped) throw new WsPrismError("CLOSED", "the client is closed; call connect() first");
    const online = this.isOpen();
    if (!online && this.queue.length >= this.opts.maxQueue) {
      throw new WsPrismError("QUEUE_FULL", `offline queue is full (${this.opts.maxQueue} messages)`);
    }
    const ack = opts.ack === true;
    const seq = this.seq + 1;
    let text: string;
    try {
      text = encodeEnvelope(svc, type, seq, data, ack);
    } catch (err) {
      throw new WsPrismError("BAD_REQUEST", `data is not JSON-serialisable: ${errMsg(err)}`);
    }
    // The gateway closes a connection (1009) on a frame over its limit: refuse it here instead.
    const max = this.opts.maxFrameBytes;
    if (max > 0 && text.length * 3 > max && new TextEncoder().encode(text).length > max) {
      throw new WsPrismError("PAYLOAD_TOO_LARGE", `message over maxFrameBytes (${max})`);
    }
    this.seq = seq;
    const out: Outgoing = { seq, text, ack };
    const promise = ack
      ? new Promise<void>((resolve, reject) => {
          out.resolve = resolve;
          out.reject = reject;
        })
      : Promise.resolve();
    if (online) this.transmit(out);
    else this.queue.push(out);
    return promise;
  }

  // --- Hot lane -----------------------------------------------------------------------

  /**
   * Send a hot frame. Never queued: when not connected it is dropped and the
   * result is false (the next state supersedes it anyway).
   */
  sendHot(svc: number, op: number, payload: Uint8Array, opts: { seq?: number } = {}): boolean {
    if (!isU8(svc) || !isU8(op)) throw new RangeError("svc and op must be integers in 0..255");
    if (opts.seq !== undefined && opts.seq >>> 0 !== opts.seq) throw new RangeError("seq must be a u32"); // an integer in 0..2^32-1
    const ws = this.ws;
    if (!ws || !this.isOpen()) return false;
    try {
      ws.send(encodeHotFrame(svc, op, payload, opts.seq));
      return true;
    } catch {
      return false;
    }
  }

  // --- Connection ----------------------------------------------------------------------

  private isOpen(): boolean {
    return this._status === "open" && this.ws?.readyState === WS_OPEN;
  }

  private setStatus(s: Status): void {
    if (this._status === s) return;
    this._status = s;
    this.log?.("status", s);
    this.events.emit("status", s);
  }

  private emitError(info: ErrorInfo): void {
    this._lastError = info;
    this.events.emit("error", info);
  }

  private buildUrl(ticket: string): { url: string; protocols: string[] } {
    const u = new URL(this.opts.url);
    const q = u.searchParams;
    u.protocol = u.protocol.replace(/^http/, "ws"); // http: is ws:, https: is wss:
    if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError("url must be ws(s):// or http(s)://");
    if (u.pathname === "" || u.pathname === "/") u.pathname = "/v1/ws";
    q.set("tenant", this.opts.tenant);
    q.set("room", this.opts.room);
    if (this._sid !== undefined) q.set("sid", this._sid);
    const pos = this.pos;
    if (pos) q.set("resume", `${pos.epoch}.${pos.off}`);
    const proto = `ticket.${ticket}`;
    // A subprotocol must be an HTTP token (browsers throw otherwise): a ticket with
    // other characters (e.g. the `dev:<user>` tickets) goes in the query instead.
    if (isProtocolToken(proto)) return { url: u.toString(), protocols: [SUBPROTOCOL, proto] };
    q.set("ticket", ticket);
    return { url: u.toString(), protocols: [SUBPROTOCOL] };
  }

  /**
   * One connection attempt: a fresh ticket, then a socket, within
   * `connectTimeoutMs` up to `authed`. Not while the browser says it is offline:
   * the `online` event starts it.
   */
  private async open(): Promise<void> {
    if (this.stopped) return;
    this.clearTimer("reconnectTimer");
    const gen = ++this.gen;
    if (this.net && !this.net.onLine) {
      this.log?.("offline: waiting");
      return;
    }
    this.log?.("attempt", this.attempts + 1);
    this.clearTimer("connectTimer");
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (gen !== this.gen) return;
      const ws = this.ws;
      if (ws) this.drop(ws, CLOSE_TIMEOUT, "connect timeout");
      else {
        this.gen++; // the ticket, if it ever comes, is not used
        this.failedAttempt("TICKET_FAILED", "getTicket() timed out");
      }
    }, this.opts.connectTimeoutMs);
    let ticket: { t: string; exp: number | null };
    try {
      ticket = readTicket(await this.opts.getTicket());
    } catch (err) {
      if (gen === this.gen && !this.stopped) this.failedAttempt("TICKET_FAILED", errMsg(err));
      return;
    }
    if (gen !== this.gen || this.stopped) return;
    let ws: WebSocketLike;
    try {
      const { url, protocols } = this.buildUrl(ticket.t);
      ws = new this.Ctor!(url, protocols);
    } catch (err) {
      this.failedAttempt("CONNECT_FAILED", errMsg(err));
      return;
    }
    this.ticketExp = ticket.exp;
    this.attach(ws);
  }

  /** An attempt that ended before it had a socket: report it, then retry or stop. */
  private failedAttempt(code: string, msg: string): void {
    this.clearTimer("connectTimer");
    this.emitError({ code, msg });
    if (this.attempts < this.opts.maxRetries) this.scheduleReconnect();
    else this.stop(`gave up after ${this.attempts + 1} attempts`);
  }

  private attach(ws: WebSocketLike): void {
    this.ws = ws;
    try {
      ws.binaryType = "arraybuffer";
    } catch {
      /* some implementations only take blobs; handled below */
    }
    // Frames are handled in order; a Blob (from a runtime that ignores binaryType)
    // is read asynchronously, so once one shows up later events wait for it.
    let chain: Promise<void> | null = null;
    const track = (p: Promise<void>): void => {
      const mine = p.catch((err: unknown) => console.error("[wsprism] frame handling failed", err));
      chain = mine;
      void mine.then(() => {
        if (chain === mine) chain = null;
      });
    };
    const inOrder = (fn: () => void | Promise<void>): void => {
      if (chain) track(chain.then(fn));
      else {
        const r = fn();
        if (r) track(r);
      }
    };
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.startHeartbeat();
      this.firstFrame(ws);
    };
    ws.onmessage = (ev: { data: unknown }) => {
      const d = ev.data;
      inOrder(() => {
        if (this.ws !== ws) return;
        if (isBlobLike(d)) {
          return d.arrayBuffer().then((buf) => {
            if (this.ws === ws) this.onBinary(new Uint8Array(buf));
          });
        }
        this.onData(d);
      });
    };
    ws.onclose = (ev: { code?: number; reason?: string }) => {
      inOrder(() => this.handleClose(ws, ev?.code ?? 1006, ev?.reason ?? ""));
    };
    // An `error` always means a failed connection (browsers report 1006 after it).
    // Node 22's global WebSocket fires no `close` at all after a failed handshake,
    // so the error itself ends the attempt; a later close event is ignored.
    ws.onerror = () => {
      inOrder(() => {
        if (this.ws === ws) this.drop(ws, 1006, "connection failed");
      });
    };
  }

  /**
   * Stop using a socket: close it (when it is not closed already), report the
   * close, and reconnect (`again`: forced; default: the reconnect rules) or not.
   */
  private drop(ws: WebSocketLike, code: number, reason: string, again?: boolean): void {
    // Handlers off first: Node's WebSocket fires `error` again, synchronously, from close().
    this.handleClose(ws, code, reason, again);
    if (ws.readyState < 2) {
      try {
        // 1006 cannot be sent: the runtime picks the code for a socket that never opened.
        ws.close(code === 1006 ? undefined : code, code === 1006 ? undefined : reason);
      } catch {
        /* already closing */
      }
    }
  }

  /** Stop using the current socket: handlers, heartbeat, timers. */
  private detach(): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = null;
      ws.onmessage = null;
      ws.onclose = null;
      // Not null: the `ws` package throws an `error` nobody listens to (e.g. when a
      // socket is closed before its handshake ended).
      ws.onerror = () => {};
    }
    this.stopHeartbeat();
    this.clearTimer("refreshTimer");
    this.clearTimer("connectTimer");
  }

  private handleClose(ws: WebSocketLike, code: number, reason: string, again?: boolean): void {
    if (this.ws !== ws) return;
    this.detach();
    // Our sid is another user's (SPEC section 2; we were away past window_s): a new session under a fresh
    // sid, no resume, no (sid, seq) dedup: acked messages in flight reject below, the queue goes on.
    const taken = code === 4400 && this._sid && this._lastError?.msg === SID_TAKEN;
    if (taken) [this._sid, this.pos] = [undefined, null];
    // With a position the next connection resumes: acked messages wait for it (resent then).
    this.rejectPending(this.stopped ? "CLOSED" : "DISCONNECTED", "the connection closed before the ack", this.pos !== null);
    const willReconnect =
      again ?? (!this.stopped && this.attempts < this.opts.maxRetries && (taken || this.opts.shouldReconnect({ code, reason })));
    const info: CloseInfo = { code, reason, willReconnect };
    this._lastClose = info;
    this.log?.("close", code, reason, willReconnect);
    this.events.emit("close", info);
    if (again !== undefined) return; // reconnect() and close() go on by themselves
    if (willReconnect) this.scheduleReconnect();
    else this.stop(`connection closed for good (${code})`);
  }

  /** No more attempts: reject what waits, forget the network, status "closed". */
  private stop(why: string): void {
    this.stopped = true;
    this.gen++;
    this.clearTimer("reconnectTimer");
    this.clearTimer("connectTimer");
    this.watchNetwork(false);
    this.rejectPending("CLOSED", why);
    this.rejectQueue("CLOSED", why);
    this.setStatus("closed");
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.setStatus("reconnecting");
    this.clearTimer("reconnectTimer");
    const delay = backoffDelay(this.attempts++, this.opts.backoff, this.opts.random);
    this.log?.("retry", this.attempts, "in", delay, "ms");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, delay);
  }

  // --- Online / offline ----------------------------------------------------------------

  private readonly onOnline = (): void => {
    this.log?.("online");
    if (this.isOpen()) this.checkAlive();
    // Waiting for the backoff or paused offline: try now.
    else if (!this.stopped && !this.ws) void this.open();
  };

  /** Offline: the socket may be dead (or not: loopback, LAN). A ping finds out within pongTimeoutMs. */
  private readonly onOffline = (): void => {
    this.log?.("offline");
    this.checkAlive();
  };

  private checkAlive(): void {
    if (this.opts.heartbeatMs > 0) this.ping();
  }

  private watchNetwork(on: boolean): void {
    const net = this.net;
    if (!net || on === this.watching) return;
    this.watching = on;
    const method = on ? "addEventListener" : "removeEventListener";
    net[method]("online", this.onOnline);
    net[method]("offline", this.onOffline);
  }

  // --- Heartbeat ----------------------------------------------------------------------

  private startHeartbeat(): void {
    this.stopHeartbeat();
    if (!(this.opts.heartbeatMs > 0)) return;
    this.heartbeatTimer = setInterval(() => this.ping(), this.opts.heartbeatMs);
  }

  /**
   * A `ping` as soon as the socket opens, with or without the heartbeat (SPEC v1.2:
   * a socket with no frame within 10 s of `authed` never arrived and is closed, and
   * the room announces a session at its first frame). Also: workerd
   * does not end the TCP connection of a hibernatable socket that the gateway
   * closed (kick, idle timeout, …) when the client's first frame ever is its
   * answering close: the close event would come only when the room object
   * hibernates, 10 s or more later. After any frame the close is prompt
   * (docs/operations.md, Liveness, "Closes"). With the heartbeat on it is the
   * first heartbeat.
   */
  private firstFrame(ws: WebSocketLike): void {
    if (this.opts.heartbeatMs > 0) {
      this.ping();
      return;
    }
    try {
      ws.send("ping");
    } catch {
      /* the close event follows */
    }
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer!); // null: a no-op
    this.heartbeatTimer = null;
    this.clearTimer("pongTimer");
    this.pingSentAt = null;
  }

  private ping(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WS_OPEN || this.pongTimer !== null) return; // one ping in flight
    this.pingSentAt = Date.now();
    try {
      ws.send("ping");
    } catch {
      /* the close event follows */
    }
    this.pongTimer = setTimeout(() => {
      this.pongTimer = null;
      // The socket may be dead without a close event for a long time: stop using it now.
      if (this.ws === ws) this.drop(ws, CLOSE_TIMEOUT, "pong timeout");
    }, this.opts.pongTimeoutMs);
  }

  private onPong(): void {
    if (this.pingSentAt !== null) this._rtt = Date.now() - this.pingSentAt;
    this.pingSentAt = null;
    this.clearTimer("pongTimer");
  }

  // --- Inbound -------------------------------------------------------------------------

  private onData(d: unknown): void {
    if (typeof d === "string") {
      if (d === "pong") {
        this.onPong();
        return;
      }
      const env = parseEnvelope(d);
      if (env) this.onEnvelope(env);
      return;
    }
    if (d instanceof ArrayBuffer) this.onBinary(new Uint8Array(d));
    else if (ArrayBuffer.isView(d)) this.onBinary(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }

  private onBinary(bytes: Uint8Array): void {
    for (const f of decodeBinaryMessage(bytes)) this.dispatchHot(f);
  }

  private dispatchHot(f: InboundHotFrame): void {
    for (const key of [`${f.svc}:${f.op}`, `${f.svc}:*`]) {
      const set = this.hotHandlers.get(key);
      if (set) for (const fn of [...set]) safeCall(fn, f.sender, f.payload, f.seq);
    }
  }

  private onEnvelope(env: Envelope): void {
    const off = env.off;
    const pos = this.pos;
    const logged = typeof off === "number" && pos !== null;
    if (logged) {
      if (off <= pos.off) return; // had it already (a replay overlapping live frames)
      this.pos = { ...pos, off };
    }
    if (env.svc === "sys") {
      const data = (env.data ?? {}) as Record<string, unknown>;
      switch (env.type) {
        case "authed":
          this.onAuthed(data);
          break;
        case "presence":
          this.onPresence(data);
          break;
        case "ack":
          if (typeof data.seq === "number") this.settle(data.seq, null);
          break;
        case "error": {
          const info: ErrorInfo = { code: String(data.code ?? "INTERNAL"), msg: String(data.msg ?? "") };
          if (typeof data.seq === "number") this.settle((info.seq = data.seq), new WsPrismError(info.code, info.msg, info.seq));
          this.emitError(info);
          break;
        }
        case "kicked":
          this.events.emit("kicked", { reason: String(data.reason ?? "") });
          break;
      }
    }
    for (const key of [`${env.svc}:${env.type}`, `${env.svc}:*`, `*:${env.type}`, "*:*"]) {
      const set = this.messageHandlers.get(key);
      if (set) for (const fn of [...set]) safeCall(fn, env.data, env);
    }
    if (logged && this.replay && !--this.replay) this.recovered();
  }

  private onAuthed(data: Record<string, unknown>): void {
    const { user, sid, slot, epoch, off, recovered, count, last_seq } = data;
    if (typeof user !== "string" || typeof sid !== "string" || typeof slot !== "number") return;
    const info = data as unknown as AuthedInfo; // the gateway's fields as they came, resume ones included
    // A position was known, so this connection asked to resume (buildUrl; nothing moves it in between).
    const resumed = this.pos !== null;
    const ok = resumed && recovered === true;
    // No sid after a session: it was another user's (handleClose), so this is a new session.
    const taken = !this._sid && this._session;
    this.replay = +(ok && (count as number)) || 0;
    // Recovered: keep our position, the replay moves it. Otherwise start from the room's head.
    if (!ok) this.pos = typeof epoch === "string" && typeof off === "number" ? { epoch, off } : null;
    this._session = info;
    this._sid ??= sid; // reused on reconnects: the new connection replaces the old session
    this.attempts = 0;
    this.clearTimer("connectTimer");
    this.members.clear();
    this.members.set(slot, { user, sid });
    // Acked messages of the dropped connection first (same seq), but not those the room accepted already.
    // (A missing last_seq compares false: all are resent.)
    for (const [seq, p] of this.pending) if (!(seq <= (last_seq as number))) this.write(seq, p.text!);
    this.flushQueue();
    this.scheduleRefresh();
    this.setStatus("open"); // after the flush: a listener's sends come after the queued ones
    this.events.emit("authed", info);
    if (ok) {
      if (!this.replay) this.recovered();
    } else if (resumed || taken) this.events.emit("resync", { reason: taken ? "sid_taken" : ((data.reason as string) ?? "unknown") });
  }

  private recovered(): void {
    this.events.emit("recovered", { count: this._session!.count ?? 0 });
  }

  private onPresence(data: Record<string, unknown>): void {
    if (data.event === "sync" && Array.isArray(data.members)) {
      // Right after authed: everyone already in the room (SPEC section 4).
      const self = this._session;
      this.members.clear();
      if (self) this.members.set(self.slot, { user: self.user, sid: self.sid });
      for (const m of data.members as Array<Record<string, unknown>>) {
        if (m && typeof m.slot === "number" && typeof m.user === "string" && typeof m.sid === "string") {
          this.members.set(m.slot, { user: m.user, sid: m.sid });
        }
      }
      this.events.emit("members", this.members);
      return;
    }
    const { event, user, sid, slot } = data;
    if ((event !== "join" && event !== "leave") || typeof slot !== "number") return;
    const p: PresenceEvent = { event, user: String(user), sid: String(sid), slot };
    if (event === "join") this.members.set(slot, { user: p.user, sid: p.sid });
    else {
      const m = this.members.get(slot);
      if (!m || m.sid === p.sid) this.members.delete(slot);
    }
    this.events.emit("presence", p);
    this.events.emit("members", this.members);
  }

  // --- Outbound ----------------------------------------------------------------------

  private transmit(out: Outgoing): void {
    if (out.ack) {
      const timer = setTimeout(() => {
        this.settle(out.seq, new WsPrismError("ACK_TIMEOUT", `no ack within ${this.opts.ackTimeoutMs} ms`, out.seq));
      }, this.opts.ackTimeoutMs);
      this.pending.set(out.seq, { resolve: out.resolve!, reject: out.reject!, timer, text: out.once ? undefined : out.text });
    }
    this.write(out.seq, out.text);
  }

  private write(seq: number, text: string): void {
    try {
      this.ws!.send(text);
    } catch (err) {
      this.settle(seq, new WsPrismError("DISCONNECTED", `send failed: ${errMsg(err)}`, seq));
    }
  }

  private flushQueue(): void {
    const items = this.queue.splice(0);
    for (const out of items) this.transmit(out);
  }

  /** Resolve (err null) or reject the pending ack of `seq`, if any. */
  private settle(seq: number, err: WsPrismError | null): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve();
  }

  /** Reject the pending acks; with `keep`, all but those to resend after a resume. */
  private rejectPending(code: string, msg: string, keep?: boolean): void {
    for (const [seq, p] of [...this.pending]) if (!(keep && p.text)) this.settle(seq, new WsPrismError(code, msg, seq));
  }

  private rejectQueue(code: string, msg: string): void {
    for (const out of this.queue.splice(0)) out.reject?.(new WsPrismError(code, msg, out.seq));
  }

  // --- Ticket refresh ----------------------------------------------------------------

  /**
   * Refresh the ticket of the live connection now: `getTicket()`, then
   * `sys:refresh` with an ack. Resolves once the gateway accepted it (the new
   * ticket's `exp` then schedules the next automatic refresh); rejects with the
   * gateway's code (AUTH_FAILED…), REFRESH_FAILED (getTicket failed), or
   * DISCONNECTED / CLOSED when there is no live connection (the next one gets
   * a fresh ticket anyway).
   */
  async refresh(): Promise<void> {
    const ws = this.ws;
    const gone = () => new WsPrismError(this.stopped ? "CLOSED" : "DISCONNECTED", "no live connection to refresh");
    if (!ws || !this.isOpen()) throw gone();
    let ticket: { t: string; exp: number | null };
    try {
      ticket = readTicket(await this.opts.getTicket());
    } catch (err) {
      this.emitError({ code: "REFRESH_FAILED", msg: errMsg(err) });
      throw new WsPrismError("REFRESH_FAILED", errMsg(err));
    }
    if (this.ws !== ws || !this.isOpen()) throw gone();
    const seq = ++this.seq;
    const text = encodeEnvelope("sys", "refresh", seq, { ticket: ticket.t }, true);
    await new Promise<void>((resolve, reject) => this.transmit({ seq, text, ack: true, resolve, reject, once: true }));
    this.log?.("ticket refreshed");
    if (this.ws !== ws) return;
    this.ticketExp = ticket.exp;
    this.scheduleRefresh();
  }

  /**
   * With a known `exp`: refresh `refreshBeforeExpMs` before it (or at half the remaining life when shorter).
   * `retry`, after a failed refresh: try again in 1–5 s while the current ticket is still valid.
   */
  private scheduleRefresh(retry?: boolean): void {
    this.clearTimer("refreshTimer");
    const exp = this.ticketExp;
    if (exp === null) return;
    const left = exp * 1000 - Date.now();
    if (retry) {
      if (left > 0) this.refreshLater(Math.max(1000, Math.min(5000, left / 2)));
      return;
    }
    let delay = left - this.opts.refreshBeforeExpMs;
    if (delay < 0) delay = Math.max(1000, left / 2);
    this.refreshLater(Math.min(delay, MAX_TIMER_MS));
  }

  private refreshLater(delay: number): void {
    const ws = this.ws;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      // A sys.error or REFRESH_FAILED was reported as an `error` event already.
      this.refresh().catch(() => {
        if (this.ws === ws) this.scheduleRefresh(true);
      });
    }, delay);
  }

  private clearTimer(name: "reconnectTimer" | "connectTimer" | "pongTimer" | "refreshTimer"): void {
    clearTimeout(this[name]!); // null: a no-op
    this[name] = null;
  }
}

/** The ticket and its exp: the one getTicket() gave, else a JWT's own. */
function readTicket(v: TicketResult): { t: string; exp: number | null } {
  const t = typeof v === "string" ? v : v?.ticket;
  if (typeof t !== "string" || t === "") throw new TypeError("getTicket() gave no ticket");
  const exp = typeof v === "object" && typeof v.exp === "number" && Number.isFinite(v.exp) ? v.exp : jwtExp(t);
  return { t, exp };
}

/** The browser's online/offline signal; null where there is none (Node, workers). */
function browserNetwork(): NetworkLike | null {
  const g = globalThis as { navigator?: { onLine?: unknown }; addEventListener?: unknown; removeEventListener?: unknown };
  if (typeof g.navigator?.onLine !== "boolean" || typeof g.addEventListener !== "function") return null;
  return {
    get onLine() {
      return g.navigator!.onLine !== false;
    },
    addEventListener: (type, fn) => (g.addEventListener as EventTarget["addEventListener"])(type, fn),
    removeEventListener: (type, fn) => (g.removeEventListener as EventTarget["removeEventListener"])(type, fn),
  };
}

/** An integer in 0..255 (NaN, fractions, negatives and non-numbers fail). */
function isU8(n: number): boolean {
  return (n & 255) === n;
}

function addHandler<F>(map: Map<string, Set<F>>, key: string, fn: F): () => void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(fn);
  return () => {
    set.delete(fn);
    if (set.size === 0 && map.get(key) === set) map.delete(key);
  };
}
