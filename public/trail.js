// Cursor trails: hot lane svc 4, a `relay` service with `coalesce: true`.
//
// Unlike the dots (svc 3, `state`: only the newest position, 20 Hz), every
// pointer move is relayed, up to 100 a second per tab, so the other tabs can
// draw the path and not just the end point. That is many tiny frames: the
// gateway packs the ones bound for one tab while the room is busy into one
// batch frame, and the SDK hands them to onHot one by one, with their sender
// slots, exactly as if they had come alone (this file never sees a batch).
//
// Frame: op 1, payload [x:u16 LE][y:u16 LE], x and y scaled to 0..65535.

export const SVC_TRAIL = 4;
export const OP_TRAIL = 1;
const SEND_EVERY_MS = 10; // <= 100 Hz, well under the demo's 200 frames/s rate limit
const KEEP_MS = 700; // a point fades out over this long
const MAX_POINTS = 64; // per sender

export class Trails {
  /** Points by sender slot: x, y in 0..1 and the local time they arrived. */
  #bySlot = new Map();
  #lastSentAt = -Infinity;
  /** Trail frames received (for the browser test). */
  frames = 0;

  /** Encode and send this tab's position (throttled); returns whether a frame went out. */
  send(client, x, y) {
    const now = performance.now();
    if (now - this.#lastSentAt < SEND_EVERY_MS) return false;
    this.#lastSentAt = now;
    const buf = new Uint8Array(4);
    const dv = new DataView(buf.buffer);
    dv.setUint16(0, Math.round(x * 65535), true);
    dv.setUint16(2, Math.round(y * 65535), true);
    return client.sendHot(SVC_TRAIL, OP_TRAIL, buf);
  }

  /** One relayed point (the SDK's onHot handler). */
  receive(sender, payload) {
    if (payload.byteLength < 4) return;
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    let points = this.#bySlot.get(sender);
    if (!points) this.#bySlot.set(sender, (points = []));
    points.push({ x: dv.getUint16(0, true) / 65535, y: dv.getUint16(2, true) / 65535, at: performance.now() });
    if (points.length > MAX_POINTS) points.shift();
    this.frames++;
  }

  drop(slot) {
    this.#bySlot.delete(slot);
  }

  clear() {
    this.#bySlot.clear();
  }

  points(slot) {
    return this.#bySlot.get(slot)?.length ?? 0;
  }

  /** Draw every trail as fading segments; returns true while any is still visible. */
  draw(ctx, W, H, colorOfSlot) {
    const now = performance.now();
    let visible = false;
    ctx.lineCap = "round";
    ctx.lineWidth = 3;
    for (const [slot, points] of this.#bySlot) {
      while (points.length > 0 && now - points[0].at > KEEP_MS) points.shift();
      if (points.length === 0) continue;
      visible = true;
      ctx.strokeStyle = colorOfSlot(slot);
      for (let i = 1; i < points.length; i++) {
        ctx.globalAlpha = Math.max(0, 1 - (now - points[i].at) / KEEP_MS) * 0.6;
        ctx.beginPath();
        ctx.moveTo(points[i - 1].x * W, points[i - 1].y * H);
        ctx.lineTo(points[i].x * W, points[i].y * H);
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    return visible;
  }
}
