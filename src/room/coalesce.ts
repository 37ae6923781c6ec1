/**
 * Coalesced relays (SPEC v1.1 section 5, `relay` with `coalesce: true`).
 *
 * Each WebSocket message the runtime delivers costs a fixed amount (a syscall,
 * a frame header, a wake of the reader), so a room relaying many small frames
 * spends most of its time on per-message cost. Here the frames bound for one
 * member while the room is busy are packed into one batch frame of the `state`
 * batch form (`encodeBatches`), so a busy room pays per batch instead.
 *
 * "Busy" is a window of one event-loop turn, opened by a relayed frame:
 *
 *   - idle (no window open): the frame goes out at once, as the plain relay
 *     frame (byte for byte what `coalesce: false` sends), and a window opens;
 *   - window open: the frame is appended to each recipient's pending list;
 *   - the window closes on a `setTimeout(0)`, which workerd runs only after
 *     the messages already waiting for the object were handled (a microtask
 *     would run after each message and batch nothing): each pending list is
 *     sent, as a batch frame when it holds two or more frames, else as the
 *     plain frame. If anything was sent the room is still busy and a new window
 *     opens; a window that closes empty arms nothing, so an idle room keeps no
 *     timer and can hibernate.
 *
 * So an idle room adds no delay at all, and a lone frame is never wrapped
 * (the SPEC lets clients of a coalesced service accept both forms; the plain
 * form is smaller and cheaper to decode).
 *
 * Bounds: a batch frame is at most MAX_RELAY_BATCH bytes. A list that would go
 * over is sent first (early flush) and a new one started; a frame too large to
 * be an inner frame at all is sent plain, after the member's pending list, so
 * the order per sender holds. Frames are encoded once and shared by every
 * recipient's list, so a list costs a pointer per frame.
 *
 * Hibernation: the pending lists live only within one busy period (a few
 * event-loop turns) and the object cannot hibernate with the window's timer
 * armed. If the object is evicted or crashes inside a window, the frames of that
 * turn are lost, exactly like plain relay frames that had not been sent yet:
 * the hot lane is best effort and never persisted.
 */
import { log } from "../observability/log.ts";
import type { Counters } from "../observability/metrics.ts";
import { safeSend } from "./members.ts";
import { BATCH_HEADER_BYTES, encodeBatches } from "./state.ts";

/** Largest coalesced batch frame, header included. */
export const MAX_RELAY_BATCH = 0xffff;
/** Largest frame that fits in a batch with nothing else. */
const MAX_INNER = MAX_RELAY_BATCH - BATCH_HEADER_BYTES - 2;

interface Pending {
  frames: Uint8Array[];
  /** Size of the batch frame these would make. */
  bytes: number;
}

type MemberList = Iterable<[WebSocket, unknown]>;

export class Coalescer {
  private readonly pending = new Map<WebSocket, Pending>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly counters: Counters;
  /** The room's tenant, for the batch counter (set by every relayed frame). */
  private tenant = "-";
  /** Batch frames sent (for tests and measurements). */
  batchesSent = 0;
  /** Frames that went out inside a batch frame. */
  framesBatched = 0;

  constructor(counters: Counters) {
    this.counters = counters;
  }

  /** Relay one gateway-to-client frame to every member but its sender. */
  relay(out: Uint8Array, sender: WebSocket, members: MemberList, tenant: string): void {
    this.tenant = tenant;
    if (this.timer === null) {
      for (const [ws] of members) if (ws !== sender) safeSend(ws, out);
      this.openWindow();
      return;
    }
    for (const [ws] of members) if (ws !== sender) this.push(ws, out);
  }

  /** True while a window is open (a timer is armed). */
  busy(): boolean {
    return this.timer !== null;
  }

  private push(ws: WebSocket, out: Uint8Array): void {
    let p = this.pending.get(ws);
    if (out.byteLength > MAX_INNER) {
      if (p) this.send(ws, p);
      safeSend(ws, out);
      return;
    }
    if (p && p.bytes + 2 + out.byteLength > MAX_RELAY_BATCH) {
      this.send(ws, p);
      p = undefined;
    }
    if (!p) {
      p = { frames: [], bytes: BATCH_HEADER_BYTES };
      this.pending.set(ws, p);
    }
    p.frames.push(out);
    p.bytes += 2 + out.byteLength;
  }

  /** Send one member's pending frames and forget them. */
  private send(ws: WebSocket, p: Pending): void {
    this.pending.delete(ws);
    if (p.frames.length === 1) {
      safeSend(ws, p.frames[0]!);
      return;
    }
    // At most MAX_RELAY_BATCH bytes: always exactly one batch frame.
    for (const batch of encodeBatches(p.frames)) safeSend(ws, batch);
    this.batchesSent++;
    this.framesBatched += p.frames.length;
    this.counters.inc("wsprism_hot_relay_batches_total", { tenant: this.tenant });
  }

  private openWindow(): void {
    this.timer = setTimeout(() => this.closeWindow(), 0);
  }

  /** End of a turn: send every pending list; stay busy only if there was something to send. */
  private closeWindow(): void {
    this.timer = null;
    if (this.pending.size === 0) return;
    try {
      for (const [ws, p] of [...this.pending]) this.send(ws, p);
    } catch (err) {
      // On a timer nobody else could catch it; safeSend never throws, so this is a bug.
      this.pending.clear();
      this.counters.inc("wsprism_internal_errors_total", { tenant: this.tenant });
      log("error", "hot.coalesce_failed", { trace_id: "-", tenant: this.tenant, error: String(err) });
    }
    this.openWindow();
  }
}
