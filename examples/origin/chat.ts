/**
 * The example origin's chat logic, free of HTTP: it turns one verified webhook
 * batch (docs/origins.md) into the actions the gateway applies.
 *
 *  - `message` events of `chat:send` with a string `data.msg`:
 *      a banned word   -> `reject` (NOT_ALLOWED) and a strike for the user;
 *                         the third strike also `kick`s the user (strikes reset);
 *      otherwise       -> `broadcast` {svc:"chat", type:"msg", data:{user,msg,at}}
 *                         to the room (the origin decides what the room sees) and
 *                         `reply` {svc:"chat", type:"delivered", data:{id}} to the sender.
 *  - `open` / `close`  -> `broadcast` a `chat:system` line ("alice joined").
 *  - other chat types, or a `send` without a usable `msg`: `reject` (BAD_REQUEST /
 *    NOT_SUPPORTED). Events of unknown kinds are ignored (forward compatible).
 *
 * All state is bounded: strike counts live in an LRU.
 */
import { z } from "zod";

export const BANNED_WORDS: readonly string[] = ["spam", "badword"];
export const STRIKES_BEFORE_KICK = 3;
/** Longest chat message accepted, in characters. */
export const MAX_MSG_CHARS = 2000;

// ---------------------------------------------------------------------------
// Input: the webhook body (section 6 of the contract). Unknown fields are
// allowed (and dropped), so a newer gateway does not break this origin.

const Event = z.object({
  id: z.string().min(1).max(128),
  kind: z.string().max(32),
  user: z.string().max(256),
  sid: z.string().max(128),
  svc: z.string().max(64),
  type: z.string().max(64),
  seq: z.number().int().nonnegative().optional(),
  data: z.unknown().optional(),
  ts: z.number().optional(),
  trace_id: z.string().max(128).optional(),
});
export type WebhookEvent = z.infer<typeof Event>;

export const WebhookBody = z.object({
  tenant: z.string().min(1).max(64),
  room: z.string().min(1).max(128),
  events: z.array(Event).max(1000),
});
export type WebhookBody = z.infer<typeof WebhookBody>;

// ---------------------------------------------------------------------------
// Output: the actions of the answer `{"actions":[…]}`.

export type Action =
  | { action: "reply"; to: string; svc: string; type: string; data?: unknown }
  | { action: "broadcast"; svc: string; type: string; data?: unknown; exclude?: string[] }
  | { action: "send"; user: string; svc: string; type: string; data?: unknown }
  | { action: "send"; sid: string; svc: string; type: string; data?: unknown }
  | { action: "reject"; to: string; code: string; msg: string }
  | { action: "kick"; user: string; reason: string }
  | { action: "kick"; sid: string; reason: string };

// ---------------------------------------------------------------------------

/** A Map kept to at most `max` entries, the least recently used evicted first. */
export class Lru<V> {
  private readonly map = new Map<string, V>();
  readonly max: number;

  constructor(max: number) {
    this.max = Math.max(1, max);
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  entries(): IterableIterator<[string, V]> {
    return this.map.entries();
  }
}

/** Does the text contain a banned word (as a whole word, any case)? */
export function bannedWordIn(text: string): string | null {
  for (const word of text.toLowerCase().split(/[^\p{L}\p{N}]+/u)) {
    if (BANNED_WORDS.includes(word)) return word;
  }
  return null;
}

export class ChatModerator {
  /** Strikes per tenant and user. */
  private readonly strikes: Lru<number>;

  constructor(maxUsers = 10_000) {
    this.strikes = new Lru<number>(maxUsers);
  }

  strikesOf(tenant: string, user: string): number {
    return this.strikes.get(`${tenant}\u0000${user}`) ?? 0;
  }

  /** The actions for one batch. Call once per webhook-id (the caller deduplicates). */
  handle(body: WebhookBody): Action[] {
    const actions: Action[] = [];
    const kicked = new Set<string>();
    for (const ev of body.events) {
      const at = typeof ev.ts === "number" && Number.isFinite(ev.ts) ? ev.ts : Date.now();
      switch (ev.kind) {
        case "open":
          actions.push(system(`${ev.user} joined`, at));
          break;
        case "close":
          actions.push(system(`${ev.user} left`, at));
          break;
        case "message":
          this.message(body.tenant, ev, at, kicked, actions);
          break;
        default:
          break; // a kind this origin does not know: ignored
      }
    }
    return actions;
  }

  private message(tenant: string, ev: WebhookEvent, at: number, kicked: Set<string>, out: Action[]): void {
    if (ev.svc !== "chat") {
      out.push({ action: "reject", to: ev.id, code: "NOT_SUPPORTED", msg: `this origin serves chat, not ${ev.svc}` });
      return;
    }
    if (ev.type !== "send") {
      out.push({ action: "reject", to: ev.id, code: "NOT_SUPPORTED", msg: `unknown chat type "${ev.type}"; use chat:send` });
      return;
    }
    if (kicked.has(ev.user)) {
      out.push({ action: "reject", to: ev.id, code: "NOT_ALLOWED", msg: "you were kicked" });
      return;
    }
    const data = ev.data;
    const msg = typeof data === "object" && data !== null && !Array.isArray(data) ? (data as { msg?: unknown }).msg : undefined;
    if (typeof msg !== "string" || msg.trim() === "") {
      out.push({ action: "reject", to: ev.id, code: "BAD_REQUEST", msg: "chat:send needs data.msg, a non-empty string" });
      return;
    }
    if (msg.length > MAX_MSG_CHARS) {
      out.push({ action: "reject", to: ev.id, code: "PAYLOAD_TOO_LARGE", msg: `data.msg is over ${MAX_MSG_CHARS} characters` });
      return;
    }
    const banned = bannedWordIn(msg);
    if (banned !== null) {
      const key = `${tenant}\u0000${ev.user}`;
      const strikes = (this.strikes.get(key) ?? 0) + 1;
      out.push({
        action: "reject",
        to: ev.id,
        code: "NOT_ALLOWED",
        msg: `message blocked: "${banned}" is not allowed here (strike ${strikes} of ${STRIKES_BEFORE_KICK})`,
      });
      if (strikes >= STRIKES_BEFORE_KICK) {
        this.strikes.delete(key);
        kicked.add(ev.user);
        out.push({ action: "kick", user: ev.user, reason: `${STRIKES_BEFORE_KICK} blocked messages` });
      } else {
        this.strikes.set(key, strikes);
      }
      return;
    }
    out.push({ action: "broadcast", svc: "chat", type: "msg", data: { user: ev.user, msg, at } });
    out.push({ action: "reply", to: ev.id, svc: "chat", type: "delivered", data: { id: ev.id } });
  }
}

function system(text: string, at: number): Action {
  return { action: "broadcast", svc: "chat", type: "system", data: { text, at } };
}
