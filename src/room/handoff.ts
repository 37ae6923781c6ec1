/**
 * What the Worker hands a room object with an upgrade it verified (auth,
 * Origin, governance): the identity, in one header only the Worker can set
 * (room objects are not reachable from outside).
 */
import type { RoomMeta } from "../origin/bridge.ts";
import type { Attachment } from "./members.ts";
import type { Bucket } from "./ratelimit.ts";

/** Header carrying the Worker-verified identity. Only the Worker can reach the object. */
export const CONNECT_HEADER = "x-wsprism-connect";

/** What the Worker hands the room after it verified the upgrade. */
export interface ConnectRequest {
  tenant: string;
  room: string;
  user: string;
  sid: string;
  exp: number | null;
  trace: string;
  /** The client offered the `wsprism.v1` subprotocol: answer with it. */
  protocol: boolean;
  /** `resume=<epoch>.<off>` from the URL (SPEC section 10), null without one. */
  resume?: { epoch: string; off: number } | null;
}

/** The attachment of a session the room accepted from a request. */
export function attachmentFor(req: ConnectRequest, slot: number, rl: Bucket, now: number): Attachment {
  return { v: 1, tenant: req.tenant, room: req.room, user: req.user, sid: req.sid, slot, trace: req.trace, since: now, exp: req.exp, rl };
}

/** `<epoch>.<off>`: an epoch as the room mints it (or any short token) and an offset; null if malformed. */
export function parseResume(raw: string | null): { epoch: string; off: number } | null {
  const m = raw === null ? null : /^([A-Za-z0-9_-]{1,64})\.(\d{1,15})$/.exec(raw);
  return m ? { epoch: m[1]!, off: Number(m[2]) } : null;
}

/** Tenant and room from the object's name, `<tenant>/<room>` (tenant ids contain no `/`); undefined for an unnamed id. */
export function metaFromName(name: string | undefined): { tenant: string; room: string } | undefined {
  const i = name ? name.indexOf("/") : -1;
  return i > 0 ? { tenant: name!.slice(0, i), room: name!.slice(i + 1) } : undefined;
}

const META_KEY = "meta";

/** A room object's tenant and room: from its name (`<tenant>/<room>`) where the runtime gives it, else from storage. */
export class RoomMetaStore {
  private readonly ctx: DurableObjectState;
  private cache: RoomMeta | undefined;

  constructor(ctx: DurableObjectState) {
    this.ctx = ctx;
  }

  get(): RoomMeta | undefined {
    return (this.cache ??= metaFromName(this.ctx.id.name) ?? this.ctx.storage.kv.get<RoomMeta>(META_KEY));
  }

  /** Only for objects whose id carries no name (storage is then the only way back after a wake). */
  remember(tenant: string, room: string): void {
    if (this.get()) return;
    this.cache = { tenant, room };
    this.ctx.storage.kv.put(META_KEY, this.cache);
  }
}
