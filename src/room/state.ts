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
 * Bounded (SPEC v1.1, v1.2): at most MAX_KEYS_PER_SENDER keys per sender,
 * `limits.max_state_bytes` per room and a quarter of it per sender (so that no
 * member can take the room's whole budget), where a kept state costs its frame
 * plus KEY_OVERHEAD_BYTES (so many tiny states cannot cost more memory than the
 * budget says). A sender is a member slot, i.e. one connection. A frame over any
 * bound is refused before anything changes, so the kept states stay as they
 * were. Replacing a kept state counts only its growth.
 *
 * Storage: one row per kept state (`state/<key as 8 hex digits>`, at most 64 KiB,
 * far below the storage value limit), written incrementally: changed keys are put
 * and dropped keys deleted when the tick goes idle (or at a leave while idle).
 *
 * One tick rate per room: the highest `tick_hz` among the tenant's state services.
 */
import type { TenantPolicy } from "../policy/index.ts";
import type { HotFrame } from "../protocol/hot.ts";
import { encodeOutbound, HOT_VERSION, outboundLength } from "../protocol/hot.ts";
import { safeSend } from "./members.ts";

/** Batch frames are split so that none exceeds this many bytes. */
export const MAX_BATCH_BYTES = 64 * 1024;
/** `[1][0][1][0][count:u16]` before the inner frames. */
export const BATCH_HEADER_BYTES = 6;
const BATCH_HEADER = BATCH_HEADER_BYTES;
/** Largest inner frame a batch can carry (its length is a u16). */
export const MAX_STATE_FRAME = 0xffff;
/** Kept (svc_id, opcode) keys per sender (SPEC v1.1 section 5). */
export const MAX_KEYS_PER_SENDER = 64;
/** What a kept state costs beyond its frame: the map entry, its object, its storage row. */
export const KEY_OVERHEAD_BYTES = 64;
const ROW_PREFIX = "state/";
/** The pre-v1.1 form: every state in one value (it could outgrow the storage value limit). */
const LEGACY_SNAPSHOT_KEY = "state:snapshot";

interface Entry {
  slot: number;
  /** Gateway-to-client form of the newest frame. */
  frame: Uint8Array;
  /** Global version when it last changed. */
  ver: number;
}

type LegacySnapshot = Array<[key: number, slot: number, frame: ArrayBuffer]>;

/** Why a state frame was refused: the frame itself, the sender's keys, the sender's quarter, the room's budget. */
export type StateRefusal = "too_large" | "keys" | "share" | "bytes";

/** Bytes of kept states one sender may hold (SPEC v1.2 section 5): a quarter of the room's. */
export function senderShare(t: TenantPolicy): number {
  return Math.floor(t.limits.max_state_bytes / 4);
}

interface SlotUse {
  keys: number;
  /** Charged like `used`: frames plus KEY_OVERHEAD_BYTES each. */
  bytes: number;
}

type MemberList = () => Iterable<[WebSocket, { slot: number; user?: string }]>;

export function stateTickMs(t: TenantPolicy): number | null {
  let hz = 0;
  for (const mode of t.hotModes) if (mode?.mode === "state") hz = Math.max(hz, mode.tick_hz);
  return hz > 0 ? Math.max(1, Math.round(1000 / hz)) : null;
}

/** Unsigned key of (slot, svc, op): slot * 2^16 + svc * 2^8 + op (slots go up to 65535). */
function stateKey(slot: number, svc: number, op: number): number {
  return slot * 0x10000 + (svc << 8) + op;
}

function rowName(key: number): string {
  return ROW_PREFIX + key.toString(16).padStart(8, "0");
}

export class StateTable {
  private readonly storage: DurableObjectStorage;
  private readonly onError: (err: unknown) => void;
  private entries: Map<number, Entry> | null = null;
  /** Bytes charged against `max_state_bytes`: frames plus KEY_OVERHEAD_BYTES each. */
  private used = 0;
  /** Keys and bytes each sender slot holds (present while it holds any). */
  private readonly bySlot = new Map<number, SlotUse>();
  /** Keys changed since the last save (always present in `entries`). */
  private readonly dirty = new Set<number>();
  /** Keys that have a row in storage. */
  private readonly stored = new Set<number>();
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

  /** `onError`: a save that failed on the timer, where nobody else could catch it. */
  constructor(storage: DurableObjectStorage, onError: (err: unknown) => void = () => {}) {
    this.storage = storage;
    this.onError = onError;
  }

  private table(): Map<number, Entry> {
    if (this.entries) return this.entries;
    this.entries = new Map();
    for (const [name, value] of this.storage.kv.list<ArrayBuffer | Uint8Array>({ prefix: ROW_PREFIX })) {
      const key = Number.parseInt(name.slice(ROW_PREFIX.length), 16);
      if (!Number.isSafeInteger(key)) continue;
      this.stored.add(key);
      this.set(key, Math.floor(key / 0x10000), value instanceof Uint8Array ? value : new Uint8Array(value), 0);
    }
    const legacy = this.storage.kv.get<LegacySnapshot>(LEGACY_SNAPSHOT_KEY);
    if (legacy) {
      for (const [key, slot, buf] of legacy) {
        const k = stateKey(slot, (key >>> 8) & 0xff, key & 0xff);
        this.set(k, slot, new Uint8Array(buf), 0);
        this.dirty.add(k);
      }
      this.storage.kv.delete(LEGACY_SNAPSHOT_KEY);
    }
    this.loadedAt = this.version;
    return this.entries;
  }

  private set(key: number, slot: number, frame: Uint8Array, ver: number): void {
    const table = this.entries!;
    const old = table.get(key);
    let use = this.bySlot.get(slot);
    if (!use) this.bySlot.set(slot, (use = { keys: 0, bytes: 0 }));
    const growth = old ? frame.byteLength - old.frame.byteLength : frame.byteLength + KEY_OVERHEAD_BYTES;
    if (!old) use.keys++;
    use.bytes += growth;
    this.used += growth;
    table.set(key, { slot, frame, ver });
  }

  private drop(key: number, e: Entry): void {
    this.entries!.delete(key);
    this.dirty.delete(key);
    const cost = e.frame.byteLength + KEY_OVERHEAD_BYTES;
    this.used -= cost;
    const use = this.bySlot.get(e.slot);
    if (!use) return;
    use.keys--;
    use.bytes -= cost;
    if (use.keys <= 0) this.bySlot.delete(e.slot);
  }

  /**
   * Keep a frame as the newest state of its (sender, svc, op), or say why not:
   * `too_large` (cannot fit a batch), `keys` (the sender's 64th key is taken),
   * `share` (the sender's quarter of the budget), `bytes` (the room's budget).
   * A refusal changes nothing.
   */
  update(frame: HotFrame, slot: number, t: TenantPolicy, members: MemberList, user?: string): StateRefusal | null {
    const len = outboundLength(frame);
    if (len > MAX_STATE_FRAME) return "too_large";
    const key = stateKey(slot, frame.svc, frame.op);
    const old = this.table().get(key);
    const use = this.bySlot.get(slot);
    if (!old && (use?.keys ?? 0) >= MAX_KEYS_PER_SENDER) return "keys";
    const growth = old ? len - old.frame.byteLength : len + KEY_OVERHEAD_BYTES;
    if (growth > 0 && this.userBytes(slot, user, members) + growth > senderShare(t)) return "share";
    if (growth > 0 && this.used + growth > t.limits.max_state_bytes) return "bytes";
    this.set(key, slot, encodeOutbound(frame, slot), ++this.version);
    this.dirty.add(key);
    this.ensureTicking(t, members);
    return null;
  }

  /**
   * What the sender's user keeps over all its sockets (the quarter is per user, as the
   * outbox share is: more sids must not buy more of the room). Only growing frames ask,
   * so a scan of the members is not paid by the steady stream of same-size updates.
   */
  private userBytes(slot: number, user: string | undefined, members: MemberList): number {
    const slots = new Set<number>([slot]);
    if (user !== undefined) for (const [, a] of members()) if (a.user === user) slots.add(a.slot);
    let n = 0;
    for (const s of slots) n += this.bySlot.get(s)?.bytes ?? 0;
    return n;
  }

  /** A new member: its first batch holds every current state of the others. */
  joined(ws: WebSocket, t: TenantPolicy, members: MemberList): void {
    if (stateTickMs(t) === null) return;
    this.seen.set(ws, -1);
    if (this.table().size > 0) this.ensureTicking(t, members);
  }

  /** A member left: forget it and drop its states (from storage too, unless a tick will save). */
  left(ws: WebSocket, slot: number): void {
    this.seen.delete(ws);
    if (!this.bySlot.has(slot) && this.entries) return;
    const table = this.table();
    let dropped = false;
    for (const [key, e] of table) {
      if (e.slot !== slot) continue;
      this.drop(key, e);
      dropped = true;
    }
    if (dropped && !this.timer) this.persist();
  }

  ticking(): boolean {
    return this.timer !== null;
  }

  size(): number {
    return this.table().size;
  }

  /** Bytes charged against `limits.max_state_bytes`. */
  bytes(): number {
    this.table();
    return this.used;
  }

  private ensureTicking(t: TenantPolicy, members: MemberList): void {
    if (this.timer) return;
    this.tickMs = stateTickMs(t) ?? 50;
    this.nextAt = Date.now() + this.tickMs;
    this.timer = setTimeout(() => this.tick(members), this.tickMs);
  }

  /** Send every member its batch; keep ticking while anything was sent. */
  private tick(members: MemberList): void {
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
      return;
    }
    // Idle: nothing left running; the states are saved for a later wake. A failed
    // save keeps its keys dirty, so the next one retries them.
    try {
      this.persist();
    } catch (err) {
      this.onError(err);
    }
  }

  /** Write what changed since the last save: put changed rows, delete dropped ones. */
  private persist(): void {
    const table = this.entries;
    if (!table) return;
    const kv = this.storage.kv;
    for (const key of this.dirty) {
      const e = table.get(key);
      if (e) {
        kv.put(rowName(key), e.frame);
        this.stored.add(key);
      }
      this.dirty.delete(key);
    }
    for (const key of this.stored) {
      if (table.has(key)) continue;
      kv.delete(rowName(key));
      this.stored.delete(key);
    }
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
