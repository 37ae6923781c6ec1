/**
 * Hot lane `state` mode (SPEC section 5): latest state wins.
 *
 * The room keeps the newest frame per (sender slot, svc_id, opcode), already in
 * its gateway-to-client form (encoded once, on receipt). While states change, a
 * timer ticks every 1000/tick_hz ms and sends each member one batch frame with
 * the states that changed since that member's last batch, other than its own:
 *
 *   [1][svc_id=0][opcode=1][flags=0][count:u16] then count × [len:u16][frame]
 *
 * A superseded state is never sent: only the newest is kept. A member that joins
 * gets every current state of the others in its first batch; a member that
 * leaves has its states dropped. The timer stops at the first tick with nothing
 * to send, and the states are then written to storage, so the room can hibernate
 * and a later joiner still sees them after a wake.
 *
 * One tick rate per room: the highest `tick_hz` among the tenant's state services.
 */
import type { TenantPolicy } from "../policy/index.ts";
import type { HotFrame } from "../protocol/hot.ts";
import { encodeOutbound, HOT_VERSION, outboundLength } from "../protocol/hot.ts";
import { safeSend } from "./members.ts";

/** Batch frames are split so that none exceeds this many bytes. */
export const MAX_BATCH_BYTES = 64 * 1024;
const BATCH_HEADER = 6;
/** Largest inner frame a batch can carry (its length is a u16). */
export const MAX_STATE_FRAME = 0xffff;
const SNAPSHOT_KEY = "state:snapshot";

interface Entry {
  slot: number;
  /** Gateway-to-client form of the newest frame. */
  frame: Uint8Array;
  /** Global version when it last changed. */
  ver: number;
}

type Snapshot = Array<[key: number, slot: number, frame: ArrayBuffer]>;

export function stateTickMs(t: TenantPolicy): number | null {
  let hz = 0;
  for (const mode of t.hotModes) if (mode?.mode === "state") hz = Math.max(hz, mode.tick_hz);
  return hz > 0 ? Math.max(1, Math.round(1000 / hz)) : null;
}

export class StateTable {
  private readonly storage: DurableObjectStorage;
  private entries: Map<number, Entry> | null = null;
  private version = 0;
  /** Version each member has seen; a member absent here has seen everything up to `loadedAt`. */
  private readonly seen = new Map<WebSocket, number>();
  private loadedAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private tickMs = 50;
  /** When the next tick is due: ticks keep a fixed cadence instead of drifting by their own work. */
  private nextAt = 0;
  /** Batches sent (for tests and the bench). */
  batchesSent = 0;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  private table(): Map<number, Entry> {
    if (this.entries) return this.entries;
    this.entries = new Map();
    const snap = this.storage.kv.get<Snapshot>(SNAPSHOT_KEY);
    if (snap) for (const [key, slot, buf] of snap) this.entries.set(key, { slot, frame: new Uint8Array(buf), ver: 0 });
    this.loadedAt = this.version;
    return this.entries;
  }

  /** Store a frame as the newest state of its (sender, svc, op). False when it cannot fit a batch. */
  update(frame: HotFrame, slot: number, t: TenantPolicy, members: () => Iterable<[WebSocket, { slot: number }]>): boolean {
    if (outboundLength(frame) > MAX_STATE_FRAME) return false;
    const key = (slot << 16) | (frame.svc << 8) | frame.op;
    this.table().set(key, { slot, frame: encodeOutbound(frame, slot), ver: ++this.version });
    this.ensureTicking(t, members);
    return true;
  }

  /** A new member: its first batch holds every current state of the others. */
  joined(ws: WebSocket, t: TenantPolicy, members: () => Iterable<[WebSocket, { slot: number }]>): void {
    if (stateTickMs(t) === null) return;
    this.seen.set(ws, -1);
    if (this.table().size > 0) this.ensureTicking(t, members);
  }

  /** A member left: forget it and drop its states. */
  left(ws: WebSocket, slot: number): void {
    this.seen.delete(ws);
    const table = this.entries ?? (this.storage.kv.get(SNAPSHOT_KEY) ? this.table() : null);
    if (!table) return;
    let dropped = false;
    for (const [key, e] of table) if (e.slot === slot) dropped = table.delete(key) || dropped;
    if (dropped && !this.timer) this.persist();
  }

