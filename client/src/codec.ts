/**
 * Wire codecs of the wsPrism v1 protocol, as seen from a client (SPEC sections 4 and 5).
 *
 * DUPLICATION NOTE: the SDK ships as its own package (`@wsprism/client`) with no
 * dependency on the gateway, so the few client-side codec functions are copied
 * here rather than imported from `src/`:
 *   - `encodeHotFrame`   ~ `encodeClientHot`  in src/protocol/hot.ts
 *   - `decodeHotFrame`   ~ `decodeOutbound`   in src/protocol/hot.ts
 *   - `decodeBatchFrame` ~ `decodeBatch`      in src/room/state.ts
 * The wire format is the contract (SPEC.md), so both copies must follow it; the
 * SDK's tests check these against frames produced by the real gateway.
 *
 * Hot lane, little-endian:
 *   client -> gateway: [v:u8=1][svc_id:u8][opcode:u8][flags:u8][seq:u32 if flags&0x01][payload…]
 *   gateway -> client: [v][svc_id][opcode][flags|0x80][seq:u32 if flags&0x01][sender:u16][payload…]
 *   state batch:       [1][svc_id=0][opcode=1][flags=0][count:u16] then count × [len:u16][inner frame]
 */

export const HOT_VERSION = 1;
/** Hot flag: a u32 seq follows the 4-byte header. */
export const HOT_FLAG_SEQ = 0x01;
/** Hot flag set by the gateway: a u16 sender slot follows the header (and seq). */
export const HOT_FLAG_SENDER = 0x80;

/** Ext flags (u32). */
export const EXT_FLAG_SEQ = 0x01;
export const EXT_FLAG_ROOM = 0x02;
export const EXT_FLAG_ACK = 0x04;

/** `svc` and `type` of ext envelopes. */
export const NAME_RE = /^[a-z0-9_-]{1,32}$/;

/** A hot frame as received from the gateway. `payload` is a view into the received buffer (no copy). */
export interface InboundHotFrame {
  svc: number;
  op: number;
  /** Flags as received (0x80 SENDER_PRESENT included). */
  flags: number;
  seq: number | null;
  /** Member slot of the sender; 0 for frames an origin sent through the HTTP API. */
  sender: number;
  payload: Uint8Array;
}

/** Encode a client-to-gateway hot frame: one allocation, one copy of the payload. */
export function encodeHotFrame(svc: number, op: number, payload: Uint8Array, seq?: number): Uint8Array<ArrayBuffer> {
  const hasSeq = seq !== undefined;
  const header = hasSeq ? 8 : 4;
  const out = new Uint8Array(header + payload.byteLength);
  out[0] = HOT_VERSION;
  out[1] = svc;
  out[2] = op;
  out[3] = hasSeq ? HOT_FLAG_SEQ : 0;
  if (hasSeq) {
    const s = seq >>> 0;
    out[4] = s & 0xff;
    out[5] = (s >>> 8) & 0xff;
    out[6] = (s >>> 16) & 0xff;
    out[7] = (s >>> 24) & 0xff;
  }
  out.set(payload, header);
  return out;
}

/** Decode a gateway-to-client hot frame (SENDER_PRESENT set). Null when malformed; never throws. */
export function decodeHotFrame(bytes: Uint8Array): InboundHotFrame | null {
  const len = bytes.byteLength;
  if (len < 6 || bytes[0] !== HOT_VERSION) return null;
  const flags = bytes[3]!;
  if (!(flags & HOT_FLAG_SENDER)) return null;
  let o = 4;
  let seq: number | null = null;
  if (flags & HOT_FLAG_SEQ) {
    if (len < 10) return null;
    seq = (bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16) | (bytes[7]! << 24)) >>> 0;
    o = 8;
  }
  const sender = bytes[o]! | (bytes[o + 1]! << 8);
  return { svc: bytes[1]!, op: bytes[2]!, flags, seq, sender, payload: bytes.subarray(o + 2) };
}

/** True when the frame is a state batch (svc 0, opcode 1, no SENDER_PRESENT). */
export function isBatchFrame(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 6 && bytes[0] === HOT_VERSION && bytes[1] === 0 && bytes[2] === 1 && !(bytes[3]! & HOT_FLAG_SENDER);
}

/** Split a state batch frame into its inner frames (views, no copies). Null when malformed; never throws. */
export function decodeBatchFrame(bytes: Uint8Array): Uint8Array[] | null {
  if (!isBatchFrame(bytes)) return null;
  const count = bytes[4]! | (bytes[5]! << 8);
  const frames: Uint8Array[] = [];
  let o = 6;
  for (let i = 0; i < count; i++) {
    if (o + 2 > bytes.byteLength) return null;
    const len = bytes[o]! | (bytes[o + 1]! << 8);
    o += 2;
    if (o + len > bytes.byteLength) return null;
    frames.push(bytes.subarray(o, o + len));
    o += len;
  }
  return o === bytes.byteLength ? frames : null;
}

/**
 * Every hot frame a binary message holds: one for a relay/echo frame, each inner
 * frame of a state batch. Malformed frames (or malformed inner frames) are skipped;
 * an empty list means nothing usable. Never throws.
 */
export function decodeBinaryMessage(bytes: Uint8Array): InboundHotFrame[] {
  if (isBatchFrame(bytes)) {
    const inner = decodeBatchFrame(bytes);
    if (!inner) return [];
    const out: InboundHotFrame[] = [];
    for (const f of inner) {
      const d = decodeHotFrame(f);
      if (d) out.push(d);
    }
    return out;
  }
  const d = decodeHotFrame(bytes);
  return d ? [d] : [];
}

/** A JSON envelope of the ext lane (gateway to client). */
export interface Envelope<T = unknown> {
  v: number;
  svc: string;
  type: string;
  flags?: number;
  seq?: number;
  room?: string;
  data?: T;
  /** Sender of relayed and origin-sent messages (`@origin` for the latter). */
  from?: { user: string; sid: string };
  trace_id?: string;
  /** Offset in the room's log of a logged frame (SPEC section 10). */
  off?: number;
}

/** Parse a text frame into an envelope; null when it is not one. Never throws. */
export function parseEnvelope(text: string): Envelope | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return null;
  const e = raw as Envelope;
  return typeof e.svc === "string" && typeof e.type === "string" ? e : null;
}

/** Encode a client-to-gateway envelope. `flags` carries ACK_REQUESTED only (field presence is authoritative). */
export function encodeEnvelope(svc: string, type: string, seq: number, data: unknown, ack: boolean): string {
  const env: Record<string, unknown> = { v: 1, svc, type };
  if (ack) env.flags = EXT_FLAG_ACK;
  env.seq = seq;
  if (data !== undefined) env.data = data;
  return JSON.stringify(env);
}

/**
 * `exp` (seconds since the epoch) of a compact JWT, decoded WITHOUT verification
 * (only to schedule a refresh). Null when the ticket is not a JWT or has no numeric exp.
 */
export function jwtExp(ticket: string): number | null {
  const parts = ticket.split(".");
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p)) || parts[1] === "") return null;
  try {
    const b64 = parts[1]!.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as { exp?: unknown };
    return typeof claims === "object" && claims !== null && typeof claims.exp === "number" && Number.isFinite(claims.exp)
      ? claims.exp
      : null;
  } catch {
    return null;
  }
}

/** RFC 7230 token: what a `Sec-WebSocket-Protocol` value may hold (browsers throw otherwise). */
export function isProtocolToken(s: string): boolean {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(s);
}
