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
  EXT_FLAG_ACK,
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

/** The subprotocol of the v1 wire contract. */
export const SUBPROTOCOL = "wsprism.v1";

/**
 * Close codes after which the client does not reconnect:
 * 1000 normal (e.g. after `room:leave`), 1008 policy, 4001 auth expired (the
 * refresh did not happen or was refused), 4003 kicked, 4004 session replaced.
 */
export const TERMINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1008, 4001, 4003, 4004]);

/** Close code the SDK uses (and reports) when a `pong` did not arrive in time. */
export const CLOSE_PONG_TIMEOUT = 4000;

// --- WebSocket abstraction ---------------------------------------------------

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

const WS_OPEN = 1;

// --- Public types --------------------------------------------------------------

export type Status = "connecting" | "open" | "reconnecting" | "closed";

export interface AuthedInfo {
  tenant: string;
  user: string;
  sid: string;
  room: string;
  slot: number;
}

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
}

export type MessageHandler<T = any> = (data: T, envelope: Envelope<T>) => void;
/** `seq` is null when the sender did not set one. `payload` is a view into the received buffer. */
export type HotHandler = (sender: number, payload: Uint8Array, seq: number | null) => void;

export interface WsPrismClientOptions {
  /** Gateway base URL, `ws(s)://host` (the path defaults to `/v1/ws`; `http(s)` is accepted too). */
  url: string;
  tenant: string;
  room: string;
  /** Session id to use (`^[A-Za-z0-9_-]{1,64}$`); by default the gateway's, kept from the first `authed`. */
  sid?: string;
  /** A ticket for the next connection attempt or refresh; called every time. */
  getTicket: () => Promise<string> | string;
  /** Interval of the `ping` heartbeat, ms (0 disables it). Default 10000. */
  heartbeatMs?: number;
  /** Close and reconnect when `pong` does not arrive within this, ms. Default 5000. */
  pongTimeoutMs?: number;
  /** Reconnect backoff: `random(0, min(maxMs, baseMs * 2^attempt))`. Default {baseMs: 250, maxMs: 15000}. */
  backoff?: BackoffOptions;
  /** Ext messages held while offline; beyond it `send` throws QUEUE_FULL. Default 256. */
  maxQueue?: number;
  /** An acked `send` rejects with ACK_TIMEOUT after this, ms. Default 10000. */
  ackTimeoutMs?: number;
  /** With a JWT ticket, send `sys:refresh` this long before its `exp`, ms. Default 30000. */
  refreshBeforeExpMs?: number;
  /** Connect from the constructor (on a microtask, so listeners added right after see every event). Default true. */
  autoConnect?: boolean;
  /** WebSocket constructor (default: the global one). For tests and non-standard runtimes. */
  WebSocket?: WebSocketCtor;
  /** Random source of the backoff jitter, in [0, 1). Default Math.random. */
  random?: () => number;
}

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
}

interface Pending {
  resolve: () => void;
  reject: (err: WsPrismError) => void;
  timer: ReturnType<typeof setTimeout>;
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

  private readonly opts: Required<Omit<WsPrismClientOptions, "sid" | "WebSocket" | "backoff">> & {
    backoff: BackoffOptions;
  };
  private readonly Ctor: WebSocketCtor | undefined;
  private readonly events = new Emitter<ClientEvents>();
  private readonly messageHandlers = new Map<string, Set<MessageHandler>>();
  private readonly hotHandlers = new Map<string, Set<HotHandler>>();

  private _status: Status;
  private ws: WebSocketLike | null = null;
  /** Bumped by every connection attempt and by close(): stale async work checks it. */
  private gen = 0;
  /** Set by close() and terminal closes: no reconnect. */
  private stopped: boolean;
  private attempts = 0;
  private everAuthed = false;
  private _sid: string | undefined;
  private _session: AuthedInfo | null = null;
  /** Ticket of the current connection (or of the last accepted refresh). */
  private ticket: string | null = null;
  private seq = 0;
  private readonly queue: Outgoing[] = [];
  private readonly pending = new Map<number, Pending>();

  private reconnectTimer: Timer | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: Timer | null = null;
  private refreshTimer: Timer | null = null;
  private pingSentAt: number | null = null;
  private _rtt: number | null = null;