  ticking(): boolean {
    return this.timer !== null;
  }

  size(): number {
    return this.table().size;
  }

  private ensureTicking(t: TenantPolicy, members: () => Iterable<[WebSocket, { slot: number }]>): void {
    if (this.timer) return;
    this.tickMs = stateTickMs(t) ?? 50;
    this.nextAt = Date.now() + this.tickMs;
    this.timer = setTimeout(() => this.tick(members), this.tickMs);
  }

  /** Send every member its batch; keep ticking while anything was sent. */
  private tick(members: () => Iterable<[WebSocket, { slot: number }]>): void {
    this.timer = null;
    const table = this.table();
    const now = this.version;
    let sent = 0;
    for (const [ws, att] of members()) {
      const since = this.seen.get(ws) ?? this.loadedAt;
      this.seen.set(ws, now);
      const batch: Uint8Array[] = [];
      for (const e of table.values()) if (e.slot !== att.slot && e.ver > since) batch.push(e.frame);
      if (batch.length === 0) continue;
      for (const frame of encodeBatches(batch)) safeSend(ws, frame);
      sent++;
    }
    this.batchesSent += sent;
    if (sent > 0) {
      // Due times advance by whole ticks (skipping missed ones), so the cadence stays 1000/tick_hz.
      const now = Date.now();
      this.nextAt += this.tickMs;
      if (this.nextAt <= now) this.nextAt = now + this.tickMs - ((now - this.nextAt) % this.tickMs);
      this.timer = setTimeout(() => this.tick(members), this.nextAt - now);
    }
    else this.persist(); // idle: nothing left running, states kept for a later wake
  }

  private persist(): void {
    const table = this.entries;
    if (!table) return;
    if (table.size === 0) {
      this.storage.kv.delete(SNAPSHOT_KEY);
      return;
    }
    const snap: Snapshot = [];
    for (const [key, e] of table) snap.push([key, e.slot, e.frame.slice().buffer]);
    this.storage.kv.put(SNAPSHOT_KEY, snap);
  }
}

/** Batch frames for these inner frames: one per MAX_BATCH_BYTES. Each is one allocation. */
export function encodeBatches(frames: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  while (start < frames.length) {
    let size = BATCH_HEADER;
    let end = start;
    while (end < frames.length && end - start < 0xffff) {
      const next = size + 2 + frames[end]!.byteLength;
      if (next > MAX_BATCH_BYTES && end > start) break;
      size = next;
      end++;
    }
    const buf = new Uint8Array(size);
    buf[0] = HOT_VERSION;
    buf[1] = 0; // svc_id 0: the gateway's own
    buf[2] = 1; // opcode 1: state batch
    buf[3] = 0;
    const count = end - start;
    buf[4] = count & 0xff;
    buf[5] = count >>> 8;
    let o = BATCH_HEADER;
    for (let i = start; i < end; i++) {
      const f = frames[i]!;
      buf[o++] = f.byteLength & 0xff;
      buf[o++] = f.byteLength >>> 8;
      buf.set(f, o);
      o += f.byteLength;
    }
    out.push(buf);
    start = end;
  }
  return out;
}

/** Client-side helper (tests, SDK): split a batch frame into its inner frames. Null when malformed. */
export function decodeBatch(buf: Uint8Array): Uint8Array[] | null {
  if (buf.byteLength < BATCH_HEADER || buf[0] !== HOT_VERSION || buf[1] !== 0 || buf[2] !== 1) return null;
  const count = buf[4]! | (buf[5]! << 8);
  const frames: Uint8Array[] = [];
  let o = BATCH_HEADER;
  for (let i = 0; i < count; i++) {
    if (o + 2 > buf.byteLength) return null;
    const len = buf[o]! | (buf[o + 1]! << 8);
    o += 2;
    if (o + len > buf.byteLength) return null;
    frames.push(buf.subarray(o, o + len));
    o += len;
  }
  return o === buf.byteLength ? frames : null;
}
