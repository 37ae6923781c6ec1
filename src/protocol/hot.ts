/**
 * Hot lane codec (SPEC section 5). Little-endian binary frames, decoded with typed
 * arrays over the received buffer: the payload is never copied on decode, and an
 * outbound frame is one allocation plus one `set` of the payload.
 *
 *   client -> gateway: [v:u8=1][svc_id:u8][opcode:u8][flags:u8][seq:u32 if flags&0x01][payload...]
 *   gateway -> client: [v][svc_id][opcode][flags|0x80][seq:u32 if flags&0x01][sender:u16][payload...]
 */

export const HOT_VERSION = 1;
export const HOT_FLAG_SEQ = 0x01;
export const HOT_FLAG_SENDER = 0x80;

/** A decoded frame. `payload` is a view into the received buffer, not a copy. */
export interface HotFrame {
  svc: number;
  op: number;
  /** Client flags as sent (0x80 is the gateway's and is cleared here). */
  flags: number;
  seq: number | null;
  payload: Uint8Array;
}

export type HotDecodeError = { error: "BAD_REQUEST" | "UNSUPPORTED_VERSION"; msg: string };

/** Decode a client frame. Never throws. */
export function decodeHot(buf: ArrayBuffer | ArrayBufferView): HotFrame | HotDecodeError {
  const bytes =
    buf instanceof Uint8Array
      ? buf
      : ArrayBuffer.isView(buf)
        ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
        : new Uint8Array(buf);
  const len = bytes.byteLength;
  if (len < 4) return { error: "BAD_REQUEST", msg: "hot frame shorter than its 4-byte header" };
  if (bytes[0] !== HOT_VERSION) return { error: "UNSUPPORTED_VERSION", msg: "hot frame version must be 1" };
  const flags = bytes[3]! & ~HOT_FLAG_SENDER;
  let offset = 4;
  let seq: number | null = null;
  if (flags & HOT_FLAG_SEQ) {
    if (len < 8) return { error: "BAD_REQUEST", msg: "hot frame with SEQ_PRESENT shorter than 8 bytes" };
    seq = (bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16) | (bytes[7]! << 24)) >>> 0;
    offset = 8;
  }
  return { svc: bytes[1]!, op: bytes[2]!, flags, seq, payload: bytes.subarray(offset) };
}

/** Length of the gateway-to-client form of a frame. */
export function outboundLength(frame: HotFrame): number {
  return (frame.seq === null ? 6 : 10) + frame.payload.byteLength;
}

/**
 * Encode the gateway-to-client form (SENDER_PRESENT + u16 sender slot) into `out`
 * at `offset` (or a new buffer). Returns the bytes written as a view.
 */
export function encodeOutbound(frame: HotFrame, sender: number, out?: Uint8Array, offset = 0): Uint8Array {
  const size = outboundLength(frame);
  const target = out ?? new Uint8Array(size);
  let o = offset;
  target[o++] = HOT_VERSION;
  target[o++] = frame.svc;
  target[o++] = frame.op;
  target[o++] = (frame.flags & ~HOT_FLAG_SENDER) | HOT_FLAG_SENDER | (frame.seq === null ? 0 : HOT_FLAG_SEQ);
  if (frame.seq !== null) {
    const s = frame.seq;
    target[o++] = s & 0xff;
    target[o++] = (s >>> 8) & 0xff;
    target[o++] = (s >>> 16) & 0xff;
    target[o++] = (s >>> 24) & 0xff;
  }
  target[o++] = sender & 0xff;
  target[o++] = (sender >>> 8) & 0xff;
  target.set(frame.payload, o);
  return target.subarray(offset, offset + size);
}

/** Client-side helper (tests, SDK, bench): encode a client-to-gateway frame. */
export function encodeClientHot(svc: number, op: number, payload: Uint8Array, seq?: number, extraFlags = 0): Uint8Array {
  const hasSeq = seq !== undefined;
  const out = new Uint8Array((hasSeq ? 8 : 4) + payload.byteLength);
  out[0] = HOT_VERSION;
  out[1] = svc;
  out[2] = op;
  out[3] = (extraFlags & ~(HOT_FLAG_SENDER | HOT_FLAG_SEQ)) | (hasSeq ? HOT_FLAG_SEQ : 0);
  if (hasSeq) new DataView(out.buffer).setUint32(4, seq >>> 0, true);
  out.set(payload, hasSeq ? 8 : 4);
  return out;
}

/** Client-side helper: decode a gateway-to-client frame. Returns null when malformed. */
export function decodeOutbound(
  buf: ArrayBuffer | Uint8Array,
): { svc: number; op: number; flags: number; seq: number | null; sender: number; payload: Uint8Array } | null {
  const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  if (bytes.byteLength < 6 || bytes[0] !== HOT_VERSION || !(bytes[3]! & HOT_FLAG_SENDER)) return null;
  const flags = bytes[3]!;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 4;
  let seq: number | null = null;
  if (flags & HOT_FLAG_SEQ) {
    if (bytes.byteLength < 10) return null;
    seq = dv.getUint32(4, true);
    o = 8;
  }
  const sender = dv.getUint16(o, true);
  return { svc: bytes[1]!, op: bytes[2]!, flags, seq, sender, payload: bytes.subarray(o + 2) };
}

/** The seq of a hot frame that will not be decoded (over the size or rate limit), if its header has one. */
export function peekHotSeq(buf: ArrayBuffer): number | undefined {
  if (buf.byteLength < 8) return undefined;
  const b = new Uint8Array(buf, 0, 8);
  if (b[0] !== HOT_VERSION || (b[3]! & HOT_FLAG_SEQ) === 0) return undefined;
  return (b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24)) >>> 0;
}