  constructor(options: WsPrismClientOptions) {
    if (!options || typeof options.getTicket !== "function") throw new TypeError("getTicket is required");
    this.opts = {
      url: options.url,
      tenant: options.tenant,
      room: options.room,
      getTicket: options.getTicket,
      heartbeatMs: options.heartbeatMs ?? 10_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 5_000,
      backoff: options.backoff ?? {},
      maxQueue: options.maxQueue ?? 256,
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      refreshBeforeExpMs: options.refreshBeforeExpMs ?? 30_000,
      autoConnect: options.autoConnect ?? true,
      random: options.random ?? Math.random,
    };
    this._sid = options.sid;
    this.Ctor = options.WebSocket ?? ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketCtor | undefined);
    if (!this.Ctor) throw new TypeError("no global WebSocket: pass the WebSocket option");
    this.buildUrl("x"); // throws early on a malformed url
    if (this.opts.autoConnect) {
      this._status = "connecting";
      this.stopped = false;
      queueMicrotask(() => void this.open());
    } else {
      this._status = "closed";
      this.stopped = true;
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

  /** Ext messages waiting for a connection. */
  get queued(): number {
    return this.queue.length;
  }

  // --- Events ------------------------------------------------------------------

  on<K extends keyof ClientEvents>(event: K, fn: (payload: ClientEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  /** Ext messages by svc and type (`"*"`: every type of the svc). `sys` messages are delivered too. */
  onMessage<T = any>(svc: string, type: string, fn: MessageHandler<T>): () => void {
    return addHandler(this.messageHandlers, `${svc}:${type}`, fn as MessageHandler);
  }

  /** Hot frames by svc_id and opcode (`"*"`: every opcode): relay/echo frames and each frame of a state batch. */
  onHot(svc: number, op: number | "*", fn: HotHandler): () => void {
    return addHandler(this.hotHandlers, `${svc}:${op}`, fn);
  }

  // --- Lifecycle -----------------------------------------------------------------

  /** Start connecting (after `autoConnect: false`, or again after a terminal close or `close()`). */
  connect(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempts = 0;
    this.setStatus(this.everAuthed ? "reconnecting" : "connecting");
    void this.open();
  }

  /**
   * Close for good: no reconnect. Acks in flight and queued acked messages reject
   * with CLOSED; queued messages without ack are dropped.
   */
  close(code = 1000, reason = "client closed"): void {
    if (this.stopped && this._status === "closed") return;
    this.stopped = true;
    this.gen++;
    this.clearTimer("reconnectTimer");
    const ws = this.ws;
    if (ws) {
      this.detach();
      try {
        ws.close(code, reason);
      } catch {
        /* already closing */
      }
    }
    this.rejectPending("CLOSED", "client closed");
    this.rejectQueue("CLOSED", "client closed");
    if (ws) this.events.emit("close", { code, reason, willReconnect: false });
    this.setStatus("closed");
  }

  // --- Ext lane ----------------------------------------------------------------------

  /**
   * Send an ext message. Assigns the next `seq`. With `ack: true` the promise
   * resolves on `sys.ack` for that seq and rejects (a WsPrismError with `.code`)
   * on a `sys.error` for it, after `ackTimeoutMs` (ACK_TIMEOUT), or when the
   * socket closes first (DISCONNECTED). Without ack it resolves at once.
   *
   * While not connected the message is queued (up to `maxQueue`) and flushed in
   * order after the next `authed`. Throws synchronously: BAD_REQUEST (bad svc/type,
   * `sys`, data not JSON), QUEUE_FULL, CLOSED (after `close()` or a terminal close).
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
    if (opts.seq !== undefined && !(Number.isInteger(opts.seq) && opts.seq >= 0 && opts.seq <= 0xffffffff)) {
      throw new RangeError("seq must be a u32");
    }
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
    return this._status === "open" && this.ws !== null && this.ws.readyState === WS_OPEN;
  }

  private setStatus(s: Status): void {
    if (this._status === s) return;
    this._status = s;
    this.events.emit("status", s);
  }

  private buildUrl(ticket: string): { url: string; protocols: string[] } {
    const u = new URL(this.opts.url);
    if (u.protocol === "http:") u.protocol = "ws:";
    else if (u.protocol === "https:") u.protocol = "wss:";
    if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError("url must be ws(s):// or http(s)://");
    if (u.pathname === "" || u.pathname === "/") u.pathname = "/v1/ws";
    u.searchParams.set("tenant", this.opts.tenant);
    u.searchParams.set("room", this.opts.room);
    if (this._sid !== undefined) u.searchParams.set("sid", this._sid);
    const proto = `ticket.${ticket}`;
    // A subprotocol must be an HTTP token (browsers throw otherwise): a ticket with
    // other characters (e.g. the `dev:<user>` tickets) goes in the query instead.
    if (isProtocolToken(proto)) return { url: u.toString(), protocols: [SUBPROTOCOL, proto] };
    u.searchParams.set("ticket", ticket);
    return { url: u.toString(), protocols: [SUBPROTOCOL] };
  }

  /** One connection attempt: a fresh ticket, then a socket. */
  private async open(): Promise<void> {
    if (this.stopped) return;
    const gen = ++this.gen;
    let ticket: string;
    try {
      ticket = await this.opts.getTicket();
      if (typeof ticket !== "string" || ticket === "") throw new TypeError("getTicket() gave no ticket");
    } catch (err) {
      if (gen !== this.gen || this.stopped) return;
      this.events.emit("error", { code: "TICKET_FAILED", msg: errMsg(err) });
      this.scheduleReconnect();
      return;
    }
    if (gen !== this.gen || this.stopped) return;
    let ws: WebSocketLike;
    try {
      const { url, protocols } = this.buildUrl(ticket);
      ws = new this.Ctor!(url, protocols);
    } catch (err) {
      this.events.emit("error", { code: "CONNECT_FAILED", msg: errMsg(err) });
      this.scheduleReconnect();
      return;
    }
    this.ticket = ticket;
    this.attach(ws);
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
    ws.onerror = () => {
      /* a close event follows */
    };
  }

  /** Stop using the current socket: handlers, heartbeat, refresh. */
  private detach(): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = null;
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = null;
    }
    this.stopHeartbeat();
    this.clearTimer("refreshTimer");
  }

  private handleClose(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.detach();
    this.rejectPending("DISCONNECTED", "the connection closed before the ack");
    const willReconnect = !this.stopped && !TERMINAL_CLOSE_CODES.has(code);
    this.events.emit("close", { code, reason, willReconnect });
    if (!willReconnect) {
      this.stopped = true;
      this.rejectQueue("CLOSED", `connection closed for good (${code})`);
      this.setStatus("closed");
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.setStatus("reconnecting");
    this.clearTimer("reconnectTimer");
    const delay = backoffDelay(this.attempts++, this.opts.backoff, this.opts.random);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, delay);
  }

  // --- Heartbeat ----------------------------------------------------------------------

  private startHeartbeat(): void {
    this.stopHeartbeat();
    if (!(this.opts.heartbeatMs > 0)) return;
    this.heartbeatTimer = setInterval(() => this.ping(), this.opts.heartbeatMs);
  }

  /**
   * A `ping` as soon as the socket opens, with or without the heartbeat. workerd
   * does not end the TCP connection of a hibernatable socket that the gateway
   * closed (kick, idle timeout, …) when the client's first frame ever is its
   * answering close: the close event would come only when the room object
   * hibernates, 10 s or more later. After any frame the close is prompt. The
   * runtime answers `ping` without waking the room (docs/operations.md,
   * Liveness, "Closes"). With the heartbeat on it is the first heartbeat.
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
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
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
      if (this.ws !== ws) return;
      // The socket may be dead without a close event for a long time: stop using it now.
      try {
        ws.close(CLOSE_PONG_TIMEOUT, "pong timeout");
      } catch {
        /* ignore */
      }
      this.handleClose(ws, CLOSE_PONG_TIMEOUT, "pong timeout");
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
          if (typeof data.seq === "number") info.seq = data.seq;
          if (info.seq !== undefined) this.settle(info.seq, new WsPrismError(info.code, info.msg, info.seq));
          this.events.emit("error", info);
          break;
        }
        case "kicked":
          this.events.emit("kicked", { reason: String(data.reason ?? "") });
          break;
      }
    }
    for (const key of [`${env.svc}:${env.type}`, `${env.svc}:*`]) {
      const set = this.messageHandlers.get(key);
      if (set) for (const fn of [...set]) safeCall(fn, env.data, env);
    }
  }

  private onAuthed(data: Record<string, unknown>): void {
    const { tenant, user, sid, room, slot } = data;
    if (typeof user !== "string" || typeof sid !== "string" || typeof slot !== "number") return;
    const info: AuthedInfo = { tenant: String(tenant), user, sid, room: String(room), slot };
    this._session = info;
    this._sid ??= sid; // reused on reconnects: the new connection replaces the old session
    this.attempts = 0;
    this.everAuthed = true;
    this.members.clear();
    this.members.set(slot, { user, sid });
    // "open" before the flush (so the flush writes to the socket), announced after
    // it (so a listener's sends come after the queued ones).
    this._status = "open";
    this.flushQueue();
    this.scheduleRefresh();
    this.events.emit("status", "open");
    this.events.emit("authed", info);
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
      this.pending.set(out.seq, { resolve: out.resolve!, reject: out.reject!, timer });
    }
    try {
      this.ws!.send(out.text);
    } catch (err) {
      this.settle(out.seq, new WsPrismError("DISCONNECTED", `send failed: ${errMsg(err)}`, out.seq));
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

  private rejectPending(code: string, msg: string): void {
    for (const seq of [...this.pending.keys()]) this.settle(seq, new WsPrismError(code, msg, seq));
  }

  private rejectQueue(code: string, msg: string): void {
    for (const out of this.queue.splice(0)) out.reject?.(new WsPrismError(code, msg, out.seq));
  }

  // --- Ticket refresh ----------------------------------------------------------------

  /** With a JWT ticket: refresh `refreshBeforeExpMs` before `exp` (or at half the remaining life when shorter). */
  private scheduleRefresh(): void {
    this.clearTimer("refreshTimer");
    const exp = this.ticket === null ? null : jwtExp(this.ticket);
    if (exp === null) return;
    const left = exp * 1000 - Date.now();
    let delay = left - this.opts.refreshBeforeExpMs;
    if (delay < 0) delay = Math.max(1000, left / 2);
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refresh();
    }, Math.min(delay, MAX_TIMER_MS));
  }

  private async refresh(): Promise<void> {
    const ws = this.ws;
    if (!ws || !this.isOpen()) return;
    let ticket: string;
    try {
      ticket = await this.opts.getTicket();
      if (typeof ticket !== "string" || ticket === "") throw new TypeError("getTicket() gave no ticket");
    } catch (err) {
      if (this.ws !== ws) return;
      this.events.emit("error", { code: "REFRESH_FAILED", msg: errMsg(err) });
      this.retryRefresh();
      return;
    }
    if (this.ws !== ws || !this.isOpen()) return;
    const seq = ++this.seq;
    const text = JSON.stringify({ v: 1, svc: "sys", type: "refresh", flags: EXT_FLAG_ACK, seq, data: { ticket } });
    const done = new Promise<void>((resolve, reject) => this.transmit({ seq, text, ack: true, resolve, reject }));
    done.then(
      () => {
        if (this.ws !== ws) return;
        this.ticket = ticket;
        this.scheduleRefresh();
      },
      () => {
        // A sys.error is reported as an `error` event already; DISCONNECTED needs nothing.
        if (this.ws === ws) this.retryRefresh();
      },
    );
  }

  /** After a failed refresh: try again in 1–5 s while the current ticket is still valid. */
  private retryRefresh(): void {
    this.clearTimer("refreshTimer");
    const exp = this.ticket === null ? null : jwtExp(this.ticket);
    if (exp === null) return;
    const left = exp * 1000 - Date.now();
    if (left <= 0) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refresh();
    }, Math.max(1000, Math.min(5000, left / 2)));
  }

  private clearTimer(name: "reconnectTimer" | "pongTimer" | "refreshTimer"): void {
    const t = this[name];
    if (t !== null) clearTimeout(t);
    this[name] = null;
  }
}

function isU8(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 255;
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
