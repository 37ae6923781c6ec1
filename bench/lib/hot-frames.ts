/**
 * The load generator's reading of a binary message from a target: one hot frame
 * (relayed as is by the baseline and partyserver, or in the gateway-to-client
 * form with SENDER_PRESENT), or a batch frame holding many (SPEC section 5: the
 * `state` batch form, also what a relay service with `coalesce: true` sends).
 *
 * Allocation-free on purpose: at 35,000 frames/s the generator shares the two
 * cores with workerd, and a Buffer per inner frame would be load it adds to the
 * measurement. The SDK's decoder (client/src/codec.ts) is the reference; the
 * test checks both agree.
 */

/** Batch header: [1][svc_id=0][opcode=1][flags=0][count:u16]. */
const BATCH_HEADER = 6;

/** True when the message is a batch frame (svc 0, opcode 1, no SENDER_PRESENT). */
export function isBatch(buf: Uint8Array): boolean {
  return buf.byteLength >= BATCH_HEADER && buf[0] === 1 && buf[1] === 0 && buf[2] === 1 && (buf[3]! & 0x80) === 0;
}

/** Offset of the payload of the hot frame that starts at `start`: header, seq if SEQ_PRESENT, slot if SENDER_PRESENT. */
export function payloadAt(buf: Uint8Array, start: number): number {
  const flags = buf[start + 3]!;
  return start + 4 + (flags & 0x01 ? 4 : 0) + (flags & 0x80 ? 2 : 0);
}

/**
 * Call `fn(buf, payloadOffset)` for every hot frame the message holds whose
 * payload has at least `minPayload` bytes (the bench's payload: send time,
 * client index, counter), and return how many. A batch is read up to its first
 * malformed inner frame (a length past the end): what came before still counts.
 */
export function forEachHotFrame(buf: Buffer, minPayload: number, fn: (buf: Buffer, payload: number) => void): number {
  if (!isBatch(buf)) {
    if (buf.byteLength < 4) return 0;
    const p = payloadAt(buf, 0);
    if (p + minPayload > buf.byteLength) return 0;
    fn(buf, p);
    return 1;
  }
  const count = buf.readUInt16LE(4);
  let o = BATCH_HEADER;
  let n = 0;
  for (let i = 0; i < count; i++) {
    if (o + 2 > buf.byteLength) break;
    const len = buf.readUInt16LE(o);
    const start = o + 2;
    const end = start + len;
    if (end > buf.byteLength) break;
    o = end;
    if (len < 4) continue;
    const p = payloadAt(buf, start);
    if (p + minPayload > end) continue;
    fn(buf, p);
    n++;
  }
  return n;
}
