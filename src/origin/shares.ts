/**
 * Fair share of the outbox (SPEC v1.2 section 6): what one stream (one service
 * of one room) holds, per user, and the rules that admit or refuse an event.
 *
 *  - Budgets per stream. Each service's stream holds at most `limits.events`
 *    messages and `limits.bytes` of them: a dead service fills only its own.
 *  - A share per user. One user (all of its sids together) holds at most a
 *    quarter of a stream's budget (USER_SHARE); beyond that its messages to that
 *    stream are refused (`user_share`) while the others' still get in.
 *  - `open`/`close` events have a budget of their own per stream (the same
 *    bounds, counted apart): a join/leave flood never refuses a message, and a
 *    message flood never refuses an `open`/`close`.
 *  - Sizes are the UTF-8 bytes of the event's JSON.
 *  - Shedding (`overPart`): when a healthy stream has fallen behind (its oldest
 *    waiting event is older than BACKLOG_SHED_MS), a message is refused only if
 *    its sender holds at least SHED_FLOOR of the stream's waiting messages (in
 *    flight included) and strictly more of them than any other user: the biggest
 *    holder goes first, and a member holding no more than another is accepted,
 *    however much that other floods.
 *
 * The tallies are computed from storage once per stream and wake, then kept up
 * to date by push and finish: never a scan per event.
 */

export interface OutboxLimits {
  events: number;
  bytes: number;
}

/** Per stream (room and service): beyond these, new messages are refused with RESOURCE_EXHAUSTED. */
export const OUTBOX_MAX_EVENTS = 10_000;
export const OUTBOX_MAX_BYTES = 8 * 1024 * 1024;
export const DEFAULT_OUTBOX_LIMITS: OutboxLimits = { events: OUTBOX_MAX_EVENTS, bytes: OUTBOX_MAX_BYTES };

/** One user holds at most 1/USER_SHARE of a stream's budget. */
export const USER_SHARE = 4;

/**
 * Past capacity, shed rather than wedge: when a healthy stream's oldest waiting
 * event is older than this, its biggest senders' messages are refused
 * (RESOURCE_EXHAUSTED, see `overPart`). A stream in an outage (its POSTs fail and
 * are retried) keeps buffering instead.
 */
export const BACKLOG_SHED_MS = 2_000;

/** A sender with fewer messages than this waiting in a stream is never shed. */
export const SHED_FLOOR = 2;

/** Why an event is refused by a stream's bounds. */
export type Refusal = "stream_full" | "user_share";

export interface Tally {
  events: number;
  bytes: number;
}

/** What one stream holds: its messages (in total and per user) and its open/close events. */
export class StreamShares {
  readonly messages: Tally = { events: 0, bytes: 0 };
  readonly lifecycle: Tally = { events: 0, bytes: 0 };
  /** Messages per user (only users holding some). */
  readonly users = new Map<string, Tally>();

  /** Count (`sign` 1) or uncount (-1) `events` events of `bytes` bytes in all. */
  add(message: boolean, user: string, events: number, bytes: number, sign: 1 | -1 = 1): void {
    if (!message) {
      this.lifecycle.events += sign * events;
      this.lifecycle.bytes += sign * bytes;
      return;
    }
    this.messages.events += sign * events;
    this.messages.bytes += sign * bytes;
    const mine = this.users.get(user);
    if (mine) {
      mine.events += sign * events;
      mine.bytes += sign * bytes;
      if (mine.events <= 0) this.users.delete(user);
    } else if (sign > 0) this.users.set(user, { events, bytes });
  }

  /** Why a message of `user` (`bytes` long) cannot be taken, or null. */
  refuseMessage(user: string, bytes: number, limits: OutboxLimits): Refusal | null {
    if (this.messages.events + 1 > limits.events || this.messages.bytes + bytes > limits.bytes) return "stream_full";
    const mine = this.users.get(user);
    if ((mine?.events ?? 0) + 1 > limits.events / USER_SHARE || (mine?.bytes ?? 0) + bytes > limits.bytes / USER_SHARE) return "user_share";
    return null;
  }

  /** Why an open/close event (`bytes` long) cannot be taken, or null. */
  refuseLifecycle(bytes: number, limits: OutboxLimits): Refusal | null {
    return this.lifecycle.events + 1 > limits.events || this.lifecycle.bytes + bytes > limits.bytes ? "stream_full" : null;
  }

  /**
   * Whether `user` is the one to shed: it holds at least SHED_FLOOR of the stream's
   * waiting messages and strictly more than any other user. A member holding no more
   * than another is never shed, however much that other floods (an equal-part rule
   * shed light senders too once a flooder kept the backlog refilled).
   */
  overPart(user: string): boolean {
    const held = this.users.get(user)?.events ?? 0;
    if (held < SHED_FLOOR) return false;
    for (const [other, t] of this.users) if (other !== user && t.events >= held) return false;
    return true;
  }
}

/** UTF-8 length of a string (lone surrogates count as U+FFFD would: 3 bytes). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a pair: 2 units, 4 bytes
      i++;
    } else n += 2;
  }
  return n;
}
